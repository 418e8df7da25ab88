#!/usr/bin/env python3
"""K-quant round-trip error: quanta's quantizer against ggml's own
(ggml_quantize_chunk from llama-cpp-python's libggml-base.so, no importance
matrix) on the same data sets; both are dequantized by gguf-py.

    python bench/kquant_rmse.py [--json]

The data sets are those of tests/test_kquant_rmse.py; --record writes ggml's
figures to tests/data/ggml_kquant_rmse.json, which that test checks against when
llama-cpp-python is not installed.
"""

import argparse
import json
import sys
from pathlib import Path

import gguf
import numpy as np

import quanta

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).parent))

from kquant_data import K_TYPES, datasets  # noqa: E402


def rmse(x, blocks, qtype):
    y = gguf.quants.dequantize(blocks, getattr(gguf.GGMLQuantizationType, qtype.upper())).reshape(x.shape)
    return float(np.sqrt(np.mean((y.astype(np.float64) - x) ** 2)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--record", action="store_true", help="write ggml's figures for the test")
    args = parser.parse_args()
    import ggml_peer

    ggml = ggml_peer.Ggml()
    results = {}
    for name, x in datasets().items():
        for qtype in K_TYPES:
            ours = rmse(x, quanta.quantize(x, qtype), qtype)
            theirs = rmse(x, ggml.quantize(x, qtype), qtype)
            results[f"{name}/{qtype}"] = {"quanta": ours, "ggml": theirs, "ratio": ours / theirs}
    if args.record:
        out = ROOT / "tests" / "data" / "ggml_kquant_rmse.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({k: v["ggml"] for k, v in results.items()}, indent=1) + "\n")
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print("| data set | type | quanta RMSE | ggml RMSE | ratio |")
    print("|---|---|---|---|---|")
    for key, r in results.items():
        name, qtype = key.split("/")
        print(f"| {name} | {qtype} | {r['quanta']:.6f} | {r['ggml']:.6f} | {r['ratio']:.4f} |")


if __name__ == "__main__":
    main()
