#!/usr/bin/env python3
"""Quantized matmul speed: batch-1 matvec (decode) as GB/s of weight bytes
streamed, next to this machine's read bandwidth measured in the same run, and
batch-512 matmul (prefill) as GOP/s; with ggml's kernels on the same shapes
when llama-cpp-python is installed (see ggml_peer.py).

    python bench/matmul_bench.py --threads 2
"""

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

import quanta
from quanta import _core

sys.path.insert(0, str(Path(__file__).parent))
from timing import best_times_alternating  # noqa: E402

TYPES = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_k", "q5_k", "q6_k", "f16"]


class ReadBandwidth:
    """Reads a 512 MiB array split over `threads` Python threads (numpy releases the GIL) with
    BLAS's dot, which is not compute-bound (numpy's sum is, near 15 GB/s a thread here).
    Timed alternately with the kernels, so each row's reference sees the same machine state."""

    def __init__(self, threads, nbytes=512 << 20):
        self.nbytes = nbytes
        self.parts = np.array_split(np.ones(nbytes // 8, dtype=np.float64), threads)

    def __call__(self):
        ts = [threading.Thread(target=lambda p=p: p @ p) for p in self.parts]
        for t in ts:
            t.start()
        for t in ts:
            t.join()


class QuantaMatmul:
    def __init__(self, blocks, wtype, m, k, threads):
        self.graph = _core.Graph()
        self.x = self.graph.input("f32", [m, k])
        self.out = self.graph.matmul(self.graph.constant(blocks, wtype, pack=True), self.x)
        self.threads = threads
        self.xv = np.random.default_rng(0).standard_normal((m, k), dtype=np.float32)

    def __call__(self):
        self.graph.run([self.out], {self.x: self.xv}, "cpu", self.threads)


def weights(wtype, n, k, rng):
    w = rng.standard_normal((n, k), dtype=np.float32)
    if wtype == "f16":
        return w.astype(np.float16), w.astype(np.float16).nbytes
    blocks = quanta.quantize(w, wtype)
    return blocks, blocks.nbytes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--types", nargs="*", default=TYPES)
    parser.add_argument("--rows", type=int, default=16384, help="matvec rows (weights far larger than cache)")
    parser.add_argument("--k", type=int, default=4096)
    parser.add_argument("--prefill", type=int, default=512, help="batch for the matmul benchmark")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    try:
        import ggml_peer

        peer = ggml_peer.Ggml()
    except (ImportError, OSError) as e:
        peer = None
        print(f"(ggml peer unavailable: {e})", file=sys.stderr)

    rng = np.random.default_rng(0)
    reader = ReadBandwidth(args.threads)
    rows = []
    for wtype in args.types:
        w, nbytes = weights(wtype, args.rows, args.k, rng)
        small_n = min(2048, args.rows)  # prefill shape: 2048 x k weights, `prefill` activation rows
        ops = 2 * small_n * args.k * args.prefill
        matvec = [QuantaMatmul(w, wtype, 1, args.k, args.threads), reader]
        prefill = [QuantaMatmul(w[:small_n], wtype, args.prefill, args.k, args.threads)]
        if peer and peer.supports(wtype):
            matvec.append(peer.matmul(w, wtype, 1, args.k, args.threads))
            prefill.append(peer.matmul(w[:small_n], wtype, args.prefill, args.k, args.threads))
        mv = best_times_alternating(matvec, 20)
        pf = best_times_alternating(prefill, 4)
        row = {"type": wtype, "weight_mb": nbytes / 1e6, "matvec_gbs": nbytes / mv[0] / 1e9,
               "read_gbs": reader.nbytes / mv[1] / 1e9, "prefill_gops": ops / pf[0] / 1e9}
        row["matvec_pct_bw"] = 100 * row["matvec_gbs"] / row["read_gbs"]
        if len(mv) > 2:
            row["ggml_matvec_gbs"] = nbytes / mv[2] / 1e9
            row["ggml_prefill_gops"] = ops / pf[1] / 1e9
            row["matvec_ratio"] = mv[2] / mv[0]
            row["prefill_ratio"] = pf[1] / pf[0]
        rows.append(row)

    result = {"threads": args.threads, "cpu_level": _core.cpu_level(),
              "shape": {"matvec": [args.rows, args.k], "prefill": [2048, args.k, args.prefill]}, "rows": rows}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"threads {args.threads}, cpu level {_core.cpu_level()}; read bw: 512 MiB read by {args.threads} threads "
          f"(BLAS dot), timed alternately with each row's kernels")
    print(f"matvec {args.rows}x{args.k}; prefill 2048x{args.k} weights x {args.prefill} rows")
    print("| type | MB | matvec GB/s | read bw GB/s | % of read bw | ggml GB/s | quanta/ggml | prefill GOP/s | "
          "ggml GOP/s | quanta/ggml |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    nan = float("nan")
    for r in rows:
        print(f"| {r['type']} | {r['weight_mb']:.0f} | {r['matvec_gbs']:.1f} | {r['read_gbs']:.1f} | "
              f"{r['matvec_pct_bw']:.0f}% | "
              f"{r.get('ggml_matvec_gbs', nan):.1f} | {r.get('matvec_ratio', nan):.2f} | {r['prefill_gops']:.0f} | "
              f"{r.get('ggml_prefill_gops', nan):.0f} | {r.get('prefill_ratio', nan):.2f} |")


if __name__ == "__main__":
    main()
