"""A bounded load test: 64 concurrent streaming clients against a real `quanta serve` for two minutes
(QUANTA_LOAD_SECONDS), with zero failed requests and every stream well formed. The 10-minute soak with
throughput numbers is bench/serve_bench.py --soak."""

from __future__ import annotations

import asyncio
import os
import random
import time

import openai

from serving import metric, quanta_server, wait_metric

CLIENTS = 64
SECONDS = float(os.environ.get("QUANTA_LOAD_SECONDS", "120"))
TOPICS = ["lists", "dicts", "sorting", "regexes", "files", "classes", "recursion", "generators"]


async def client_loop(c: openai.AsyncOpenAI, rng: random.Random, deadline: float, problems: list) -> int:
    done = 0
    while time.monotonic() < deadline:
        max_tokens = rng.randint(4, 24)
        ids, roles, finishes, content, usage = set(), [], [], [], None
        try:
            stream = await c.chat.completions.create(
                model="q", messages=[{"role": "user", "content": f"Explain Python {rng.choice(TOPICS)} briefly."}],
                max_tokens=max_tokens, temperature=0.8, seed=rng.randrange(2**31), stream=True,
                stream_options={"include_usage": True})
            async for chunk in stream:
                ids.add(chunk.id)
                if not chunk.choices:
                    usage = chunk.usage
                    continue
                ch = chunk.choices[0]
                roles.append(ch.delta.role)
                finishes.append(ch.finish_reason)
                content.append(ch.delta.content or "")
        except Exception as e:  # any failure counts
            problems.append(f"{type(e).__name__}: {e}")
            continue
        ok = (len(ids) == 1 and roles and roles[0] == "assistant" and not any(roles[1:])
              and finishes[-1] in ("stop", "length") and not any(finishes[:-1])
              and usage is not None and 0 < usage.completion_tokens <= max_tokens)
        if not ok:
            problems.append(f"malformed stream: ids={ids} roles={roles[:2]} finishes={finishes[-2:]} usage={usage}")
        done += 1
    return done


def test_64_streaming_clients_for_two_minutes(qwen_path):
    with quanta_server(qwen_path, "-np", "16", "--max-queue", "64", "-c", "8192", "-t", "2") as (base, _):
        async def main():
            c = openai.AsyncOpenAI(base_url=base + "/v1", api_key="x", max_retries=0, timeout=300)
            problems: list = []
            deadline = time.monotonic() + SECONDS
            counts = await asyncio.gather(*(client_loop(c, random.Random(i), deadline, problems)
                                            for i in range(CLIENTS)))
            await c.close()
            return counts, problems

        counts, problems = asyncio.run(main())
        assert problems == []
        assert sum(counts) >= CLIENTS and min(counts) >= 1  # every client got through at least once
        assert metric(base, "requests_total") == sum(counts)
        assert wait_metric(base, "busy_slots", 0) == 0 and wait_metric(base, "queue_depth", 0) == 0
        assert metric(base, "requests_rejected_total") == 0
