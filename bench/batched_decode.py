#!/usr/bin/env python3
"""Aggregate decode speed with many sequences in one batch: quanta next to
llama.cpp (llama-cpp-python, n_seq_max with one unified KV cache and one
llama_batch per step) on the same GGUF and threads. Each of N sequences gets
a 32-token prompt (not timed), then --steps steps decode one token of every
sequence in one batch, logits for all. Reports tokens/s summed over the
sequences (median of the repetitions; the engines alternate), and how far
quanta's batched logits are from each sequence's decoded alone (KL divergence,
max and mean over the sequences of one step).

    python bench/batched_decode.py --threads 2 --parallel 1 4 16
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import quanta
from quanta import _core, fetch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from divergence import kld  # noqa: E402
from llama_peer import LlamaPeer  # noqa: E402
from timing import settle  # noqa: E402

PROMPT = 32


def quanta_run(path, threads, n_seq, steps, n_ctx):
    file = quanta.GGUF(path)._file
    model = _core.LlmModel(file, n_threads=threads)
    ctx = _core.LlmContext(model, n_ctx=n_ctx, n_seq=n_seq)
    rng = np.random.default_rng(0)

    def run():
        for s in range(n_seq):
            ctx.truncate(0, seq=s)
        for s in range(n_seq):
            ctx.eval(rng.integers(100, 20000, PROMPT).tolist(), seq=s)
        settle()
        t0 = time.perf_counter()
        for i in range(steps):
            ctx.decode([1000 + i] * n_seq, list(range(n_seq)), [PROMPT + i] * n_seq, [True] * n_seq)
        return n_seq * steps / (time.perf_counter() - t0)

    return run


def batch_against_alone(path, threads, n_seq):
    """KLD of one batched decode step's logits from the same tokens decoded one sequence at a time."""
    model = _core.LlmModel(quanta.GGUF(path)._file, n_threads=threads)
    ctx = _core.LlmContext(model, n_ctx=n_seq * (PROMPT + 1) + 256, n_seq=n_seq)
    rng = np.random.default_rng(1)
    nxt = [int(np.argmax(ctx.eval(rng.integers(100, 20000, PROMPT).tolist(), seq=s)[0])) for s in range(n_seq)]
    batched = ctx.decode(nxt, list(range(n_seq)), [PROMPT] * n_seq, [True] * n_seq)
    alone = []
    for s in range(n_seq):
        ctx.truncate(PROMPT, seq=s)
        alone.append(ctx.eval([nxt[s]], seq=s)[0])
    k = kld(np.array(alone), batched)
    return float(k.max()), float(k.mean())


def llama_run(path, threads, n_seq, steps, n_ctx):
    peer = LlamaPeer(path, n_ctx=n_ctx, threads=threads, n_seq=n_seq)
    rng = np.random.default_rng(0)

    def run():
        peer.clear()
        for s in range(n_seq):
            peer.decode_batch(rng.integers(100, 20000, PROMPT).tolist(), [s] * PROMPT, list(range(PROMPT)))
        settle()
        t0 = time.perf_counter()
        for i in range(steps):
            peer.decode_batch([1000 + i] * n_seq, list(range(n_seq)), [PROMPT + i] * n_seq)
        return n_seq * steps / (time.perf_counter() - t0)

    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct-q4_k_m", help="a cached model name or a .gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    path = args.model if args.model.endswith(".gguf") else str(fetch.fetch(args.model, quiet=True))
    rows = []
    for n in args.parallel:
        n_ctx = n * (PROMPT + args.steps) + 256
        runs = {"quanta": quanta_run(path, args.threads, n, args.steps, n_ctx),
                "llama.cpp": llama_run(path, args.threads, n, args.steps, n_ctx)}
        speeds = {name: [] for name in runs}
        for _ in range(args.repetitions):
            for name, run in runs.items():
                speeds[name].append(run())
        row = {"parallel": n, **{name: statistics.median(v) for name, v in speeds.items()}}
        row["ratio"] = row["quanta"] / row["llama.cpp"]
        row["kld_max"], row["kld_mean"] = batch_against_alone(path, args.threads, n)
        rows.append(row)
        if not args.json:
            print(f"{n:3d} sequences: quanta {row['quanta']:7.1f} t/s   llama.cpp {row['llama.cpp']:7.1f} t/s   "
                  f"ratio {row['ratio']:.2f}   KLD batched/alone max {row['kld_max']:.2g} mean "
                  f"{row['kld_mean']:.2g}", flush=True)
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    sys.exit(main())
