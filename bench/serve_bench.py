#!/usr/bin/env python3
"""Serving throughput and time to first token: `quanta serve` next to llama.cpp's llama-server on the same
GGUF, threads, slots and context, driven by the official openai client.

At each concurrency C, C clients send streaming chat requests back to back for --seconds: a short chat prompt
(a shared system prompt, then one of several questions) and exactly --max-tokens tokens out (the end-of-text
tokens are banned with logit_bias, on both servers, so both generate the same amount). Reported per engine and
C: aggregate tokens/s (completion tokens of all finished requests over the wall time, in-flight requests
included until they finish), time to first token (first content chunk) p50 and p99, and failed requests. The
engines alternate at each C; both servers stay up, idle when not measured.

    python bench/serve_bench.py --threads 2 --clients 1 4 16 64 --seconds 30 --llama-server PATH
    python bench/serve_bench.py --soak 600 --clients 64          # quanta alone: failures, RSS drift

llama-server: the llama-cpp-python sdist carries llama.cpp's sources (bench/README.md says how to build it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from serving import free_port, wait_healthy  # noqa: E402

from quanta import fetch  # noqa: E402

QUESTIONS = ["How do I reverse a list in Python?", "What is a closure?", "Explain big-O notation.",
             "How do I read a file line by line?", "What does git rebase do?", "What is a mutex?",
             "Explain HTTP status 429.", "How do Python generators work?"]
SYSTEM = "You are a helpful programming assistant. Answer clearly."


def start_quanta(model, threads, parallel, ctx):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "quanta", "serve", "-m", model, "--port", str(port),
                             "-np", str(parallel), "-c", str(ctx), "-t", str(threads), "--max-queue", "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


def start_llama(binary, model, threads, parallel, ctx):
    port = free_port()
    proc = subprocess.Popen([binary, "-m", model, "--port", str(port), "-np", str(parallel), "-c", str(ctx),
                             "-t", str(threads), "-tb", str(threads), "--kv-unified", "--no-webui"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


async def one_request(c, rng, max_tokens, bias, stats):
    start = time.perf_counter()
    first = None
    tokens = 0
    try:
        stream = await c.chat.completions.create(
            model="m", messages=[{"role": "system", "content": SYSTEM},
                                 {"role": "user", "content": rng.choice(QUESTIONS)}],
            max_tokens=max_tokens, temperature=0.8, top_p=0.95, seed=rng.randrange(2**31), logit_bias=bias,
            stream=True, stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content and first is None:
                first = time.perf_counter() - start
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
    except Exception as e:
        stats["failed"] += 1
        stats["errors"].append(f"{type(e).__name__}: {e}"[:200])
        return
    stats["tokens"] += tokens
    stats["requests"] += 1
    if first is not None:
        stats["ttft"].append(first)


async def run_level(base, clients, seconds, max_tokens, bias, seed=0):
    c = openai.AsyncOpenAI(base_url=base + "/v1", api_key="x", max_retries=0, timeout=600)
    stats = {"tokens": 0, "requests": 0, "failed": 0, "ttft": [], "errors": []}
    deadline = time.perf_counter() + seconds

    async def client(i):
        rng = random.Random(seed * 1000 + i)
        while time.perf_counter() < deadline:
            await one_request(c, rng, max_tokens, bias, stats)

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    wall = time.perf_counter() - start
    await c.close()
    ttft = sorted(stats["ttft"])
    return {"clients": clients, "tok_s": stats["tokens"] / wall, "requests": stats["requests"],
            "failed": stats["failed"], "ttft_p50": statistics.median(ttft) if ttft else None,
            "ttft_p99": ttft[min(len(ttft) - 1, int(0.99 * len(ttft)))] if ttft else None, "wall": wall,
            "errors": stats["errors"][:3]}


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def eos_bias(model):
    """logit_bias that bans the end-of-generation tokens (from the GGUF's tokenizer; no model load)."""
    from quanta import _core

    tok = _core.Tokenizer(model)
    return {str(i): -100 for i in range(tok.n_vocab) if tok.is_end_of_generation(i)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="GGUF (default: the real Qwen model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=16, help="slots of both servers")
    ap.add_argument("--ctx", type=int, default=4096, help="KV cells of both servers (unified)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--llama-server", default=None, help="llama-server binary (left out: quanta alone)")
    ap.add_argument("--soak", type=float, default=None, help="seconds of one long run of quanta alone")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    model = args.model or str(fetch.fetch("qwen2.5-coder-0.5b-instruct-q4_k_m", quiet=True))
    bias = eos_bias(model)

    servers = {"quanta": start_quanta(model, args.threads, args.parallel, args.ctx)}
    if args.llama_server and not args.soak:
        servers["llama-server"] = start_llama(args.llama_server, model, args.threads, args.parallel, args.ctx)
    try:
        for name, (proc, base) in servers.items():
            wait_healthy(base, proc, 300)
        if args.soak:
            proc, base = servers["quanta"]
            rss = [rss_mib(proc.pid)]

            async def soak():
                async def sample():  # RSS each minute: the mapped weights page in early, a leak keeps growing
                    while True:
                        await asyncio.sleep(60)
                        rss.append(rss_mib(proc.pid))

                sampler = asyncio.ensure_future(sample())
                try:
                    return await run_level(base, args.clients[-1], args.soak, args.max_tokens, bias)
                finally:
                    sampler.cancel()

            r = asyncio.run(soak())
            rss.append(rss_mib(proc.pid))
            r.update(engine="quanta", rss_mib=rss)
            print(json.dumps(r) if args.json else
                  f"soak {args.soak:.0f} s, {r['clients']} clients: {r['requests']} requests, {r['failed']} failed, "
                  f"{r['tok_s']:.1f} tok/s, TTFT p50 {r['ttft_p50']:.3f} s p99 {r['ttft_p99']:.3f} s, "
                  f"RSS per minute (MiB): {' '.join(f'{x:.0f}' for x in rss)}")
            return
        rows = []
        for clients in args.clients:
            for name, (proc, base) in servers.items():
                asyncio.run(run_level(base, 1, 2, 8, bias))  # warm-up
                r = asyncio.run(run_level(base, clients, args.seconds, args.max_tokens, bias))
                r["engine"] = name
                rows.append(r)
                print(json.dumps(r), file=sys.stderr)
        if args.json:
            print(json.dumps(rows))
            return
        print("| clients | engine | tok/s | requests | failed | TTFT p50 (s) | TTFT p99 (s) |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['clients']} | {r['engine']} | {r['tok_s']:.1f} | {r['requests']} | {r['failed']} | "
                  f"{r['ttft_p50']:.3f} | {r['ttft_p99']:.3f} |")
        if len(servers) == 2:
            print("\n| clients | tok/s quanta/llama-server | TTFT p99 quanta/llama-server |")
            print("|---|---|---|")
            for clients in args.clients:
                q = next(r for r in rows if r["clients"] == clients and r["engine"] == "quanta")
                ll = next(r for r in rows if r["clients"] == clients and r["engine"] == "llama-server")
                print(f"| {clients} | {q['tok_s'] / ll['tok_s']:.2f} | {q['ttft_p99'] / ll['ttft_p99']:.2f} |")
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
