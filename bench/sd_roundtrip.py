#!/usr/bin/env python3
"""Round trips between quanta and stable-diffusion.cpp (stable-diffusion-cpp-python) on the SD1.5-shaped random
pipeline (bench/sd_pipeline.py), which CI cannot run: stable-diffusion.cpp is not installed there and its UNet has
SD1/SD2's fixed shapes, so the tiny test pipelines do not load in it.

    python bench/sd_roundtrip.py --workdir /tmp/sdc --size 256 --steps 4 --threads 2 \
        [--sdcpp-python /work/venv-bench/bin/python] [--check-stand-in]

Files (made under --workdir when missing, as bench/sd_bench.py makes them): sd15-f16.gguf (`quanta convert` of
the diffusers folder) and sd15-ldm-f16.safetensors (bench/sd_to_ldm.py: the same tensors as an original-layout
single file). stable-diffusion.cpp's convert() turns the single file into its own GGUF files at f16 and q8_0.

Images, each from a fresh process, one at a time (stable-diffusion.cpp takes about 3.5 GB): euler, discrete
schedule, CFG 7, an empty negative prompt, one prompt and seed. Both engines start from the same latents:
stable-diffusion.cpp draws them with its default "cuda" generator (A1111's Philox imitation of torch's CUDA randn,
reimplemented in philox_randn below from its description), and quanta is given those numbers as `latents`.
Then PSNR between:
  - quanta on stable-diffusion.cpp's f16 and q8_0 GGUF files, and on the single file, against quanta on its own
    f16 GGUF (the same weights, so f16 should match to the last bit, q8_0 closely);
  - stable-diffusion.cpp on quanta's f16 GGUF against quanta on it (two engines, the very same file and latents;
    what is left is the engines' differences: schedule interpolation, f16 arithmetic, attention kernels);
  - stable-diffusion.cpp on quanta's GGUF against stable-diffusion.cpp on its own f16 convert (it reads both the
    same way).
--check-stand-in also checks that tests/ldm_checkpoints.write_sdcpp_gguf, which CI uses in place of
stable-diffusion.cpp's convert, writes the same tensors (names, types, bytes) as the real convert at this size.

q8_0 and q4_k_m files from a quanta that quantizes convolutions (stored flattened as 2-D rows) are not loadable by
stable-diffusion.cpp, whose convolutions must be 4-D f16/f32; f16 and f32 files are.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PROMPT = "a lighthouse on a cliff at dusk, oil painting, dramatic sky"
CFG, SEED = 7.0, 42
MARK = "SD_ROUNDTRIP_RESULT "
SDCPP_TYPES = {"f16": 1, "q8_0": 8}  # stable-diffusion.cpp's sd_type_t values


def philox_randn(seed: int, n: int, offset: int = 0) -> np.ndarray:
    """n standard normals as A1111's Philox generator (and stable-diffusion.cpp's "cuda" RNG) draws them: number i
    is Philox4x32-10 of the counter (offset, 0, i, 0) under the key (seed low word, seed high word), its first two
    output words x, y turned into u = (x + 1/2) / 2^32, v = 2 pi (y + 1/2) / 2^32 and sqrt(-2 ln u) sin v,
    in float32."""
    m0, m1, w0, w1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57), np.uint32(0x9E3779B9), np.uint32(0xBB67AE85)
    c = [np.full(n, offset, np.uint32), np.zeros(n, np.uint32), np.arange(n, dtype=np.uint32), np.zeros(n, np.uint32)]
    k0, k1 = np.full(n, seed & 0xFFFFFFFF, np.uint32), np.full(n, (seed >> 32) & 0xFFFFFFFF, np.uint32)
    low = np.uint64(0xFFFFFFFF)
    for r in range(10):
        p0 = c[0].astype(np.uint64) * m0
        p1 = c[2].astype(np.uint64) * m1
        c = [((p1 >> np.uint64(32)).astype(np.uint32) ^ c[1] ^ k0), (p1 & low).astype(np.uint32),
             ((p0 >> np.uint64(32)).astype(np.uint32) ^ c[3] ^ k1), (p0 & low).astype(np.uint32)]
        if r < 9:
            k0, k1 = k0 + w0, k1 + w1
    inv = np.float32(2.3283064e-10)
    inv_2pi = np.float32(2.3283064e-10) * np.float32(6.2831855)
    u = c[0].astype(np.float32) * inv + inv / np.float32(2)
    v = c[1].astype(np.float32) * inv_2pi + inv_2pi / np.float32(2)
    return (np.sqrt(np.float32(-2) * np.log(u)) * np.sin(v)).astype(np.float32)


# ---- children: one engine, one model, one image ----------------------------------------------------------------


def run_quanta(model: str, size: int, steps: int, threads: int) -> dict:
    import quanta

    t0 = time.perf_counter()
    sd = quanta.Diffusion(model, n_threads=threads)
    load = time.perf_counter() - t0
    f = sd.config["downscale"]
    shape = (1, sd.config["latent_channels"], size // f, size // f)
    latents = philox_randn(SEED, int(np.prod(shape))).reshape(shape)
    t0 = time.perf_counter()
    image = sd.sample(PROMPT, negative_prompt="", width=size, height=size, steps=steps, cfg_scale=CFG,
                      sampler="euler", scheduler="discrete", latents=latents, output_type="np")
    return {"image": image, "load_s": load, "sample_s": time.perf_counter() - t0, "config": sd.config}


def run_sdcpp(model: str, size: int, steps: int, threads: int) -> dict:
    from stable_diffusion_cpp import StableDiffusion

    t0 = time.perf_counter()
    sd = StableDiffusion(model_path=model, n_threads=threads, vae_decode_only=True, rng_type="cuda", verbose=False)
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    images = sd.generate_image(PROMPT, negative_prompt="", width=size, height=size, cfg_scale=CFG,
                               sample_method="euler", scheduler="discrete", sample_steps=steps, seed=SEED)
    if not images:
        raise RuntimeError("stable-diffusion.cpp returned no image")
    image = np.asarray(images[0].convert("RGB"), dtype=np.float32) / 255
    return {"image": image, "load_s": load, "sample_s": time.perf_counter() - t0}


def sdcpp_convert(src: str, dst: str, type: str) -> dict:
    from stable_diffusion_cpp import stable_diffusion_cpp as sd_cpp

    t0 = time.perf_counter()
    if not sd_cpp.convert(src.encode(), b"", dst.encode(), SDCPP_TYPES[type], b"", True):
        raise RuntimeError(f"stable-diffusion.cpp could not convert {src}")
    return {"seconds": time.perf_counter() - t0}


def child(args) -> None:
    job = json.loads(args.child)
    if job["what"] == "convert":
        out = sdcpp_convert(job["src"], job["dst"], job["type"])
    else:
        run = run_quanta if job["engine"] == "quanta" else run_sdcpp
        out = run(job["model"], args.size, args.steps, args.threads)
        np.save(job["image"], out.pop("image"))
        out.pop("config", None)
    print(MARK + json.dumps(out), flush=True)


# ---- the parent -----------------------------------------------------------------------------------------------


def spawn(python: str, job: dict, args) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--child", json.dumps(job), "--size", str(args.size),
           "--steps", str(args.steps), "--threads", str(args.threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise SystemExit(f"{job}: exit {proc.returncode}\n{tail}")
    return json.loads(lines[-1][len(MARK):])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def prepare(workdir: Path) -> dict:
    paths = {"pipeline": workdir / "sd15", "f16": workdir / "sd15-f16.gguf",
             "ldm": workdir / "sd15-ldm-f16.safetensors"}
    if not paths["f16"].exists():
        if not paths["pipeline"].exists():
            subprocess.run([sys.executable, str(HERE / "sd_pipeline.py"), str(paths["pipeline"])], check=True)
        import quanta

        quanta.convert(str(paths["pipeline"]), str(paths["f16"]), type="f16")
    if not paths["ldm"].exists():
        subprocess.run([sys.executable, str(HERE / "sd_to_ldm.py"), str(paths["f16"]), str(paths["ldm"])], check=True)
    return paths


def check_stand_in(ldm: Path, real: Path, type: str, workdir: Path) -> str:
    """Whether the CI stand-in for stable-diffusion.cpp's convert writes what the real one wrote."""
    import gguf
    from safetensors.numpy import load_file

    sys.path.insert(0, str(HERE.parent / "tests"))
    from ldm_checkpoints import write_sdcpp_gguf

    stand_in = workdir / f"stand-in-{type}.gguf"
    write_sdcpp_gguf(stand_in, load_file(str(ldm)), type)
    try:
        a = {t.name: t for t in gguf.GGUFReader(str(stand_in)).tensors}
        b = {t.name: t for t in gguf.GGUFReader(str(real)).tensors}
        if set(a) != set(b):
            return f"names differ: {sorted(set(a) ^ set(b))[:5]}"
        bad = [n for n in b if a[n].tensor_type != b[n].tensor_type or not np.array_equal(a[n].data, b[n].data)]
        return f"{len(b)} tensors equal" if not bad else f"{len(bad)} differ, e.g. {bad[:3]}"
    finally:
        stand_in.unlink()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="/tmp/sdc")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sdcpp-python", default=sys.executable,
                   help="the Python that has stable-diffusion-cpp-python (quanta runs in this one)")
    p.add_argument("--check-stand-in", action="store_true")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    workdir = Path(args.workdir)
    paths = prepare(workdir)
    out = workdir / "roundtrip"
    out.mkdir(exist_ok=True)
    results = {"size": args.size, "steps": args.steps, "threads": args.threads, "seed": SEED, "runs": {}}
    for type in SDCPP_TYPES:
        dst = out / f"sdcpp-{type}.gguf"
        if not dst.exists():
            r = spawn(args.sdcpp_python, {"what": "convert", "src": str(paths["ldm"]), "dst": str(dst), "type": type},
                      args)
            print(f"stable-diffusion.cpp convert -> {dst.name}: {r['seconds']:.1f} s", file=sys.stderr)
        if args.check_stand_in:
            results[f"stand_in_{type}"] = check_stand_in(paths["ldm"], dst, type, out)
            print(f"stand-in {type}: {results[f'stand_in_{type}']}", file=sys.stderr)
    env_cache = os.environ.setdefault("QUANTA_CACHE", str(out / "cache"))
    runs = {"quanta/quanta-f16": ("quanta", paths["f16"]), "quanta/sdcpp-f16": ("quanta", out / "sdcpp-f16.gguf"),
            "quanta/sdcpp-q8_0": ("quanta", out / "sdcpp-q8_0.gguf"), "quanta/ldm-f16": ("quanta", paths["ldm"]),
            "sdcpp/quanta-f16": ("sdcpp", paths["f16"]), "sdcpp/sdcpp-f16": ("sdcpp", out / "sdcpp-f16.gguf")}
    images = {}
    for name, (engine, model) in runs.items():
        image = out / (name.replace("/", "_") + ".npy")
        python = sys.executable if engine == "quanta" else args.sdcpp_python
        r = spawn(python, {"what": "image", "engine": engine, "model": str(model), "image": str(image)}, args)
        images[name] = np.load(image)
        results["runs"][name] = r
        print(f"{name}: load {r['load_s']:.1f} s, sample {r['sample_s']:.1f} s", file=sys.stderr)
    pairs = [("quanta/sdcpp-f16", "quanta/quanta-f16"), ("quanta/sdcpp-q8_0", "quanta/quanta-f16"),
             ("quanta/ldm-f16", "quanta/quanta-f16"), ("sdcpp/quanta-f16", "quanta/quanta-f16"),
             ("sdcpp/quanta-f16", "sdcpp/sdcpp-f16")]
    results["psnr_db"] = {f"{a} vs {b}": psnr(images[a], images[b]) for a, b in pairs}
    results["quanta_cache"] = env_cache
    for k, v in results["psnr_db"].items():
        print(f"PSNR {k}: {v:.1f} dB")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
