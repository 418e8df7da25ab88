"""Text to image, image to image and inpainting with a Stable Diffusion GGUF file: `quanta.Diffusion`.

The whole pipeline runs in C++ (tokenizer, CLIP text encoder, VAE encoder for an init image, UNet with
classifier-free guidance in one batch, the sampler, the VAE decoder); this module checks arguments, converts
PIL images or numpy arrays to pixels and back, and writes the generation parameters the way A1111 does, so the
PNGs read back in tools people know.
"""

from __future__ import annotations

import math
import os
import secrets
from typing import Callable, Optional

import numpy as np

from . import _core
from .devices import check_device, warn_unused_gpu
from .gguf import GGUF
from .lora import lora_patches
from .threads import threads

__all__ = ["Diffusion", "SAMPLERS", "SCHEDULERS"]

SAMPLERS = ("euler", "euler_a", "ddim", "dpmpp_2m", "lcm")
SCHEDULERS = ("discrete", "karras")
# A1111's names for the samplers, for the parameters text.
_A1111_NAMES = {"euler": "Euler", "euler_a": "Euler a", "ddim": "DDIM", "dpmpp_2m": "DPM++ 2M", "lcm": "LCM"}
_MAX_SEED = 2**63 - 1
_MAX_BATCH = _core.SD_MAX_BATCH  # the engine's limit on batch_size


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
    loras: (path, weight) pairs of LoRA safetensors files (kohya's or diffusers' format), merged into the weights at
    load: the weights they change are copied, the rest stay mapped (quanta/lora.py).
    device: as quanta.LLM's; the CUDA backend has no diffusion kernels yet, so "auto" runs on the CPU and
    "cuda" raises quanta.UnsupportedError.
    """

    def __init__(self, path: "str | os.PathLike[str]", n_threads: Optional[int] = None,
                 prediction_type: Optional[str] = None, loras=(), device: str = "auto"):
        from .converter.sd_cache import diffusion_gguf
        from .converter.sd_convert import check_prediction_argument

        self.path = os.fspath(path)
        n_threads = threads(n_threads)
        check_prediction_argument(prediction_type)
        check_device(device)
        self._gguf = GGUF(diffusion_gguf(self.path))
        patches = []
        for item in loras:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise TypeError(f"loras must hold (path, weight) pairs, not {item!r}")
            lora, weight = item
            if not math.isfinite(float(weight)):
                raise ValueError(f"LoRA weight {weight!r} for {lora} is not a finite number")
            patches += lora_patches(lora, float(weight), self._gguf)
        self._model = _core.SdModel(self._gguf._file, device=device, n_threads=n_threads,
                                    prediction_type=prediction_type or "", loras=patches)
        self.device: str = self._model.device  # where it runs
        self.device_note: str = self._model.device_note  # why "auto" chose the CPU, else ""
        warn_unused_gpu(self.device_note)
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

    def sample(self, prompt: str, negative_prompt: str = "", width: Optional[int] = None,
               height: Optional[int] = None, steps: int = 20, cfg_scale: float = 7.0, sampler: str = "euler_a",
               scheduler: str = "discrete", seed: Optional[int] = None, clip_skip: Optional[int] = None,
               latents=None, callback: Optional[Callable[[int, int, np.ndarray], None]] = None,
               output_type: str = "pil", init_image=None, strength: Optional[float] = None, mask=None,
               batch_size: Optional[int] = None, vae_tiling: Optional[bool] = None,
               vae_tile_size: Optional[int] = None):
        """One image for `prompt`, or with `batch_size` a list of that many.

        width, height: the image size (None: the init image's, else 512). cfg_scale: classifier-free guidance
        (the unconditional pass is skipped at <= 1, as diffusers does). sampler: euler, euler_a, ddim, dpmpp_2m
        or lcm; scheduler: discrete (diffusers' default spacing for that sampler) or karras. seed: the same seed
        gives the same image on every run and thread count (None: a random one, kept in `last_seed`).
        clip_skip: A1111's convention, 1 = the last layer (None: 1).

        init_image (img2img): a PIL image or an (height, width, 3) array, uint8 or float in [0, 1]. The run
        starts from its latents (the VAE encoder's mean) noised to the step where the last int(steps *
        strength) steps begin, as diffusers' StableDiffusionImg2ImgPipeline does; strength in (0, 1], default
        0.75. mask (inpainting, with init_image): a PIL image or an (height, width) array, uint8 or float in
        [0, 1]; the pixels >= 0.5 (white) are repainted, the rest kept, as diffusers'
        StableDiffusionInpaintPipeline does (latent blending for a 4-channel UNet, the mask and masked image
        as input for a 9-channel inpainting UNet; strength 1 starts from pure noise). A file whose UNet
        inpaints also runs without a mask, repainting everything.

        batch_size: images from one UNet graph (batch 2 * batch_size under guidance); image i uses seed + i,
        so it equals a single image at that seed, and a list of batch_size images is returned (a list even for
        batch_size=1; None returns one image). latents: unscaled standard-normal noise (batch, C, height/f,
        width/f) that replaces the seeds' draw (batch = batch_size or 1). callback(step, steps, latents) runs
        after every step, with latents of that shape; steps counts the steps that run. output_type: "pil" for
        PIL images whose info["parameters"] holds the settings, "np" for float32 (height, width, 3) in [0, 1].
        vae_tiling: None (automatic): the VAE decodes in one pass up to 512x512 and in windows of 384 pixels past
        it, so that a 1024x1024 decode needs less memory than a 512x512 one, with the result of one pass up to
        about 1/255 (csrc/models/vae_tiles.h). True: windows of vae_tile_size (default 384) wherever the image
        is larger. False: one pass at any size. vae_tile_size alone implies True.
        """
        if output_type not in ("pil", "np"):
            raise ValueError(f"output_type must be 'pil' or 'np', not {output_type!r}")
        if not isinstance(prompt, str) or not isinstance(negative_prompt, str):
            raise TypeError("prompt and negative_prompt must be str")
        count = 1 if batch_size is None else int(batch_size)
        if not 1 <= count <= _MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{_MAX_BATCH}")
        if seed is None:
            seed = secrets.randbelow(_MAX_SEED - count + 1)
        if not 0 <= int(seed) <= _MAX_SEED - (count - 1):
            batch_note = f" (image i of the batch uses seed + i, up to {_MAX_SEED})" if count > 1 else ""
            raise ValueError(f"seed must be in 0..{_MAX_SEED - count + 1}{batch_note}")
        clip_skip = 1 if clip_skip is None else int(clip_skip)
        pixels_in = None if init_image is None else _rgb_pixels(init_image)
        width, height = _size(width, height, pixels_in)
        mask_in = _mask_pixels(mask, pixels_in)
        if strength is not None and pixels_in is None:
            raise ValueError("strength needs an init_image (img2img)")
        strength = 0.75 if strength is None else float(strength)
        f = self.config["downscale"]
        shape = (count, self.config["latent_channels"], height // f, width // f)  # the latents'
        noise = None
        if latents is not None:
            noise = np.ascontiguousarray(latents, dtype=np.float32)
            if noise.shape != shape:
                raise ValueError(f"latents must have shape {shape} for a {width}x{height} image, not {noise.shape}")
        tile = (0 if vae_tiling is False else int(vae_tile_size) if vae_tile_size is not None
                else _core.SD_VAE_WINDOW if vae_tiling else _core.SD_AUTO_VAE_TILE)
        step_callback = None
        if callback is not None:
            step_callback = lambda step, total, x: callback(step, total, np.asarray(x).reshape(shape))  # noqa: E731
        images = self._generator.generate(prompt, negative_prompt, int(width), int(height), int(steps),
                                          float(cfg_scale), sampler, scheduler, int(seed), clip_skip, count, noise,
                                          pixels_in, strength, mask_in, step_callback, tile)
        self.last_seed = int(seed)
        if output_type == "pil":
            from PIL import Image

            pil = []
            for i, pixels in enumerate(images):
                image = Image.fromarray((pixels * 255).round().astype(np.uint8), "RGB")
                image.info["parameters"] = self.parameters_text(
                    prompt, negative_prompt, width, height, steps, cfg_scale, sampler, scheduler, int(seed) + i,
                    clip_skip, strength if pixels_in is not None else None)
                pil.append(image)
            images = pil
        return images[0] if batch_size is None else images

    def parameters_text(self, prompt: str, negative_prompt: str, width: int, height: int, steps: int,
                        cfg_scale: float, sampler: str, scheduler: str, seed: int, clip_skip: int,
                        strength: Optional[float] = None) -> str:
        """A1111's "parameters" text: the prompt, the negative prompt, then the settings on one line
        (img2img's strength as A1111's "Denoising strength")."""
        name = _A1111_NAMES.get(sampler, sampler)
        settings = [f"Steps: {steps}", f"Sampler: {name}", f"Schedule type: {scheduler.capitalize()}",
                    f"CFG scale: {cfg_scale:g}", f"Seed: {seed}", f"Size: {width}x{height}",
                    f"Model: {os.path.splitext(os.path.basename(self.path))[0]}"]
        if strength is not None:
            settings.append(f"Denoising strength: {strength:g}")
        if clip_skip != 1:
            settings.append(f"Clip skip: {clip_skip}")
        lines = [prompt] + ([f"Negative prompt: {negative_prompt}"] if negative_prompt else [])
        return "\n".join(lines + [", ".join(settings)])


def _pixels(image, mode: str, shape_text: str, what: str) -> np.ndarray:
    """A PIL image (converted to `mode`) or an array as float32 in [0, 1]: uint8 is divided by 255, as diffusers'
    image processor does."""
    from PIL import Image

    if isinstance(image, Image.Image):
        image = np.asarray(image.convert(mode))
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255)
    if array.dtype.kind not in "fb":
        raise TypeError(f"{what} must be a PIL image or a {shape_text} array of uint8 or floats in [0, 1], "
                        f"not {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.all((array >= 0) & (array <= 1)):
        raise ValueError(f"{what}: float values must lie in [0, 1]")
    return array


def _rgb_pixels(image) -> np.ndarray:
    pixels = _pixels(image, "RGB", "(height, width, 3)", "init_image")
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"init_image must have shape (height, width, 3), not {pixels.shape}")
    return pixels


def _size(width, height, pixels):
    """The image size: the init image's (where width and height, if given, must equal it), else 512 x 512."""
    if pixels is None:
        return int(512 if width is None else width), int(512 if height is None else height)
    h, w = pixels.shape[:2]
    if (width is not None and int(width) != w) or (height is not None and int(height) != h):
        asked = f"{w if width is None else width}x{h if height is None else height}"
        raise ValueError(f"init_image is {w}x{h}, but width x height is {asked}: resize the image or leave width "
                         "and height out")
    return w, h


def _mask_pixels(mask, pixels):
    if mask is None:
        return None
    if pixels is None:
        raise ValueError("a mask needs an init_image to inpaint")
    values = _pixels(mask, "L", "(height, width)", "mask")
    if values.shape != pixels.shape[:2]:
        raise ValueError(f"mask must have the init image's shape {pixels.shape[:2]} (height, width), not "
                         f"{values.shape}")
    return values
