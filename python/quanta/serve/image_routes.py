"""POST /v1/images/generations: OpenAI's image API over quanta.Diffusion, when `quanta serve` has --sd-model.

A request's n images are one batch (Diffusion.sample's batch_size) on a worker thread, so the event loop keeps
answering other requests; requests take turns. Image i uses seed + i, so it equals a single image at that seed.
The reply is b64_json PNGs with A1111's parameters text chunk; "url" is refused, since the server keeps no files.
"""

from __future__ import annotations

import asyncio
import base64
import io
import secrets
import time

from fastapi import FastAPI

from .errors import APIError
from .protocol import ImageRequest


def register(app: FastAPI, server) -> None:
    turn = asyncio.Lock()

    @app.post("/v1/images/generations")
    async def generations(body: ImageRequest):
        server.require()
        sd = server.diffusion
        if sd is None:
            raise APIError(400, "this server has no image model: start quanta serve with --sd-model FILE",
                           param="model", code="model_not_found")
        if body.model not in (None, server.sd_model_id):
            raise APIError(404, f"The model '{body.model}' does not exist (images: '{server.sd_model_id}')",
                           param="model", code="model_not_found")
        if body.response_format != "b64_json":
            raise APIError(400, "quanta serve returns images as b64_json only", param="response_format")
        width, height = (int(p) for p in body.size.lower().split("x"))
        multiple = sd.config["size_multiple"]
        if width % multiple or height % multiple:
            raise APIError(400, f"size {body.size}: width and height must be multiples of {multiple} for this model",
                           param="size")
        seed = body.seed if body.seed is not None else secrets.randbelow(2**62)
        args = dict(negative_prompt=body.negative_prompt, width=width, height=height, steps=body.steps,
                    cfg_scale=body.cfg_scale, sampler=body.sampler, scheduler=body.scheduler,
                    clip_skip=body.clip_skip)
        async with turn:
            try:
                images = await asyncio.to_thread(sd.sample, body.prompt, seed=seed, batch_size=body.n, **args)
            except ValueError as e:  # a bad sampler or scheduler name: the engine's message names it
                raise APIError(400, str(e)) from None
        data = [{"b64_json": _png(image), "revised_prompt": body.prompt} for image in images]
        return {"created": int(time.time()), "data": data}


def _png(image) -> str:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", image.info["parameters"])
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    return base64.b64encode(out.getvalue()).decode("ascii")
