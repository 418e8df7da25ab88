#!/usr/bin/env python3
"""LoRA on a quantized Stable Diffusion file (issue 13): what merging at load costs per step, at load and in
memory, and how far the image lands from the f32 file with the same LoRA merged (the reference).

The pipeline is a mid-size SD1-like one (bench/sd_pipeline.py with SD1.5's widths on three levels: UNet
320/640/1280 with attention on every level and one resnet per level, context 768; a small VAE; a 4-layer,
768-wide CLIP), random weights, converted to f32 and q8_0. The LoRA is kohya's format (tests/lora_files.py) on
the transformer blocks' linears (to_q/to_k/to_v/to_out.0, ff.net.0.proj, ff.net.2) and the text encoder, at
rank --rank, alpha rank / 2, weight 1.

    python bench/lora_bench.py --threads 1 --reps 4          # makes the files under --workdir on first use
    python bench/lora_bench.py --threads 1 --reps 4 --rank 128

Each config runs once in a fresh process for its image, load time and memory: f32+lora (the reference
image), q8_0 (no LoRA), q8_0+lora (merged at load). Load is quanta.Diffusion(...) including the merge; RSS after
load and the peak (VmHWM) are the child's. Image error: max |difference| and PSNR of the [0, 1] image against
f32+lora, same latents, CFG 7, euler, --steps steps. Speed is measured apart, in one process holding the q8_0
configs at once: --reps rounds, each sampling 3 steps with every config in turn, so a busy machine slows them
alike; s/step is the median wall time of the steps after the first of each image, and CPU s/step the median of
the process's CPU time over those steps (all threads), which other processes on a shared machine disturb far less
than wall time: at --threads 1, where no thread waits at a barrier, it is the work a step costs.

The alternative to merging, the low-rank products as extra matmuls in the graph (y = W x + scale * up (down x),
the factors kept in f32), was measured with a prototype that is not merged (branch issue13-lora-runtime-proto:
QUANTA_LORA_RUNTIME=1, and a q8_0+lora-runtime config here); bench/README.md has both.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
MARK = "LORA_BENCH_RESULT "
PROMPT = "a lighthouse on a cliff at dusk, oil painting, dramatic sky"
CONFIGS = ("f32+lora", "q8_0", "q8_0+lora")


def paths(workdir: Path, rank: int) -> dict:
    return {"pipeline": workdir / "mid", "f32": workdir / "mid-f32.gguf", "q8_0": workdir / "mid-q8_0.gguf",
            "lora": workdir / f"lora-r{rank}.safetensors"}


def prepare(workdir: Path, rank: int) -> None:
    from sd_pipeline import CLIP, UNET, VAE, write_sd15_pipeline

    import quanta

    p = paths(workdir, rank)
    workdir.mkdir(parents=True, exist_ok=True)
    if not p["pipeline"].exists():
        unet = dict(UNET, block_out_channels=(320, 640, 1280), layers_per_block=1,
                    down_block_types=("CrossAttnDownBlock2D",) * 3, up_block_types=("CrossAttnUpBlock2D",) * 3)
        vae = dict(VAE, block_out_channels=(64, 128, 128, 128), layers_per_block=1)
        counts = write_sd15_pipeline(p["pipeline"], unet=unet, vae=vae, clip=dict(CLIP, num_hidden_layers=4))
        print(f"wrote {p['pipeline']}: " + ", ".join(f"{k} {v / 1e6:.0f}M" for k, v in counts.items()),
              file=sys.stderr)
    for t in ("f32", "q8_0"):
        if not p[t].exists():
            quanta.convert(str(p["pipeline"]), str(p[t]), type=t, progress=False)
    if not p["lora"].exists():
        import torch
        from diffusers import StableDiffusionPipeline
        from lora_files import LINEARS, kohya_lora

        pipe = StableDiffusionPipeline.from_pretrained(str(p["pipeline"]), torch_dtype=torch.float32,
                                                       safety_checker=None, requires_safety_checker=False)
        kohya_lora(pipe, p["lora"], LINEARS, rank)


def status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def load(config: str, p: dict, threads: int):
    import quanta

    kind, _, lora = config.partition("+")
    sd = quanta.Diffusion(p[kind], n_threads=threads, loras=[(p["lora"], 1.0)] if lora else ())
    return sd


def sample(sd, size: int, steps: int):
    f = sd.config["downscale"]
    latents = np.random.default_rng(0).standard_normal((1, 4, size // f, size // f)).astype(np.float32)
    marks = []  # (wall, CPU seconds of the whole process) after each step
    image = sd.sample(PROMPT, width=size, height=size, steps=steps, cfg_scale=7.0, sampler="euler", latents=latents,
                      output_type="np",
                      callback=lambda step, total, x: marks.append((time.perf_counter(), time.process_time())))
    return image, np.array(marks)


def child(config: str, args) -> dict:
    p = paths(args.workdir, args.rank)
    t0 = time.perf_counter()
    sd = load(config, p, args.threads)
    load_s = time.perf_counter() - t0
    rss_load = status_mb("VmRSS")
    image, _ = sample(sd, args.size, args.steps)
    np.save(args.workdir / f"image-{config}-r{args.rank}.npy", image)
    return {"config": config, "load_s": load_s, "rss_after_load_mb": rss_load, "peak_rss_mb": status_mb("VmHWM")}


def speed(configs: list, args) -> dict:
    """config -> [wall seconds, CPU seconds] of every step after the first of each image, the configs taking
    turns."""
    p = paths(args.workdir, args.rank)
    models = {c: load(c, p, args.threads) for c in configs}
    steps = {c: [] for c in configs}
    for rep in range(args.reps):
        for c in configs[rep % len(configs):] + configs[:rep % len(configs)]:
            _, marks = sample(models[c], args.size, 3)
            steps[c] += np.diff(marks, axis=0).tolist()
    return steps


def run_child(what: str, args):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", what, "--workdir", str(args.workdir),
           "--rank", str(args.rank), "--size", str(args.size), "--steps", str(args.steps), "--threads",
           str(args.threads), "--reps", str(args.reps), "--configs", args.configs]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{what} failed:\n{proc.stdout}{proc.stderr}")
    return json.loads(lines[-1][len(MARK):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/lora_bench"))
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5, help="steps of the images compared (default 5)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5, help="speed rounds, 3 steps per config each (default 5)")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    configs = args.configs.split(",")
    if args.child:
        result = speed([c for c in configs if c.startswith("q8_0")], args) if args.child == "speed" else \
            child(args.child, args)
        print(MARK + json.dumps(result), flush=True)
        return
    prepare(args.workdir, args.rank)
    runs = {}
    for c in configs:
        runs[c] = r = run_child(c, args)
        print(f"{c}: load {r['load_s']:.2f} s, RSS after load {r['rss_after_load_mb']:.0f} MB, peak "
              f"{r['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
    steps = run_child("speed", args)
    ref = np.load(args.workdir / f"image-f32+lora-r{args.rank}.npy").astype(np.float64)
    print(f"| config (rank {args.rank}, {args.threads} threads) | s/step {args.size}², median | CPU s/step, median | "
          "load s | RSS after load MB | peak RSS MB | max abs error | PSNR dB |")
    print("|---|---|---|---|---|---|---|---|")
    for c in configs:
        r = runs[c]
        image = np.load(args.workdir / f"image-{c}-r{args.rank}.npy").astype(np.float64)
        mse = np.mean((image - ref) ** 2)
        psnr = "exact" if mse == 0 else f"{10 * np.log10(1 / mse):.1f}"
        wall, cpu = (f"{x:.3f}" for x in np.median(steps[c], axis=0)) if c in steps else ("—", "—")
        print(f"| {c} | {wall} | {cpu} | {r['load_s']:.2f} | {r['rss_after_load_mb']:.0f} | "
              f"{r['peak_rss_mb']:.0f} | {np.abs(image - ref).max():.4f} | {psnr} |")


if __name__ == "__main__":
    main()
