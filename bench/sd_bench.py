#!/usr/bin/env python3
"""Stable Diffusion speed and memory on the CPU (issue 12): quanta at f16, q8_0 and q4_k_m next to diffusers
(PyTorch fp32) and stable-diffusion.cpp (stable-diffusion-cpp-python), on the same SD1.5-shaped random pipeline
(bench/sd_pipeline.py), the same thread count, CFG 7, euler, discrete schedule, an empty negative prompt. The
issue's targets are stated per step against both peers, so that is what this measures.

    python bench/sd_bench.py --threads 2 --json sd_bench.json  # the whole table: 256 and 512, 5 steps
    python bench/sd_bench.py --sizes 128 --steps 2             # smoke test: every config runs
    python bench/sd_bench.py --configs quanta-q8_0,diffusers-fp32 --sizes 256

Each (config, size) runs in a fresh process, one after another, never two at once (the whole table takes about
20-25 minutes on two cores, mostly stable-diffusion.cpp's 512² steps). s/step is the mean time of
sampling steps 2..N, from the step callbacks' timestamps (each engine's own per-step callback: quanta's
`callback`, diffusers' `callback_on_step_end`, stable-diffusion.cpp's progress callback); it leaves out loading,
the text encoder, the first step (which pays for first-touch page faults of the weights and buffer planning) and
the VAE decode. A step is one UNet evaluation of the conditional and unconditional inputs (diffusers and quanta
batch the two, stable-diffusion.cpp runs two batch-1 passes) and the sampler update. Peak RSS is the child's
VmHWM after loading and making one image at that size (weights memory-mapped by quanta count as resident once
touched). --reps R repeats the whole sweep R times, keeping each cell's best s/step (and largest RSS).

Configs: quanta-f16, quanta-q8_0, quanta-q4_k_m (the GGUFs from `quanta convert`), diffusers-fp32 (the diffusers
folder loaded in fp32, EulerDiscreteScheduler, torch.set_num_threads), sdcpp-f16 (the GGUF's tensors as an
original-layout safetensors file, bench/sd_to_ldm.py, weights kept f16), sdcpp-q8_0 (the same file quantized by
stable-diffusion.cpp at load, its `wtype`). Not run by default: sdcpp-TYPE for any other wtype it takes (q4_0,
q4_k, ...); sdcpp-gguf-f16, sdcpp-gguf-q8_0, sdcpp-gguf-q4_k_m: quanta's own GGUF of that type, which
stable-diffusion.cpp loads as it is (quanta writes its tensor names; the metadata it ignores), so both engines
run the very same weights (its f16 file only: ggml reads float convolutions, and quanta's q8_0 and q4_k_m files
quantize the UNet's); and a "+fa" suffix (flash_attn=True), "+direct" (direct convolutions in the UNet and VAE)
or "+tile" (its VAE tiling, which 1024x1024 needs to fit) on any sdcpp config. quanta tiles its VAE past 512 px
by itself. Missing files under --workdir are made first (the pipeline, the GGUFs, the LDM file).

stable-diffusion.cpp: `CMAKE_ARGS="-DGGML_NATIVE=ON" pip install stable-diffusion-cpp-python` (a CPU build, no
other flags needed; 0.4.7 built in about 4 minutes on two cores here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIGS = "quanta-f16,quanta-q8_0,quanta-q4_k_m,diffusers-fp32,sdcpp-f16,sdcpp-q8_0"
PROMPT = "a lighthouse on a cliff at dusk, oil painting, dramatic sky"
CFG, SEED = 7.0, 0
MARK = "SD_BENCH_RESULT "
QUANTA_TYPES = ("f16", "q8_0", "q4_k_m")


def files(workdir: Path) -> dict:
    return {"pipeline": workdir / "sd15", "ldm": workdir / "sd15-ldm-f16.safetensors",
            **{t: workdir / f"sd15-{t}.gguf" for t in QUANTA_TYPES}}


def status_mb(key: str = "VmHWM") -> float:
    """VmHWM (peak resident) or VmRSS (resident now) of this process. VmHWM, not ru_maxrss: the latter survives
    exec and can report a parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


