#!/usr/bin/env python3
"""Quantized matmul timings of whichever quanta is first on sys.path, for
comparing two builds of the kernels (no peer): run it alternately against a
copy of the other build's installed package, e.g.

    cp -r "$(python -c 'import quanta, os; print(os.path.dirname(quanta.__file__))')" /tmp/before/
    ... rebuild ...
    for i in 1 2 3; do PYTHONPATH=/tmp/before python bench/kernel_ab.py; python bench/kernel_ab.py; done

Shapes: `rows` x 4096 weights against m activation rows; m = 1 and a few rows
run the row kernels (2048 rows: in cache, so compute-bound; 16384 rows: far
beyond cache, memory-bound), m >= 16 the prefill GEMM where the level has one.
Calls run back to back (warm threads); each figure is the best of `repeats`.
Weights are random normal, quantized by quanta and cached in --cache.
"""

import argparse
import json
import os
import time

import numpy as np

import quanta
from quanta import _core

SHAPES = [(2048, 1, 200), (2048, 4, 200), (2048, 8, 200), (16384, 1, 100), (2048, 512, 6)]


def weights(wtype, n, k, cache):
    path = os.path.join(cache, f"{wtype}_{n}x{k}.npy")
    if not os.path.exists(path):
        os.makedirs(cache, exist_ok=True)
        w = np.random.default_rng(1).standard_normal((n, k), dtype=np.float32)
        np.save(path, quanta.quantize(w, wtype))
    return np.load(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", nargs="*", default=["q4_k", "q5_k", "q6_k"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--k", type=int, default=4096)
    parser.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "quanta", "bench"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    result = {"quanta": os.path.dirname(quanta.__file__), "cpu_level": _core.cpu_level(), "threads": args.threads,
              "ms": {}}
    for wtype in args.types:
        for n, m, repeats in SHAPES:
            g = _core.Graph()
            x = g.input("f32", [m, args.k])
            out = g.matmul(g.constant(weights(wtype, n, args.k, args.cache), wtype), x)
            xv = rng.standard_normal((m, args.k), dtype=np.float32)
            g.run([out], {x: xv}, "cpu", args.threads)
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                g.run([out], {x: xv}, "cpu", args.threads)
                best = min(best, time.perf_counter() - t0)
            result["ms"][f"{wtype} {n}x{args.k} m={m}"] = round(best * 1e3, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
