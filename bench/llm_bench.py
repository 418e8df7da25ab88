#!/usr/bin/env python3
"""LLM speed, quanta next to llama.cpp (llama-cpp-python) on the same GGUF with
the same thread count, as llama-bench measures it: pp = one batch of
--n-prompt random tokens into an empty cache (logits of the last one), tg =
--n-gen tokens one at a time from an empty cache. The two engines alternate
run by run so that machine noise hits both alike; each cell is the median.

    python bench/llm_bench.py --threads 2

Both engines state their kernel level: quanta's (--level picks one, as
QUANTA_CPU does) and the ISA flags of the llama.cpp build in use, with the CPU
model. --llama-cpp-python DIR imports llama-cpp-python from DIR instead, so an
AVX-512 machine can race at AVX2 fairly, against a llama.cpp built without
AVX-512:

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
      -DGGML_AVX512=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF" \
      pip install --no-cache-dir --no-deps --target /tmp/lcp-avx2 llama-cpp-python==0.3.36
    python bench/llm_bench.py --level avx2 --llama-cpp-python /tmp/lcp-avx2
    python bench/llm_bench.py            # and the best level, natively built

(--no-cache-dir: otherwise a second build of the same version, for another
level, reuses pip's cached wheel of the first whatever CMAKE_ARGS say.)
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import quanta
from quanta import fetch

sys.path.insert(0, str(Path(__file__).parent))
from llama_peer import LlamaPeer  # noqa: E402
from timing import settle  # noqa: E402

MODELS = {"qwen": "qwen2.5-coder-0.5b-instruct-q4_k_m", "gemma": "gemma-3-270m-q4_k_m"}


class Engine:
    """eval(tokens) into an empty cache; clear() between runs."""

    def __init__(self, name, clear, decode):
        self.name, self.clear, self.decode = name, clear, decode


def engines(path, threads, n_ctx, n_batch, only=None):
    out = []
    if only in (None, "quanta"):
        llm = quanta.LLM(path, n_ctx=n_ctx, n_threads=threads, n_batch=n_batch)
        out.append(Engine("quanta", lambda: llm._ctx.truncate(0), lambda ids: llm._ctx.eval(ids)))
    if only in (None, "llama.cpp"):
        peer = LlamaPeer(path, n_ctx=n_ctx, threads=threads, n_batch=n_batch)
        out.append(Engine("llama.cpp", peer.clear, lambda ids: peer.decode(ids)))
    return out


def pp_run(engine, ids):
    engine.clear()
    settle()
    t0 = time.perf_counter()
    engine.decode(ids)
    return len(ids) / (time.perf_counter() - t0)


def tg_run(engine, first, n):
    engine.clear()
    settle()
    t0 = time.perf_counter()
    token = first
    for i in range(n):
        engine.decode([token])
        token = (token * 7919 + i) % 1000 + 10  # fixed pseudo-random tokens, the same for both
    return n / (time.perf_counter() - t0)


def model_path(name):
    """A real model's name (MODELS) or a GGUF file's path."""
    return fetch.fetch(MODELS[name]) if name in MODELS else Path(name)


def bench_model(name, threads, n_prompt, n_gen, reps):
    path = model_path(name)
    es = engines(path, threads, n_ctx=n_prompt + n_gen + 16, n_batch=max(n_prompt, 1))
    ids = np.random.default_rng(0).integers(10, 1000, n_prompt).tolist()
    pp = {e.name: [] for e in es}
    tg = {e.name: [] for e in es}
    for e in es:  # warm-up: page the weights in, size the buffers
        pp_run(e, ids)
        tg_run(e, 11, 8)
    for _ in range(reps):
        for e in es:
            pp[e.name].append(pp_run(e, ids))
        for e in es:
            tg[e.name].append(tg_run(e, 11, n_gen))
    med = lambda d: {k: statistics.median(v) for k, v in d.items()}  # noqa: E731
    pp, tg = med(pp), med(tg)
    rss = {e.name: peak_rss_mb(e.name, name, threads, n_prompt, n_gen) for e in es}
    return {"model": name, "file_mb": path.stat().st_size / 1e6, "threads": threads, "peak_rss_mb": rss,
            "pp": pp, "tg": tg, "pp_ratio": pp["quanta"] / pp["llama.cpp"], "tg_ratio": tg["quanta"] / tg["llama.cpp"]}


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def llama_cpp_isa():
    """The ISA flags llama.cpp reports as on (its system info: "AVX2 = 1 | AVX512 = 0 | ...")."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    on = [part.split("=")[0].split(":")[-1].strip() for part in info.split("|") if part.strip().endswith("= 1")]
    return " ".join(on) or info.strip()


def machine():
    return {"cpu": cpu_model(), "quanta_level": quanta._core.cpu_level(), "llama_cpp_isa": llama_cpp_isa()}


def peak_rss_mb(engine_name, name, threads, n_prompt, n_gen):
    """Peak resident memory of a fresh process that loads one engine and runs pp and tg once."""
    import subprocess

    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import llm_bench as b; "
            f"es = b.engines(b.model_path({name!r}), {threads}, {n_prompt + n_gen + 16}, {max(n_prompt, 1)}, "
            f"only={engine_name!r}); b.pp_run(es[0], list(range(10, 10 + {n_prompt}))); b.tg_run(es[0], 11, {n_gen}); "
            "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])")
    # VmHWM, not ru_maxrss: the latter survives exec and would report this (parent) process's peak.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(out.split()[-1]) / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-prompt", type=int, default=512)
    ap.add_argument("--n-gen", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--models", default="qwen,gemma", help="comma-separated: qwen, gemma or GGUF paths")
    ap.add_argument("--level", help="quanta's CPU kernel level (as QUANTA_CPU; default: the best this CPU has)")
    ap.add_argument("--llama-cpp-python", metavar="DIR",
                    help="import llama-cpp-python from DIR (a pip --target install built for a chosen level)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    # Both settings reach the peak-RSS child processes through the environment.
    if args.level:
        os.environ["QUANTA_CPU"] = args.level
        quanta._core.set_cpu_level(args.level)
    if args.llama_cpp_python:
        sys.path.insert(0, args.llama_cpp_python)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [args.llama_cpp_python, os.environ.get("PYTHONPATH")]))
    where = machine()
    rows = [bench_model(m, args.threads, args.n_prompt, args.n_gen, args.reps) for m in args.models.split(",")]
    if args.json:
        print(json.dumps({"machine": where, "rows": rows}, indent=1))
        return
    print(f"CPU: {where['cpu']}; quanta kernels: {where['quanta_level']}; llama.cpp ISA: {where['llama_cpp_isa']}\n")
    print(f"| model | threads | pp{args.n_prompt} quanta | pp llama.cpp | ratio | tg{args.n_gen} quanta | "
          f"tg llama.cpp | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {Path(r['model']).stem} | {r['threads']} | {r['pp']['quanta']:.1f} | {r['pp']['llama.cpp']:.1f} | "
              f"**{r['pp_ratio']:.2f}x** | {r['tg']['quanta']:.1f} | {r['tg']['llama.cpp']:.1f} | "
              f"**{r['tg_ratio']:.2f}x** |")
    print(f"\n(tokens/s, median of {args.reps} alternating runs)\n")
    print("| model | file MB | peak RSS quanta MB | peak RSS llama.cpp MB |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {Path(r['model']).stem} | {r['file_mb']:.0f} | {r['peak_rss_mb']['quanta']:.0f} | "
              f"{r['peak_rss_mb']['llama.cpp']:.0f} |")


if __name__ == "__main__":
    main()
