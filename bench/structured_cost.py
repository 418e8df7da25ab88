#!/usr/bin/env python3
"""What structured output costs per token: llguidance's mask (called from the engine's sampler chain through
the Python constraint) against the same generation unconstrained, on the real Qwen model.

Each run decodes one request with response_format json_object (and one with a JSON schema) on the C++
generator and times, per generated token, (a) the constraint's callbacks (mask computation and token
acceptance, Python call included) and (b) the whole step; then the same prompt unconstrained. Reports the
medians over --reps runs.

    python bench/structured_cost.py --threads 2 --reps 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import quanta
from quanta import _core, fetch
from quanta.serve.protocol import ResponseFormat
from quanta.serve.structured import Grammars

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                           "tags": {"type": "array", "items": {"type": "string"}}},
          "required": ["name", "age", "tags"]}


class Timed:
    """Wraps a constraint, summing the seconds its callbacks take."""

    def __init__(self, inner):
        self.inner, self.seconds, self.calls = inner, 0.0, 0

    def allowed(self, words):
        t = time.perf_counter()
        self.inner.allowed(words)
        self.seconds += time.perf_counter() - t
        self.calls += 1

    def accept(self, token):
        t = time.perf_counter()
        self.inner.accept(token)
        self.seconds += time.perf_counter() - t


def run(llm, prompt, constraint, max_tokens, seed):
    gen = _core.Generator(llm._ctx, llm._tokenizer)
    llm._ctx.truncate(0)
    rid = gen.add(prompt, max_tokens=max_tokens, temperature=0.7, top_k=40, top_p=0.95, min_p=0.05,
                  repeat_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0, penalty_last_n=64, seed=seed,
                  stop=[], context_shift=False, constraint=constraint)
    gen.step()  # the prompt and the first token: not timed
    start = time.perf_counter()
    first = len(gen.tokens(rid))
    while gen.step():
        pass
    n = len(gen.tokens(rid)) - first
    return (time.perf_counter() - start) / max(n, 1), n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=96)
    args = ap.parse_args()
    path = fetch.fetch("qwen2.5-coder-0.5b-instruct-q4_k_m", quiet=True)
    llm = quanta.LLM(path, n_ctx=1024, n_seq=1, n_threads=args.threads)
    grammars = Grammars(llm._tokenizer, llm.n_vocab)
    t = time.perf_counter()
    grammars.warm()
    print(f"llguidance tokenizer for {llm.n_vocab} tokens: {time.perf_counter() - t:.2f} s (once per model)")
    prompt = llm.tokenize(llm.render_chat([{"role": "user", "content": "Describe a person as JSON."}]),
                          add_bos=False)
    formats = {"json_object": ResponseFormat(type="json_object"),
               "json_schema": ResponseFormat(type="json_schema", json_schema={"name": "p", "schema": SCHEMA})}
    plain = [run(llm, prompt, None, args.max_tokens, seed)[0] for seed in range(args.reps)]
    print(f"unconstrained: {statistics.median(plain) * 1e3:.2f} ms/token")
    for name, fmt in formats.items():
        steps, masks, counts = [], [], []
        for seed in range(args.reps):
            timed = Timed(grammars.constraint(fmt))
            per_token, n = run(llm, prompt, timed, args.max_tokens, seed)
            steps.append(per_token)
            masks.append(timed.seconds / max(timed.calls, 1))
            counts.append(n)
        print(f"{name}: {statistics.median(steps) * 1e3:.2f} ms/token, of which the constraint's callbacks "
              f"{statistics.median(masks) * 1e6:.0f} us/token (tokens per run: {counts})")


if __name__ == "__main__":
    main()
