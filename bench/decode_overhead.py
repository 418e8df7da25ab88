#!/usr/bin/env python3
"""Per-token engine overhead of decode: a Qwen2.5-0.5B-shaped graph (24 layers,
the same heads and ops) with tiny matrices (n_embd 64), so a decode step costs
almost nothing but the engine's own work per step: building and planning the
graph (before graph reuse), filling inputs, the thread pool's barriers between
~500 nodes. Prints the median step time. Run it under two builds to compare:

    python bench/decode_overhead.py --threads 2
    PYTHONPATH=/path/to/old/build python bench/decode_overhead.py --threads 2
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import quanta
from quanta import _core


def write_model(path, n_layer=24, n_embd=64, n_head=4, n_head_kv=2, n_ff=128, n_vocab=256):
    rng = np.random.default_rng(0)
    w = lambda *shape: (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)  # noqa: E731
    hd = n_embd // n_head
    with quanta.GGUFWriter(path) as f:
        f.add_metadata("general.architecture", "qwen2")
        for key, value in [("embedding_length", n_embd), ("block_count", n_layer), ("feed_forward_length", n_ff),
                           ("attention.head_count", n_head), ("attention.head_count_kv", n_head_kv),
                           ("context_length", 4096)]:
            f.add_metadata(f"qwen2.{key}", value, type="u32")
        f.add_metadata("qwen2.attention.layer_norm_rms_epsilon", 1e-6, type="f32")
        f.add_tensor("token_embd.weight", w(n_vocab, n_embd))
        f.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
        for i in range(n_layer):
            p = f"blk.{i}."
            for name, t in [("attn_norm.weight", np.ones(n_embd, np.float32)), ("attn_q.weight", w(n_embd, n_embd)),
                            ("attn_q.bias", w(n_embd)), ("attn_k.weight", w(n_head_kv * hd, n_embd)),
                            ("attn_k.bias", w(n_head_kv * hd)), ("attn_v.weight", w(n_head_kv * hd, n_embd)),
                            ("attn_v.bias", w(n_head_kv * hd)), ("attn_output.weight", w(n_embd, n_embd)),
                            ("ffn_norm.weight", np.ones(n_embd, np.float32)), ("ffn_gate.weight", w(n_ff, n_embd)),
                            ("ffn_up.weight", w(n_ff, n_embd)), ("ffn_down.weight", w(n_embd, n_ff))]:
                f.add_tensor(p + name, t)


def context(path, threads, n_ctx):
    file = quanta.GGUF(path)._file
    try:  # this build: threads belong to the backend the model is placed on
        model = _core.LlmModel(file, n_threads=threads)
        return model, _core.LlmContext(model, n_ctx=n_ctx)
    except TypeError:  # builds before backends owned their threads
        model = _core.LlmModel(file)
        return model, _core.LlmContext(model, n_ctx=n_ctx, n_threads=threads)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repetitions", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "overhead.gguf"
        write_model(path)
        _, ctx = context(path, args.threads, n_ctx=1024)
        medians = []
        for _ in range(args.repetitions):
            ctx.truncate(0)
            ctx.eval([1, 2, 3, 4])
            times = []
            for i in range(args.steps):
                t0 = time.perf_counter()
                ctx.eval([5 + i % 200])
                times.append(time.perf_counter() - t0)
            medians.append(statistics.median(times))
        print(f"{quanta.__file__}: decode step {1e3 * statistics.median(medians):.3f} ms "
              f"(median of {args.repetitions} x {args.steps} steps, {args.threads} threads)")


if __name__ == "__main__":
    sys.exit(main())