# ---- one config, one size: runs in the child process -------------------------------------------------------------

def run_quanta(kind, paths, size, steps, threads, rec):
    import quanta

    t0 = time.perf_counter()
    sd = quanta.Diffusion(paths[kind], n_threads=threads)
    load = time.perf_counter() - t0
    rec["rss_after_load_mb"] = status_mb("VmRSS")
    start = time.perf_counter()
    sd.sample(PROMPT, negative_prompt="", width=size, height=size, steps=steps, cfg_scale=CFG, sampler="euler",
              scheduler="discrete", seed=SEED, output_type="np",
              callback=lambda step, total, x: rec["marks"].append(time.perf_counter()))
    return load, start, {"quanta": quanta.__version__}


def run_diffusers(kind, paths, size, steps, threads, rec):
    import diffusers
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(str(paths["pipeline"]), torch_dtype=torch.float32,
                                                   safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    load = time.perf_counter() - t0
    rec["rss_after_load_mb"] = status_mb("VmRSS")

    def on_step_end(pipe, i, t, kwargs):
        rec["marks"].append(time.perf_counter())
        return kwargs

    start = time.perf_counter()
    with torch.inference_mode():
        pipe(PROMPT, negative_prompt="", height=size, width=size, num_inference_steps=steps, guidance_scale=CFG,
             generator=torch.Generator().manual_seed(SEED), output_type="np", callback_on_step_end=on_step_end)
    return load, start, {"torch": torch.__version__, "diffusers": diffusers.__version__,
                         "torch_threads": torch.get_num_threads()}


def run_sdcpp(kind, paths, size, steps, threads, rec):
    from importlib.metadata import version

    from stable_diffusion_cpp import StableDiffusion

    base, *flags = kind.split("+")
    if base.startswith("gguf-"):  # quanta's own GGUF, loaded as it is: the very weights quanta runs
        model, wtype = paths[base[5:]], "default"
    else:  # the f16 LDM file, kept as it is (f16) or quantized at load
        model, wtype = paths["ldm"], "default" if base == "f16" else base
    t0 = time.perf_counter()
    sd = StableDiffusion(model_path=str(model), n_threads=threads, wtype=wtype, vae_decode_only=True,
                         flash_attn="fa" in flags, diffusion_conv_direct="direct" in flags,
                         vae_conv_direct="direct" in flags, verbose=False)
    load = time.perf_counter() - t0
    rec["rss_after_load_mb"] = status_mb("VmRSS")
    seen = set()

    def progress(step, total, seconds):
        # Sampling reports (step, steps); keep the first report of each step (nothing else in a txt2img run
        # reports `steps` as its total, except VAE tiling, whose reports come after the last step's).
        if total == steps and 1 <= step <= steps and step not in seen:
            seen.add(step)
            rec["marks"].append(time.perf_counter())

    start = time.perf_counter()
    images = sd.generate_image(PROMPT, negative_prompt="", width=size, height=size, cfg_scale=CFG,
                               sample_method="euler", scheduler="discrete", sample_steps=steps, seed=SEED,
                               vae_tiling="tile" in flags, progress_callback=progress)
    if not images:
        raise RuntimeError("stable-diffusion.cpp returned no image")
    return load, start, {"stable-diffusion-cpp-python": version("stable-diffusion-cpp-python")}


def check_config(config: str) -> None:
    engine, _, kind = config.partition("-")
    base, *flags = kind.split("+")
    ok = {"quanta": kind in QUANTA_TYPES, "diffusers": kind == "fp32",
          "sdcpp": bool(base) and set(flags) <= {"fa", "direct", "tile"} and
          (not base.startswith("gguf-") or base[5:] in QUANTA_TYPES)}.get(engine, False)
    if not ok:
        raise SystemExit(f"unknown config {config!r}: quanta-{{{','.join(QUANTA_TYPES)}}}, diffusers-fp32, "
                         "sdcpp-WTYPE or sdcpp-gguf-TYPE, optionally +fa / +direct / +tile")


def child(config, workdir, size, steps, threads):
    check_config(config)
    engine, _, kind = config.partition("-")
    run = {"quanta": run_quanta, "diffusers": run_diffusers, "sdcpp": run_sdcpp}[engine]
    rec = {"marks": []}  # the runner adds one timestamp per step, and the resident MB after loading
    load, start, versions = run(kind, files(workdir), size, steps, threads, rec)
    end = time.perf_counter()
    marks = rec["marks"]
    if len(marks) != steps:
        raise RuntimeError(f"{config}: {len(marks)} step callbacks for {steps} steps")
    intervals = [b - a for a, b in zip(marks, marks[1:])]
    return {"config": config, "size": size, "steps": steps, "threads": threads, "load_s": load,
            "first_step_s": marks[0] - start, "s_per_step": sum(intervals) / len(intervals),
            "step_s": intervals, "vae_s": end - marks[-1], "total_s": end - start,
            "rss_after_load_mb": rec["rss_after_load_mb"], "peak_rss_mb": status_mb("VmHWM"), "versions": versions}


# ---- the parent: prepare files, run the children, print the table ------------------------------------------------

def prepare(workdir: Path, configs) -> None:
    p = files(workdir)
    need_gguf = {c.split("-", 1)[1] for c in configs if c.startswith("quanta-")}
    need_gguf |= {c.split("+")[0][len("sdcpp-gguf-"):] for c in configs if c.startswith("sdcpp-gguf-")}
    if any(c.startswith("sdcpp-") for c in configs):
        need_gguf.add("f16")
    if not p["pipeline"].exists() and (need_gguf - {t for t in need_gguf if p[t].exists()} or
                                       any(c.startswith("diffusers-") for c in configs)):
        print(f"building the SD1.5-shaped pipeline in {p['pipeline']} (bench/sd_pipeline.py)", file=sys.stderr)
        subprocess.run([sys.executable, str(HERE / "sd_pipeline.py"), str(p["pipeline"])], check=True)
    for t in sorted(need_gguf):
        if not p[t].exists():
            print(f"converting to {p[t]}", file=sys.stderr)
            import quanta

            quanta.convert(str(p["pipeline"]), str(p[t]), type=t)
    if any(c.startswith("sdcpp-") for c in configs) and not p["ldm"].exists():
        print(f"writing {p['ldm']} (bench/sd_to_ldm.py)", file=sys.stderr)
        subprocess.run([sys.executable, str(HERE / "sd_to_ldm.py"), str(p["f16"]), str(p["ldm"])], check=True)


def run_child(config, workdir, size, steps, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", config, "--workdir", str(workdir),
           "--sizes", str(size), "--steps", str(steps), "--threads", str(threads)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        return {"config": config, "size": size, "error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1][len(MARK):])


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def quanta_system() -> str:
    out = subprocess.run([sys.executable, "-m", "quanta", "info", "--system"], capture_output=True, text=True).stdout
    return "; ".join(ln.strip() for ln in out.splitlines() if ln.startswith(("cpu:", "cpu features:")))


def fmt_s(r):
    return "failed" if r is None or "error" in r else f"{r['s_per_step']:.2f}"


def ratio(peer, r):
    if peer is None or r is None or "error" in peer or "error" in r:
        return "—"
    return f"{peer['s_per_step'] / r['s_per_step']:.2f}x"


def table(results, configs, sizes, mem_size) -> str:
    cell = {(r["config"], r["size"]): r for r in results}
    best_sdcpp = {}
    for s in sizes:
        ok = [cell[c, s] for c in configs if c.startswith("sdcpp-") and "error" not in cell.get((c, s), {"error": 1})]
        best_sdcpp[s] = min(ok, key=lambda r: r["s_per_step"]) if ok else None
    head = ["config"] + [f"s/step {s}²" for s in sizes] + [f"peak RSS {mem_size}² (MB)"]
    head += [f"diffusers ÷ this {s}²" for s in sizes] + [f"sd.cpp ÷ this {s}²" for s in sizes]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in configs:
        r_mem = cell.get((c, mem_size))
        rss = f"{r_mem['peak_rss_mb']:.0f}" if r_mem and "error" not in r_mem else "—"
        row = [c] + [fmt_s(cell.get((c, s))) for s in sizes] + [rss]
        row += [ratio(cell.get(("diffusers-fp32", s)), cell.get((c, s))) for s in sizes]
        row += [ratio(best_sdcpp[s], cell.get((c, s))) for s in sizes]
        rows.append("| " + " | ".join(row) + " |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="256,512", help="square image sizes, comma-separated (default 256,512)")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"comma-separated (default {DEFAULT_CONFIGS})")
    ap.add_argument("--steps", type=int, default=5, help="sampling steps per image, at least 2 (default 5)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=1, help="sweeps; each cell keeps its best s/step (default 1)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/sdc"),
                    help="holds sd15/ (diffusers), sd15-{f16,q8_0,q4_k_m}.gguf, sd15-ldm-f16.safetensors")
    ap.add_argument("--json", type=Path, help="also write every run's figures (per-step times too) here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.steps < 2:
        ap.error("--steps must be at least 2 (s/step is timed from step 2 on)")
    if args.child:
        print(MARK + json.dumps(child(args.child, args.workdir, sizes[0], args.steps, args.threads)), flush=True)
        return
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        check_config(c)
    prepare(args.workdir, configs)
    best = {}
    for rep in range(args.reps):
        for s in sizes:
            for c in configs:
                r = run_child(c, args.workdir, s, args.steps, args.threads)
                msg = r["error"] if "error" in r else (
                    f"{r['s_per_step']:.2f} s/step, first step {r['first_step_s']:.2f} s, VAE {r['vae_s']:.2f} s, "
                    f"RSS after load {r['rss_after_load_mb']:.0f} MB, peak RSS {r['peak_rss_mb']:.0f} MB")
                print(f"[{rep + 1}/{args.reps}] {c} {s}x{s}: {msg}", file=sys.stderr, flush=True)
                old = best.get((c, s))
                if old is None or "error" in old:
                    best[c, s] = r
                elif "error" not in r:
                    keep = min(old, r, key=lambda x: x["s_per_step"])
                    best[c, s] = dict(keep, peak_rss_mb=max(old["peak_rss_mb"], r["peak_rss_mb"]))
    results = list(best.values())
    mem_size = 512 if 512 in sizes else max(sizes)
    versions = {}
    for r in results:
        versions.update(r.get("versions", {}))
    print(f"Machine: {cpu_model()} ({quanta_system()}), {args.threads} threads, {os.cpu_count()} CPUs seen")
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    print(f"`python bench/sd_bench.py --sizes {args.sizes} --configs {','.join(configs)} --steps {args.steps} "
          f"--threads {args.threads} --reps {args.reps}`: CFG {CFG:g}, euler, discrete, {args.steps} steps; s/step = "
          f"mean of steps 2..{args.steps} from step-callback timestamps (no load, text encoder, first step or VAE); "
          f"peak RSS = VmHWM of a fresh process making one {mem_size}x{mem_size} image; "
          f"sd.cpp ÷ this uses the fastest sd.cpp config at that size.\n")
    print(table(results, configs, sizes, mem_size))
    failed = [r for r in results if "error" in r]
    for r in failed:
        print(f"\n{r['config']} at {r['size']}: {r['error']}")
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "steps": args.steps, "cpu": cpu_model(),
                                         "results": results}, indent=1))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
