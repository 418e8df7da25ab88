#!/usr/bin/env python3
"""The Stable Diffusion norms and activations (issue 12) on Stable Diffusion
1.5's shapes at 512 x 512 (a 64 x 64 latent), quanta's CPU backend next to
torch's CPU kernels on the same arrays and thread count, alternating, best of
N: nanoseconds per element and the ratio. Each side runs a chain of 1 and of
K applications of the op, and the difference over K - 1 is the op's own time:
without the copies into and out of quanta's graph that Graph.run makes on
every call, with torch's allocation of each result, as a model pays them.

    python bench/diffusion_ops.py --threads 2
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from quanta import _core

sys.path.insert(0, str(Path(__file__).parent))
from timing import best_times_alternating  # noqa: E402


K = 5


def cases(rng):
    """(name, input, quanta's op on a tensor, torch's function): the UNet's first level (320 channels,
    4096 tokens, GEGLU's 4 x 320 inner width) and the VAE decoder's last (128 channels at 512 x 512)."""
    image = rng.standard_normal((1, 320, 64, 64), dtype=np.float32)
    vae = rng.standard_normal((1, 128, 512, 512), dtype=np.float32)
    tokens = rng.standard_normal((4096, 320), dtype=np.float32)
    inner = rng.standard_normal((4096, 1280), dtype=np.float32)
    return [
        ("group_norm 320x64x64, 32 groups", image, lambda g, t: g.group_norm(t, 32, 1e-5),
         lambda x: F.group_norm(x, 32, eps=1e-5)),
        ("group_norm 128x512x512, 32 groups", vae, lambda g, t: g.group_norm(t, 32, 1e-6),
         lambda x: F.group_norm(x, 32, eps=1e-6)),
        ("layer_norm 4096x320", tokens, lambda g, t: g.layer_norm(t, 1e-5), lambda x: F.layer_norm(x, (320,), eps=1e-5)),
        ("silu 128x512x512", vae, lambda g, t: g.silu(t), F.silu),
        ("gelu_erf 4096x1280", inner, lambda g, t: g.gelu_erf(t), F.gelu),
        ("quick_gelu 4096x1280", inner, lambda g, t: g.quick_gelu(t), lambda x: x * torch.sigmoid(1.702 * x)),
    ]


def chain(fn, x, n):
    for _ in range(n):
        x = fn(x)
    return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"quanta level {_core.cpu_level()}, torch {torch.__version__}, {args.threads} threads, best of {args.reps}")
    print("| op | quanta ns/element | torch ns/element | torch / quanta |")
    print("|---|---|---|---|")
    for name, x, op, reference in cases(np.random.default_rng(0)):
        runs = []
        for n in (1, K):
            g = _core.Graph()
            node = chain(lambda t: op(g, t), g.constant(x), n)
            runs.append(lambda g=g, node=node: g.run([node], {}, "cpu", args.threads))
        xt = torch.from_numpy(x)
        runs += [lambda n=n: chain(reference, xt, n) for n in (1, K)]
        with torch.inference_mode():
            q1, qk, t1, tk = best_times_alternating(runs, args.reps)
        ours, theirs = (qk - q1) / (K - 1) * 1e9 / x.size, (tk - t1) / (K - 1) * 1e9 / x.size
        print(f"| {name} | {ours:.2f} | {theirs:.2f} | {theirs / ours:.2f}x |")


if __name__ == "__main__":
    main()
