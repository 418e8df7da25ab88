"""Text to image with a Stable Diffusion GGUF file: `quanta.Diffusion`.

The whole pipeline runs in C++ (tokenizer, CLIP text encoder, UNet with classifier-free guidance in one batch,
the sampler, the VAE); this module checks arguments, converts the pixels to a PIL image or a numpy array, and
writes the generation parameters the way A1111 does, so the PNGs read back in tools people know.
"""

from __future__ import annotations

import os
import secrets
from typing import Callable, Optional

import numpy as np

from . import _core
from .gguf import GGUF
from .threads import threads

__all__ = ["Diffusion", "SAMPLERS", "SCHEDULERS"]

SAMPLERS = ("euler", "euler_a", "ddim", "dpmpp_2m", "lcm")
SCHEDULERS = ("discrete", "karras")
# A1111's names for the samplers, for the parameters text.
_A1111_NAMES = {"euler": "Euler", "euler_a": "Euler a", "ddim": "DDIM", "dpmpp_2m": "DPM++ 2M", "lcm": "LCM"}
_MAX_SEED = 2**63 - 1


class Diffusion:
    """A loaded Stable Diffusion 1.x/2.x pipeline: a GGUF file from `quanta convert`, a GGUF file from
    stable-diffusion.cpp, or an original-layout single file (.safetensors, as A1111 reads them). The last two are
    converted once into the cache at their own types and loaded from there (quanta/converter/sd_cache.py).

    >>> sd = quanta.Diffusion("sd15-q8_0.gguf")
    >>> sd.sample("a lighthouse at dusk, oil painting", steps=20, seed=42).save("out.png")

    The weights stay memory-mapped; each part's activations are planned once per image size and freed when that
    part is done. n_threads: CPU threads (None or 0: every core this process may use). prediction_type:
    "epsilon" or "v_prediction" overrides the file's; files that do not say (single files and
    stable-diffusion.cpp's of SD2) are otherwise guessed as stable-diffusion.cpp does (config["prediction_source"]).
    """

    def __init__(self, path: "str | os.PathLike[str]", n_threads: Optional[int] = None,
                 prediction_type: Optional[str] = None):
        from .converter.sd_cache import diffusion_gguf
        from .converter.sd_convert import check_prediction_argument

        self.path = os.fspath(path)
        n_threads = threads(n_threads)
        check_prediction_argument(prediction_type)
        self._gguf = GGUF(diffusion_gguf(self.path))
        self._model = _core.SdModel(self._gguf._file, device="cpu", n_threads=n_threads,
                                    prediction_type=prediction_type or "")
        self._generator = _core.ImageGenerator(self._model)
        self.last_seed: Optional[int] = None  # the seed of the last sample(), drawn at random when none was given

    @property
    def config(self) -> dict:
        """What quanta read from the file: version, prediction type, latent scale and factor, shapes."""
        return self._model.config

    @property
    def metadata(self) -> dict:
        return self._gguf.metadata

    @property
    def n_threads(self) -> int:
        return self._model.n_threads

    def tokenize(self, text: str) -> list:
        """The 77 CLIP token ids the text encoder sees (BOS, the text, EOS, padding)."""
        return self._generator.tokenize(text)

    def sample(self, prompt: str, negative_prompt: str = "", width: int = 512, height: int = 512, steps: int = 20,
               cfg_scale: float = 7.0, sampler: str = "euler_a", scheduler: str = "discrete",
               seed: Optional[int] = None, clip_skip: Optional[int] = None, latents=None,
               callback: Optional[Callable[[int, int, np.ndarray], None]] = None, output_type: str = "pil",
               vae_tiling: Optional[bool] = None, vae_tile_size: int = 512):
        """One image for `prompt`.

        cfg_scale: classifier-free guidance (the unconditional pass is skipped at <= 1, as diffusers does).
        sampler: euler, euler_a, ddim, dpmpp_2m or lcm; scheduler: discrete (diffusers' default spacing for that
        sampler) or karras. seed: the same seed gives the same image on every run and thread count (None: a
        random one, kept in `last_seed`). clip_skip: A1111's convention, 1 = the last layer (None: 1).
        latents: unscaled standard-normal noise (1, C, height/f, width/f), scaled by the sampler's initial sigma
        as diffusers does. callback(step, steps, latents) runs after every step. output_type: "pil" for a
        PIL.Image whose info["parameters"] holds the settings, "np" for float32 (height, width, 3) in [0, 1].
        vae_tiling: None (automatic) or True: the VAE decodes in tiles of vae_tile_size pixels where the image is
        larger, so that a 1024x1024 decode needs a 512x512 one's memory, with the result of one pass up to about
        1/255 (csrc/models/vae_tiles.h); False: one pass at any size.
        """
        if output_type not in ("pil", "np"):
            raise ValueError(f"output_type must be 'pil' or 'np', not {output_type!r}")
        if not isinstance(prompt, str) or not isinstance(negative_prompt, str):
            raise TypeError("prompt and negative_prompt must be str")
        if seed is None:
            seed = secrets.randbelow(_MAX_SEED)
        if not 0 <= int(seed) <= _MAX_SEED:
            raise ValueError(f"seed must be in 0..{_MAX_SEED}")
        clip_skip = 1 if clip_skip is None else int(clip_skip)
        f = self.config["downscale"]
        shape = (1, self.config["latent_channels"], height // f, width // f)  # the latents'
        noise = None
        if latents is not None:
            noise = np.ascontiguousarray(latents, dtype=np.float32)
            if noise.shape != shape:
                raise ValueError(f"latents must have shape {shape} for a {width}x{height} image, not {noise.shape}")
        tile = 0 if vae_tiling is False else int(vae_tile_size)
        step_callback = None
        if callback is not None:
            step_callback = lambda step, total, x: callback(step, total, np.asarray(x).reshape(shape))  # noqa: E731
        pixels = self._generator.generate(prompt, negative_prompt, int(width), int(height), int(steps),
                                          float(cfg_scale), sampler, scheduler, int(seed), clip_skip, noise,
                                          step_callback, tile)
        self.last_seed = int(seed)
        if output_type == "np":
            return pixels
        from PIL import Image

        image = Image.fromarray((pixels * 255).round().astype(np.uint8), "RGB")
        image.info["parameters"] = self.parameters_text(prompt, negative_prompt, width, height, steps, cfg_scale,
                                                        sampler, scheduler, int(seed), clip_skip)
        return image

    def parameters_text(self, prompt: str, negative_prompt: str, width: int, height: int, steps: int,
                        cfg_scale: float, sampler: str, scheduler: str, seed: int, clip_skip: int) -> str:
        """A1111's "parameters" text: the prompt, the negative prompt, then the settings on one line."""
        name = _A1111_NAMES.get(sampler, sampler)
        settings = [f"Steps: {steps}", f"Sampler: {name}", f"Schedule type: {scheduler.capitalize()}",
                    f"CFG scale: {cfg_scale:g}", f"Seed: {seed}", f"Size: {width}x{height}",
                    f"Model: {os.path.splitext(os.path.basename(self.path))[0]}"]
        if clip_skip != 1:
            settings.append(f"Clip skip: {clip_skip}")
        lines = [prompt] + ([f"Negative prompt: {negative_prompt}"] if negative_prompt else [])
        return "\n".join(lines + [", ".join(settings)])
