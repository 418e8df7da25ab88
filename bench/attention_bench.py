#!/usr/bin/env python3
"""dense_attention speed on Stable Diffusion 1.5's attention shapes at 512x512
as GFLOP/s (4 * Tq * Tk * d per head), quanta's CPU kernel with f16 keys and
values next to torch.nn.functional.scaled_dot_product_attention (f32, same
values, same thread count).

    python bench/attention_bench.py --threads 2
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from op_bench import OneOp, parse_args  # noqa: E402
from timing import best_times_alternating  # noqa: E402

# (label, heads, Tq, Tk, head size): self-attention at latents 64x64, 32x32, 16x16; cross-attention on CLIP's 77 tokens.
SHAPES = [
    ("self 4096 tokens, d 40", 8, 4096, 4096, 40),
    ("cross 4096 x 77, d 40", 8, 4096, 77, 40),
    ("self 1024 tokens, d 80", 8, 1024, 1024, 80),
    ("self 256 tokens, d 160", 8, 256, 256, 160),
]


def quanta_attention(q, k, v, threads):
    return OneOp(q, threads, lambda g, qi: g.dense_attention(qi, g.constant(k), g.constant(v), q.shape[-1] ** -0.5))


def main():
    args = parse_args(__doc__)
    rng = np.random.default_rng(0)
    print(f"| shape | quanta (f16 k, v) | torch f32 |  (GFLOP/s, {args.threads} threads)")
    print("| --- | --- | --- |")
    for label, heads, tq, tk, d in SHAPES:
        q = rng.standard_normal((1, heads, tq, d), dtype=np.float32)
        k, v = (rng.standard_normal((1, heads, tk, d)).astype(np.float16) for _ in range(2))
        tq32, tk32, tv32 = (torch.from_numpy(a.astype(np.float32)) for a in (q, k, v))
        fns = [quanta_attention(q, k, v, args.threads), lambda: F.scaled_dot_product_attention(tq32, tk32, tv32)]
        ref = fns[1]().transpose(1, 2).numpy()
        assert np.allclose(fns[0](), ref, rtol=1e-4, atol=1e-4), label
        times = best_times_alternating(fns, args.repeats)
        flops = 4.0 * heads * tq * tk * d
        print(f"| {label} | " + " | ".join(f"{flops / t / 1e9:.0f}" for t in times) + " |")


if __name__ == "__main__":
    main()
