#!/usr/bin/env python3
"""conv2d speed on Stable Diffusion 1.5's UNet layer shapes as GFLOP/s
(2 * Cout * Cin * KH * KW per output pixel), quanta's CPU kernel with f32, f16
and q8_0 kernels (flattened rows) next to torch.nn.functional.conv2d (f32,
same thread count).

    python bench/conv_bench.py --threads 2
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import quanta

sys.path.insert(0, str(Path(__file__).parent))
from op_bench import OneOp, parse_args  # noqa: E402
from timing import best_times_alternating  # noqa: E402

# (label, H = W, Cin, Cout, kernel, stride, pad) at 512x512 (latents 64x64).
LAYERS = [
    ("64x64 320->320 3x3", 64, 320, 320, 3, 1, 1),
    ("64x64 320->320 3x3 s2", 64, 320, 320, 3, 2, 1),
    ("32x32 640->640 3x3", 32, 640, 640, 3, 1, 1),
    ("64x64 320->320 1x1", 64, 320, 320, 1, 1, 0),
]


def quanta_conv(x, w, stride, pad, threads, wtype=""):
    return OneOp(x, threads, lambda g, xi: g.conv2d(xi, g.constant(w, wtype), None, stride, pad))


def main():
    args = parse_args(__doc__)
    rng = np.random.default_rng(0)
    print(f"| layer | quanta f32 | quanta f16 | quanta q8_0 | torch f32 |  (GFLOP/s, {args.threads} threads)")
    print("| --- | --- | --- | --- | --- |")
    for label, hw, cin, cout, k, stride, pad in LAYERS:
        x = rng.standard_normal((1, cin, hw, hw), dtype=np.float32)
        w = rng.standard_normal((cout, cin, k, k), dtype=np.float32) * 0.05
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        q8 = quanta.quantize(w.reshape(cout, -1), "q8_0")
        fns = [quanta_conv(x, w, stride, pad, args.threads), quanta_conv(x, w.astype(np.float16), stride, pad, args.threads),
               quanta_conv(x, q8, stride, pad, args.threads, "q8_0"), lambda: F.conv2d(tx, tw, stride=stride, padding=pad)]
        ref = fns[3]().numpy()
        assert np.allclose(fns[0](), ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max()), label
        times = best_times_alternating(fns, args.repeats)
        flops = 2.0 * ref.shape[2] * ref.shape[3] * cout * cin * k * k
        print(f"| {label} | " + " | ".join(f"{flops / t / 1e9:.0f}" for t in times) + " |")


if __name__ == "__main__":
    main()
