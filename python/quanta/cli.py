"""The `quanta` command.

Every failure is reported as one line on stderr with a non-zero exit code:
1 for bad input (files, arguments), 2 for internal errors, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings

EXIT_BAD_INPUT = 1
EXIT_INTERNAL = 2
EXIT_INTERRUPTED = 130


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="quanta", description="Run quantized LLMs and diffusion models.")
    parser.add_argument("--version", action="version", version=f"quanta {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    info = sub.add_parser("info", help="describe a GGUF file, or this system with --system")
    info.add_argument("file", nargs="?", help="a .gguf file")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.add_argument("--system", action="store_true", help="show the CPU kernel level and any GPU")
    info.set_defaults(handler=_cmd_info)

    from . import cli_convert, cli_llm, cli_sample, cli_serve

    cli_llm.register(sub)
    cli_sample.register(sub)
    cli_convert.register(sub)
    cli_serve.register(sub)
    return parser


# ---- info ------------------------------------------------------------------

_MAX_ARRAY_ITEMS_SHOWN = 8


def _short(value, limit: int = 120, f32: bool = False) -> str:
    """A one-line rendering of a metadata value, summarising long arrays.
    f32 values print at float32 precision (1e-06, not 9.99999997e-07)."""
    if isinstance(value, list):
        kind = type(value[0]).__name__ if value else "item"
        head = ", ".join(_short(v, 24, f32) for v in value[:_MAX_ARRAY_ITEMS_SHOWN])
        more = ", ..." if len(value) > _MAX_ARRAY_ITEMS_SHOWN else ""
        return f"[{len(value)} {kind}s: {head}{more}]" if len(value) > _MAX_ARRAY_ITEMS_SHOWN else f"[{head}]"
    if f32 and isinstance(value, float):
        import numpy as np

        text = str(np.float32(value))
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _jsonable(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _cmd_info(args) -> int:
    if args.system:
        return _info_system(args)
    if not args.file:
        raise ValueError("info needs a FILE (or --system)")
    from .gguf import GGUF

    f = GGUF(args.file)
    if args.json:
        out = {
            "path": f.path,
            "version": f.version,
            "alignment": f.alignment,
            "data_offset": f.data_offset,
            "metadata": {k: _jsonable(v) for k, v in f.metadata.items()},
            "metadata_types": f.metadata_types,
            "tensors": [{"name": t.name, "shape": list(t.shape), "type": t.type, "offset": t.offset}
                        for t in f.tensors],
        }
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
        return 0

    types = f.metadata_types
    print(f"{f.path}: GGUF v{f.version}, {len(f.metadata)} metadata keys, {len(f.tensors)} tensors, "
          f"data at byte {f.data_offset}")
    print("\nmetadata:")
    width = max((len(k) for k in f.metadata), default=0)
    for key, value in f.metadata.items():
        is_f32 = types[key] in ("f32", "array[f32]")
        print(f"  {key:<{width}}  {types[key]:<14} {_short(value, f32=is_f32)}")
    print("\ntensors:")
    counts: dict = {}
    name_width = max((len(t.name) for t in f.tensors), default=0)
    for t in f.tensors:
        counts[t.type] = counts.get(t.type, 0) + 1
        shape = "x".join(str(d) for d in t.shape)
        print(f"  {t.name:<{name_width}}  {t.type:<6} {shape:<16} offset {t.offset}")
    print("\ntypes: " + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
    return 0


def _info_system(args) -> int:
    from . import system_info

    info = system_info()
    if args.json:
        print(json.dumps(info))
        return 0
    cuda = info["cuda"]
    print(f"quanta {info['version']}")
    print(f"cpu: kernels {info['cpu_level']} (available: {', '.join(info['cpu_levels'])})")
    print(f"cpu features: {info['cpu_features'] or 'none detected'}")
    if cuda["available"]:
        print(f"cuda: {cuda['device_count']} device(s): {'; '.join(cuda['devices'])}")
    else:
        print(f"cuda: not in use ({cuda['reason']})")
    print(f"cuda library: {cuda['library'] or 'not built'}")
    return 0


# ---- entry point -------------------------------------------------------------


def main(argv=None) -> int:
    warnings.formatwarning = lambda message, *_: f"quanta: warning: {message}\n"  # one line, no source location
    try:
        parser = _build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "handler", None):
            parser.print_help(sys.stderr)
            return EXIT_BAD_INPUT
        return args.handler(args)
    except KeyboardInterrupt:
        print("quanta: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (quanta info x | head): not an error of ours.
        sys.stderr.close()
        return 0
    except (OSError, ValueError, MemoryError, NotImplementedError) as e:
        # quanta's own errors (FormatError, ModelError, ...) derive from these.
        print(f"quanta: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as e:  # a bug: still one line, never a traceback
        print(f"quanta: internal error: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return EXIT_INTERNAL


def _one_line(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
