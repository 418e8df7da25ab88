#!/usr/bin/env python3
"""Image error of each quantized Stable Diffusion type against its engine's f16 image (issue 13): quanta's q8_0
and q4_k_m files (the UNet's convolutions quantized too) next to stable-diffusion.cpp's q8_0, q4_k and q4_0 (the
same f16 weights quantized at load), on the SD1.5-shaped random pipeline (bench/sd_pipeline.py). Each engine is
compared with itself at f16 for the same prompt and seed (their noise generators differ), as PSNR over [0, 1]
pixels. The source weights are fp16, so f16 is each engine's exact-weights image.

    python bench/sd_quality.py --size 256 --steps 8 --threads 2

Each config runs in its own process, one after another; its image is kept under --workdir as NAME.npy.
stable-diffusion.cpp: `CMAKE_ARGS="-DGGML_NATIVE=ON" pip install stable-diffusion-cpp-python`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PROMPT, CFG, SEED = "a lighthouse on a cliff at dusk, oil painting, dramatic sky", 7.0, 0
QUANTA = ("f16", "q8_0", "q4_k_m")
SDCPP = ("f16", "q8_0", "q4_k", "q4_0")


def make_image(engine: str, kind: str, workdir: Path, size: int, steps: int, threads: int) -> np.ndarray:
    if engine == "quanta":
        import quanta

        sd = quanta.Diffusion(workdir / f"sd15-{kind}.gguf", n_threads=threads)
        return sd.sample(PROMPT, width=size, height=size, steps=steps, cfg_scale=CFG, sampler="euler", seed=SEED,
                         output_type="np")
    from stable_diffusion_cpp import StableDiffusion

    sd = StableDiffusion(model_path=str(workdir / "sd15-ldm-f16.safetensors"), n_threads=threads,
                         wtype="default" if kind == "f16" else kind, vae_decode_only=True, verbose=False)
    (image,) = sd.generate_image(PROMPT, width=size, height=size, cfg_scale=CFG, sample_method="euler",
                                 scheduler="discrete", sample_steps=steps, seed=SEED)
    return np.asarray(image, dtype=np.float32) / 255.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/sdc"),
                    help="holds sd15-{f16,q8_0,q4_k_m}.gguf and sd15-ldm-f16.safetensors (bench/sd_bench.py makes them)")
    ap.add_argument("--engines", default="quanta,sdcpp")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        engine, kind = args.child.split("-", 1)
        np.save(args.workdir / f"quality-{args.child}.npy",
                make_image(engine, kind, args.workdir, args.size, args.steps, args.threads))
        return
    rows = []
    for engine in args.engines.split(","):
        kinds = QUANTA if engine == "quanta" else SDCPP
        for kind in kinds:
            subprocess.run([sys.executable, __file__, "--child", f"{engine}-{kind}", "--size", str(args.size),
                            "--steps", str(args.steps), "--threads", str(args.threads), "--workdir",
                            str(args.workdir)], check=True)
        ref = np.load(args.workdir / f"quality-{engine}-f16.npy")
        for kind in kinds[1:]:
            rows.append((engine, kind, psnr(np.load(args.workdir / f"quality-{engine}-{kind}.npy"), ref)))
    print(f"PSNR against the same engine's f16 image, {args.size}x{args.size}, {args.steps} euler steps, CFG {CFG}")
    print("| engine | type | PSNR dB |\n|---|---|---|")
    for engine, kind, value in rows:
        print(f"| {'quanta' if engine == 'quanta' else 'stable-diffusion.cpp'} | {kind} | {value:.1f} |")


if __name__ == "__main__":
    main()
