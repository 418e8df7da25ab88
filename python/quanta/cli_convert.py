"""`quanta convert` and `quanta quantize`: making GGUF files."""

from __future__ import annotations

import argparse
import signal


def register(sub) -> None:
    from .converter import FILE_TYPES

    types = ", ".join(FILE_TYPES)
    convert = sub.add_parser("convert", help="convert a Hugging Face model folder, a diffusers Stable Diffusion "
                                             "pipeline folder or a Stable Diffusion .safetensors file to one GGUF file")
    convert.add_argument("src", help="model folder: config.json, *.safetensors, tokenizer; or a diffusers pipeline "
                                     "folder: model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/; "
                                     "or an SD 1.x/2.x single file in the original layout (A1111's, "
                                     "stable-diffusion.cpp's) (Stable Diffusion types f32, f16, q8_0, q4_k_m)")
    convert.add_argument("out", help="the .gguf file to write")
    _common(convert, types, "q4_k_m")
    convert.add_argument("--prediction-type", choices=("epsilon", "v_prediction"), default=None,
                         help="Stable Diffusion only: what the UNet predicts, which a single file cannot show "
                              "(SD 2.x 768-v models: v_prediction). Default: the pipeline's scheduler config; for a "
                              "single file, epsilon for SD1, and for SD2 a guess at load, as stable-diffusion.cpp makes")
    convert.set_defaults(handler=_cmd_convert)

    quantize = sub.add_parser("quantize", help="requantize a GGUF file to another type, like llama-quantize")
    quantize.add_argument("src", help="a .gguf file")
    quantize.add_argument("out", help="the .gguf file to write")
    _common(quantize, types, None)
    quantize.set_defaults(handler=_cmd_quantize)


def _common(p: argparse.ArgumentParser, types: str, default) -> None:
    p.add_argument("--type", "-t", default=default, required=default is None, type=str.lower,
                   help=f"file type: {types}" + (f" (default {default})" if default else ""))
    p.add_argument("--threads", type=int, default=0, help="quantization threads (default: every usable core; more are capped to that)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _interrupt_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the temporary file is removed on the way out."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _cmd_convert(args) -> int:
    from .converter import convert
    from .threads import cli_threads

    _interrupt_on_sigterm()
    convert(args.src, args.out, type=args.type, progress=not args.quiet, n_threads=cli_threads(args.threads),
            prediction_type=args.prediction_type)
    return 0


def _cmd_quantize(args) -> int:
    from .converter import requantize
    from .threads import cli_threads

    _interrupt_on_sigterm()
    requantize(args.src, args.out, type=args.type, progress=not args.quiet, n_threads=cli_threads(args.threads))
    return 0
