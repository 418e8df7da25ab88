"""`quanta sample`: one image from a Stable Diffusion GGUF file, written as a PNG whose "parameters" text chunk
holds the prompt and settings as A1111 writes them: text to image, or with -i an init image (img2img), with
--mask too inpainting. Progress (a bar with seconds per step) goes to stderr."""

from __future__ import annotations

import sys
import time


def register(sub) -> None:
    from .diffusion import SAMPLERS, SCHEDULERS

    p = sub.add_parser("sample", help="generate an image with a Stable Diffusion model")
    p.add_argument("-m", "--model", required=True, help="a Stable Diffusion .gguf file (quanta convert a diffusers folder)")
    p.add_argument("-p", "--prompt", required=True, help="what to draw")
    p.add_argument("-n", "--negative-prompt", default="", help="what to steer away from")
    p.add_argument("-W", "--width", type=int, default=None,
                   help="image width in pixels (default: the init image's, else 512)")
    p.add_argument("-H", "--height", type=int, default=None,
                   help="image height in pixels (default: the init image's, else 512)")
    p.add_argument("-i", "--init-image", default=None, help="img2img: the image to start from (PNG, JPEG, ...)")
    p.add_argument("--strength", type=float, default=None,
                   help="img2img: how much of the schedule runs, in (0, 1] (default 0.75; 1 redraws all)")
    p.add_argument("--mask", default=None, help="inpainting, with -i: an image whose white pixels are repainted")
    p.add_argument("--steps", type=int, default=20, help="sampling steps (default 20)")
    p.add_argument("--cfg", "--cfg-scale", dest="cfg", type=float, default=7.0,
                   help="classifier-free guidance scale (default 7; <= 1 skips the unconditional pass)")
    p.add_argument("--sampler", default="euler_a", choices=SAMPLERS, help="sampling method (default euler_a)")
    p.add_argument("--scheduler", default="discrete", choices=SCHEDULERS,
                   help="sigma schedule: discrete (diffusers' default spacing) or karras")
    p.add_argument("--seed", type=int, default=None, help="noise seed (default: random, printed)")
    p.add_argument("--clip-skip", type=int, default=None, help="CLIP layers to skip, A1111's way (1 = last layer)")
    p.add_argument("--lora", action="append", default=[], type=lora_arg, metavar="PATH[:WEIGHT]",
                   help="a LoRA safetensors file (kohya or diffusers) merged at load with WEIGHT (default 1); "
                        "repeatable")
    p.add_argument("--vae-tile-size", type=int, default=None,
                   help="VAE windows of this many pixels (default: one pass up to 512x512, windows of 384 past it)")
    p.add_argument("--no-vae-tiling", action="store_true", help="decode the VAE in one pass at any size")
    p.add_argument("-t", "--threads", type=int, default=None, help="CPU threads (default: every usable core)")
    p.add_argument("-o", "--output", default="output.png", help="the PNG to write (default output.png)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_sample)


def lora_arg(text: str) -> tuple:
    """PATH or PATH:WEIGHT (the last colon, so a path may hold colons)."""
    import argparse
    import math

    path, _, weight = text.rpartition(":")
    try:
        value = float(weight)
    except ValueError:
        return text, 1.0
    if not path or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not PATH or PATH:WEIGHT")
    return path, value


class _StepBar:
    """One line on stderr: steps done, a bar, seconds per step and time left."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.start = time.perf_counter()

    def __call__(self, step: int, steps: int, latents) -> None:
        if self.quiet:
            return
        elapsed = time.perf_counter() - self.start
        per_step = elapsed / step
        filled = step * 30 // steps
        line = (f"sampling {step:>{len(str(steps))}}/{steps} [{'#' * filled}{'.' * (30 - filled)}] "
                f"{per_step:.2f} s/step, {per_step * (steps - step):.0f} s left")
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if step == steps else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _cmd_sample(args) -> int:
    from PIL.PngImagePlugin import PngInfo

    from .cli_llm import _where
    from .diffusion import Diffusion
    from .threads import cli_threads

    n_threads = cli_threads(args.threads)
    t0 = time.perf_counter()
    sd = Diffusion(args.model, n_threads=n_threads, loras=args.lora)
    if not args.quiet:
        c = sd.config
        print(f"quanta: loaded {args.model} ({c['version']}, {c['prediction_type']}) in "
              f"{time.perf_counter() - t0:.2f} s, {_where(sd)}", file=sys.stderr, flush=True)
    bar = _StepBar(args.quiet)
    image = sd.sample(args.prompt, negative_prompt=args.negative_prompt, width=args.width, height=args.height,
                      steps=args.steps, cfg_scale=args.cfg, sampler=args.sampler, scheduler=args.scheduler,
                      seed=args.seed, clip_skip=args.clip_skip, callback=bar, init_image=_open(args.init_image),
                      strength=args.strength, mask=_open(args.mask), vae_tiling=False if args.no_vae_tiling else None,
                      vae_tile_size=args.vae_tile_size)
    info = PngInfo()
    info.add_text("parameters", image.info["parameters"])
    image.save(args.output, pnginfo=info)
    if not args.quiet:
        print(f"quanta: wrote {args.output} ({image.width}x{image.height}, seed {sd.last_seed}) in "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return 0


def _open(path):
    """The image at `path`, read into memory (None for None)."""
    if path is None:
        return None
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image.copy()
