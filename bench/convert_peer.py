#!/usr/bin/env python3
"""quanta's converter next to llama.cpp's.

    python bench/convert_peer.py tiny
        Tiny random checkpoints of each architecture (tests/hf_checkpoints.py) converted by quanta to f32,
        then scored on one random token sequence by transformers fp32 (the reference), llama.cpp and quanta:
        mean KL divergence and max relative error (max |diff| / max |ref|) of the logits, llama.cpp's load
        warnings, and tokenization of the tokenizer test corpus by llama.cpp and quanta against Hugging Face.

    python bench/convert_peer.py qwen [--threads 2] [--reps 1] [--gen 32]
        Qwen2.5-Coder-0.5B-Instruct as an fp32 Hugging Face checkpoint (made from the real GGUF if missing,
        see make_qwen_checkpoint) converted to q4_k_m by `quanta convert` and by llama.cpp
        (convert_hf_to_gguf.py --outtype f32, then llama_model_quantize to Q4_K_M, what llama-quantize runs).
        Each step runs in its own process: wall time, peak RSS, file size; then the tensor types and metadata
        of both files, the weight error of the tensors they store differently, and the KLD of each file from
        the fp32 checkpoint in transformers, evaluated by quanta, by llama.cpp and by transformers itself (the
        file dequantized). --workdir W --keep leaves the files in W; --reuse then skips the conversions.

llama.cpp's converter comes from the llama-cpp-python sdist (--llama-cpp, default
/tmp/lcp/llama_cpp_python-0.3.36/vendor/llama.cpp: `pip download --no-binary :all: --no-deps
llama-cpp-python==0.3.36` and unpack), run with its own gguf-py first on PYTHONPATH.
"""

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

import numpy as np

import quanta
from quanta import fetch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from divergence import kld  # noqa: E402
from llama_peer import LlamaPeer  # noqa: E402

LLAMA_CPP = Path("/tmp/lcp/llama_cpp_python-0.3.36/vendor/llama.cpp")
QWEN_DIR = Path("/work/hfqwen/Qwen2.5-Coder-0.5B-Instruct")
QWEN_GGUF = "qwen2.5-coder-0.5b-instruct-q4_k_m"  # quanta.fetch name of the real file
GGML_LOG_WARN, GGML_LOG_ERROR, GGML_LOG_CONT = 3, 4, 5


# ---- tiny checkpoints: does llama.cpp read our files as transformers runs the checkpoint? --------------------

# (label, engine, file, KV cache type, flash attention) scored against transformers fp32 in `tiny`.
TINY_RUNS = [
    ("llama.cpp", "llama", "ours", "f16", None),  # llama.cpp's defaults: f16 KV, flash attention on for CPU
    ("llama.cpp f32 KV", "llama", "ours", "f32", None),
    ("llama.cpp f32 KV, no flash attn", "llama", "ours", "f32", False),
    ("quanta", "quanta", "ours", "f16", None),
    ("quanta f32 KV", "quanta", "ours", "f32", None),
    ("llama.cpp on its own file", "llama", "peer", "f16", None),
]


def tiny(workdir: Path, threads: int, n_tokens: int, seed: int, llama_cpp_dir: Path) -> list:
    import torch
    from transformers import AutoTokenizer

    from hf_checkpoints import ARCHS, write_checkpoint
    from test_tokenizer import CORPUS

    # As bench/tokenizer_peer.py: llama.cpp has no NFC step (the qwen2 tokenizer normalises to NFC) and matches
    # space-run tokens whole, so strings that are not NFC, hold long space runs or a typed "▁" are left out.
    texts = [s for s in CORPUS if unicodedata.normalize("NFC", s) == s and "  " * 20 not in s and "\u2581" not in s]
    rows = []
    for arch in ARCHS:
        folder, ours, peer = workdir / arch, workdir / f"{arch}-quanta-f32.gguf", workdir / f"{arch}-llama-f32.gguf"
        model = write_checkpoint(folder, arch)
        quanta.convert(folder, ours, type="f32", progress=False, n_threads=threads)
        row = {"arch": arch, "tokens": n_tokens, "n_vocab": model.config.vocab_size, "logits": {}, "tok": {}}
        try:
            llama_convert(folder, peer, "f32", llama_cpp_dir, workdir / f"{arch}-llama-convert.log")
            row["files"] = compare_files(ours, peer, data=True)
        except RuntimeError as e:
            row["peer_convert_error"] = str(e).strip().splitlines()[-1]
        files = {"ours": ours, "peer": peer if "files" in row else None}

        ids = np.random.default_rng(seed).integers(0, row["n_vocab"], n_tokens).tolist()
        with torch.no_grad():
            ref = model(torch.tensor([ids])).logits[0].float().numpy()
        hf_tok = AutoTokenizer.from_pretrained(str(folder))
        want = {s: hf_tok(s)["input_ids"] for s in texts}
        row["tok_texts"] = len(texts)
        for label, engine, which, kv, fa in TINY_RUNS:
            path = files[which]
            if path is None:
                continue
            if engine == "quanta":
                llm = quanta.LLM(path, n_ctx=128, n_threads=threads, kv_type=kv)
                row["logits"][label] = _distance(ref, llm.logits(ids))
                if label == "quanta":
                    row["tok"][label] = [s for s in texts if llm.tokenize(s) != want[s]]
                continue
            log = []
            try:
                llm = LlamaPeer(path, n_ctx=128, threads=threads, kv_type=kv, flash_attn=fa, log=log)
            except RuntimeError as e:
                row["logits"][label] = {"error": str(e), "log": _log_lines(log, GGML_LOG_WARN)}
                continue
            if label in ("llama.cpp", "llama.cpp on its own file"):
                row.setdefault("llama_warnings", {})[label] = _log_lines(log, GGML_LOG_WARN)
                row["tok"][label] = [s for s in texts if llm.tokenize(s, add_special=True) != want[s]]
            if llm.n_vocab != row["n_vocab"]:
                row.setdefault("llama_n_vocab", {})[label] = llm.n_vocab
            llm.clear()
            row["logits"][label] = _distance(ref, llm.decode(ids, all_logits=True))
            del llm
        rows.append(row)
    return rows


def llama_convert(folder: Path, out: Path, outtype: str, llama_cpp_dir: Path, log_path: Path) -> dict:
    """llama.cpp's convert_hf_to_gguf.py, in its own process, with its own gguf-py first on PYTHONPATH."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(llama_cpp_dir / "gguf-py")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    return measure([sys.executable, str(llama_cpp_dir / "convert_hf_to_gguf.py"), "--outtype", outtype,
                    "--outfile", str(out), str(folder)], env=env, log_path=log_path)


def _distance(ref, got) -> dict:
    return {"kld": float(kld(ref, got).mean()), "max_rel": float(np.abs(got - ref).max() / np.abs(ref).max()),
            "top1": float((ref.argmax(-1) == got.argmax(-1)).mean())}


def _log_lines(log, min_level) -> list:
    """llama.cpp's log as whole lines of at least `min_level` (continuations keep their line's level)."""
    lines, level, buf = [], 0, ""
    for lv, text in log:
        if lv != GGML_LOG_CONT:
            level = lv
        buf += text
        while "\n" in buf:
            line, buf = buf.split("\n", 1)
            if level >= min_level and level != GGML_LOG_CONT and line.strip():
                lines.append(line.strip())
    return lines


def print_tiny(rows):
    labels = [r[0] for r in TINY_RUNS]
    print("Mean KLD from transformers fp32 (max relative error), f32 files:\n")
    print("| arch | tokens | " + " | ".join(labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    for r in rows:
        cells = []
        for label in labels:
            v = r["logits"].get(label)
            cells.append("-" if v is None else "refused" if "error" in v else f"{v['kld']:.1e} ({v['max_rel']:.1e})")
        print(f"| {r['arch']} | {r['tokens']} | " + " | ".join(cells) + " |")
    tok_labels = ["llama.cpp", "quanta", "llama.cpp on its own file"]
    print("\nTokenizer: strings of tests/test_tokenizer.py's corpus tokenized as Hugging Face does:\n")
    print("| arch | " + " | ".join(tok_labels) + " |")
    print("|---|" + "---|" * len(tok_labels))
    for r in rows:
        n = r["tok_texts"]
        print(f"| {r['arch']} | " + " | ".join(f"{n - len(r['tok'][k])}/{n}" if k in r["tok"] else "-"
                                              for k in tok_labels) + " |")
    print("\nquanta's f32 file against llama.cpp's (convert_hf_to_gguf.py --outtype f32) of the same checkpoint:")
    for r in rows:
        if "peer_convert_error" in r:
            print(f"- {r['arch']}: llama.cpp's converter failed: {r['peer_convert_error']}")
            continue
        f = r["files"]
        print(f"- {r['arch']}: {f['n_tensors']} tensors, {f['n_identical']} identical in name, shape, type and "
              f"bytes; names only in ours {f['names_only_ours']}, only in llama.cpp's {f['names_only_peer']}; "
              f"keys only in ours {f['keys_only_ours']}, only in llama.cpp's {f['keys_only_peer']}; "
              f"values that differ {f['values_differ']}")
    for r in rows:
        for label, v in r["logits"].items():
            if "error" in v:
                print(f"\n{r['arch']}: {label} refused the file ({v['error']}); its log:")
                print("\n".join("    " + line for line in v["log"]))
        for label, lines in r.get("llama_warnings", {}).items():
            for line in lines:
                print(f"{r['arch']}: {label} warned: {line}")
        for label, n in r.get("llama_n_vocab", {}).items():
            print(f"{r['arch']}: {label} sees {n} tokens, the checkpoint {r['n_vocab']}")
        for label, bad in r["tok"].items():
            if label == "llama.cpp on its own file":
                continue  # not our file: counted in the table only
            for s in bad:
                print(f"{r['arch']}: {label} tokenizes {s!r} differently from Hugging Face")


# ---- the real-size checkpoint ----------------------------------------------------------------------------------

def make_qwen_checkpoint(folder: Path, gguf_path: Path) -> None:
    """An fp32 Hugging Face checkpoint of the real Qwen GGUF: transformers dequantizes it (gguf_file=), the
    weights are copied into a model built from the same config without its quantization_config, and both model
    and tokenizer are saved with save_pretrained. The checkpoint's weights are then exactly the GGUF's."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    src = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    config = src.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(src.state_dict())
    del src
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name).save_pretrained(str(tmp))
    tmp.rename(folder)


def measure(cmd, env=None, log_path=None) -> dict:
    """Runs cmd in its own process: wall seconds and peak resident bytes (wait4's rusage of that child)."""
    with open(log_path or os.devnull, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped
    if proc.returncode != 0:
        tail = Path(log_path).read_text(errors="replace")[-3000:] if log_path else ""
        raise RuntimeError(f"{cmd[:3]}... exited with {proc.returncode}\n{tail}")
    return {"wall_s": wall, "peak_rss": usage.ru_maxrss * 1024}


_QUANTIZE = """
import ctypes, sys
import llama_cpp
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
params.nthread = int(sys.argv[3])
rc = llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(params))
sys.exit(rc)
"""


def convert_both(folder: Path, workdir: Path, threads: int, llama_cpp_dir: Path) -> dict:
    ours, peer_f32, peer = workdir / "quanta-q4_k_m.gguf", workdir / "llama-f32.gguf", workdir / "llama-q4_k_m.gguf"
    steps = {
        "quanta convert": measure([sys.executable, "-m", "quanta", "convert", str(folder), str(ours),
                                   "--type", "q4_k_m", "--threads", str(threads), "--quiet"],
                                  log_path=workdir / "quanta.log"),
        "convert_hf_to_gguf.py --outtype f32": llama_convert(folder, peer_f32, "f32", llama_cpp_dir,
                                                             workdir / "llama-convert.log"),
        "llama_model_quantize Q4_K_M": measure([sys.executable, "-c", _QUANTIZE, str(peer_f32), str(peer),
                                                str(threads)], log_path=workdir / "llama-quantize.log"),
    }
    steps["quanta convert"]["size"] = ours.stat().st_size
    steps["convert_hf_to_gguf.py --outtype f32"]["size"] = peer_f32.stat().st_size
    steps["llama_model_quantize Q4_K_M"]["size"] = peer.stat().st_size
    return {"steps": steps, "ours": ours, "peer": peer, "peer_f32": peer_f32}


def compare_files(ours: Path, peer: Path, data: bool = False) -> dict:
    """Tensor types, names and metadata keys of two GGUF files; with data, also which tensors are identical
    (name, shape, type and bytes)."""
    a, b = quanta.GGUF(str(ours)), quanta.GGUF(str(peer))
    ta, tb = {t.name: t.type for t in a.tensors}, {t.name: t.type for t in b.tensors}
    ma, mb = set(a.metadata), set(b.metadata)
    extra = {}
    if data:
        sa, sb = {t.name: tuple(t.shape) for t in a.tensors}, {t.name: tuple(t.shape) for t in b.tensors}
        extra = {"n_tensors": len(ta), "n_identical": sum(
            1 for n in set(ta) & set(tb)
            if ta[n] == tb[n] and sa[n] == sb[n] and np.array_equal(a.tensor_bytes(n), b.tensor_bytes(n)))}
    return {**extra,
        "types_ours": dict(collections.Counter(ta.values()).most_common()),
        "types_peer": dict(collections.Counter(tb.values()).most_common()),
        "names_only_ours": sorted(set(ta) - set(tb)), "names_only_peer": sorted(set(tb) - set(ta)),
        "type_differs": sorted(n for n in set(ta) & set(tb) if ta[n] != tb[n]),
        "keys_only_ours": sorted(ma - mb), "keys_only_peer": sorted(mb - ma),
        "values_differ": sorted(k for k in ma & mb if not k.startswith("general.") and not _same(a.metadata[k],
                                                                                                 b.metadata[k])),
    }


def _same(x, y) -> bool:
    if isinstance(x, float) or isinstance(y, float):
        return abs(float(x) - float(y)) <= 1e-6 * max(abs(float(x)), abs(float(y)))
    return x == y


ENGINES = ("quanta", "llama.cpp", "transformers")


def fidelity(folder: Path, files: dict, threads: int, n_gen: int) -> list:
    """Mean KLD from transformers fp32 on the checkpoint, for each file in each engine, over the prompts of
    tests/test_llm_fidelity.py each continued by transformers' own greedy tokens (one token sequence per prompt,
    the same for every file and engine). The engine "transformers" runs the file's weights dequantized exactly
    in fp32: the distance of the file alone, without any engine's activation rounding."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from test_llm_fidelity import PROMPTS

    def hf_logits(model, seqs):
        with torch.no_grad():
            return [model(torch.tensor([s])).logits[0].float().numpy() for s in seqs]

    tok = AutoTokenizer.from_pretrained(str(folder))
    hf = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    seqs = []
    for prompt in PROMPTS:
        ids = tok(prompt)["input_ids"]
        with torch.no_grad():
            seqs.append(hf.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                    max_new_tokens=n_gen, do_sample=False)[0].tolist())
    refs = hf_logits(hf, seqs)
    del hf
    rows = []
    for label, path in files.items():
        got = {}
        ours = quanta.LLM(path, n_ctx=512, n_threads=threads)
        assert all(ours.tokenize(p) == tok(p)["input_ids"] for p in PROMPTS), f"{label}: tokens differ from HF"
        got["quanta"] = [ours.logits(s) for s in seqs]
        del ours
        peer = LlamaPeer(path, n_ctx=512, threads=threads)
        got["llama.cpp"] = []
        for s in seqs:
            peer.clear()
            got["llama.cpp"].append(peer.decode(s, all_logits=True))
        del peer
        deq = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        got["transformers"] = hf_logits(deq, seqs)
        del deq
        for engine in ENGINES:
            per = [kld(r, g) for r, g in zip(refs, got[engine])]
            k = np.concatenate(per)
            t = np.concatenate([r.argmax(-1) == g.argmax(-1) for r, g in zip(refs, got[engine])])
            rows.append({"file": label, "engine": engine, "positions": int(k.size), "kld": float(k.mean()),
                         "top1": float(t.mean()), "kld_per_prompt": [float(x.mean()) for x in per]})
    return rows


def weight_errors(ours: Path, peer: Path, reference: Path) -> dict:
    """RMSE from the checkpoint's weights (llama.cpp's f32 file holds them under GGUF names) of every tensor
    that the two q4_k_m files store differently."""
    a, b, ref = quanta.GGUF(str(ours)), quanta.GGUF(str(peer)), quanta.GGUF(str(reference))
    out = {}
    for t in a.tensors:
        if np.array_equal(a.tensor_bytes(t.name), b.tensor_bytes(t.name)):
            continue
        x = ref.tensor(t.name)
        out[t.name] = {"type": t.type, "rmse_ours": float(np.sqrt(np.mean((a.tensor(t.name) - x) ** 2))),
                       "rmse_peer": float(np.sqrt(np.mean((b.tensor(t.name) - x) ** 2)))}
    return {"n_tensors": len(a.tensors), "differing": out}


def qwen(args) -> dict:
    folder = Path(args.qwen_dir)
    if not folder.exists():
        print(f"making {folder} from the real GGUF", file=sys.stderr)
        make_qwen_checkpoint(folder, Path(fetch.fetch(QWEN_GGUF)))
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for f in folder.glob("*.safetensors"):  # into the page cache, so neither converter pays the cold read
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass
    runs = []
    for rep in range(0 if args.reuse else args.reps):
        print(f"conversion run {rep + 1}/{args.reps}", file=sys.stderr)
        runs.append(convert_both(folder, workdir, args.threads, Path(args.llama_cpp)))
    last = runs[-1] if runs else {"steps": {}, "ours": workdir / "quanta-q4_k_m.gguf",
                                  "peer": workdir / "llama-q4_k_m.gguf", "peer_f32": workdir / "llama-f32.gguf"}
    steps = {name: {"wall_s": [r["steps"][name]["wall_s"] for r in runs],
                    "peak_rss": max(r["steps"][name]["peak_rss"] for r in runs),
                    "size": last["steps"][name]["size"]} for name in last["steps"]}
    original = Path(fetch.fetch(QWEN_GGUF))
    result = {"threads": args.threads, "steps": steps, "files": compare_files(last["ours"], last["peer"]),
              "vs_original": compare_files(last["ours"], original),
              "weights": weight_errors(last["ours"], last["peer"], last["peer_f32"])}
    if not args.no_kld:
        files = {"quanta convert": last["ours"], "llama.cpp": last["peer"],
                 "original GGUF (the checkpoint's source)": original}
        result["fidelity"] = fidelity(folder, files, args.threads, args.gen)
    if not args.keep:
        for name in ("quanta-q4_k_m.gguf", "llama-f32.gguf", "llama-q4_k_m.gguf"):
            (workdir / name).unlink(missing_ok=True)
    return result


def print_qwen(r):
    s = r["steps"]
    if s:
        _print_steps(r)
    _print_files(r)


def _print_steps(r):
    s = r["steps"]
    med = {k: statistics.median(v["wall_s"]) for k, v in s.items()}
    ours = med["quanta convert"]
    peer = med["convert_hf_to_gguf.py --outtype f32"] + med["llama_model_quantize Q4_K_M"]
    print(f"threads {r['threads']}; wall = median of {len(next(iter(s.values()))['wall_s'])} run(s)\n")
    print("| step | wall s | peak RSS MB | output MB |")
    print("|---|---|---|---|")
    for name, v in s.items():
        walls = ", ".join(f"{w:.1f}" for w in v["wall_s"])
        print(f"| {name} | {med[name]:.1f} ({walls}) | {v['peak_rss'] / 1e6:.0f} | {v['size'] / 1e6:.1f} |")
    peer_rss = max(s["convert_hf_to_gguf.py --outtype f32"]["peak_rss"], s["llama_model_quantize Q4_K_M"]["peak_rss"])
    print(f"\nllama.cpp's two steps {peer:.1f} s, quanta {ours:.1f} s: quanta/llama.cpp wall {ours / peer:.2f}; "
          f"peak RSS {s['quanta convert']['peak_rss'] / 1e6:.0f} MB vs {peer_rss / 1e6:.0f} MB "
          f"({s['quanta convert']['peak_rss'] / peer_rss:.2f})\n")


def _print_files(r):
    f = r["files"]
    print("| file | tensor types |")
    print("|---|---|")
    for label, key in (("quanta convert", "types_ours"), ("llama.cpp", "types_peer")):
        print(f"| {label} | " + ", ".join(f"{t} x{n}" for t, n in f[key].items()) + " |")
    print(f"\ntensors whose type differs: {len(f['type_differs'])} {f['type_differs'][:8]}")
    print(f"tensors only in quanta's file: {f['names_only_ours']}; only in llama.cpp's: {f['names_only_peer']}")
    print(f"metadata keys only in quanta's file: {f['keys_only_ours']}")
    print(f"metadata keys only in llama.cpp's file: {f['keys_only_peer']}")
    print(f"metadata values that differ (general.* aside): {f['values_differ']}")
    o = r["vs_original"]
    print(f"tensors whose type differs from the original GGUF's: {len(o['type_differs'])} {o['type_differs']}")
    w = r["weights"]
    d = w["differing"]
    ratios = sorted(v["rmse_ours"] / v["rmse_peer"] for v in d.values())
    print(f"\ntensors stored differently by the two converters: {len(d)} of {w['n_tensors']} "
          f"({dict(collections.Counter(v['type'] for v in d.values()))}); RMSE from the checkpoint, quanta / "
          f"llama.cpp: median {statistics.median(ratios):.3f}, range {ratios[0]:.3f}-{ratios[-1]:.3f}, "
          f"quanta lower on {sum(x < 1 for x in ratios)}" if d else "\nthe two files store every tensor alike")
    if "fidelity" in r:
        fid = {(x["file"], x["engine"]): x for x in r["fidelity"]}
        labels = list(dict.fromkeys(x["file"] for x in r["fidelity"]))
        print(f"\nMean KLD from transformers fp32 on the checkpoint ({r['fidelity'][0]['positions']} positions; "
              f"top-1 agreement in parentheses):\n")
        print("| file | " + " | ".join(ENGINES) + " |")
        print("|---|" + "---|" * len(ENGINES))
        for label in labels:
            print(f"| {label} | " + " | ".join(f"{fid[label, e]['kld']:.6f} ({fid[label, e]['top1']:.3f})"
                                               for e in ENGINES) + " |")
        print("\nPer prompt, quanta's file / llama.cpp's file:")
        for e in ENGINES:
            a, b = fid["quanta convert", e]["kld_per_prompt"], fid["llama.cpp", e]["kld_per_prompt"]
            print(f"- {e}: " + ", ".join(f"{x / y:.2f}" for x, y in zip(a, b)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["tiny", "qwen"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", help="where files are written (default: a temporary folder, removed at the end)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--tokens", type=int, default=24, help="tiny: length of the random token sequence")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--qwen-dir", default=str(QWEN_DIR), help="qwen: the fp32 checkpoint (made if missing)")
    ap.add_argument("--llama-cpp", default=str(LLAMA_CPP), help="llama.cpp source tree (convert_hf_to_gguf.py)")
    ap.add_argument("--reps", type=int, default=1, help="qwen: conversion runs (wall times: median)")
    ap.add_argument("--gen", type=int, default=32, help="qwen: greedy tokens appended to each prompt")
    ap.add_argument("--no-kld", action="store_true", help="qwen: conversions only")
    ap.add_argument("--keep", action="store_true", help="qwen: keep the converted files in --workdir")
    ap.add_argument("--reuse", action="store_true", help="qwen: no conversions; use the files --keep left in "
                                                          "--workdir")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="convert_peer_") as tmp:
        if args.what == "tiny":
            workdir = Path(args.workdir or tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            result = tiny(workdir, args.threads, args.tokens, args.seed, Path(args.llama_cpp))
            print(json.dumps(result, indent=1)) if args.json else print_tiny(result)
        else:
            args.workdir = args.workdir or tmp
            result = qwen(args)
            print(json.dumps(result, indent=1, default=str)) if args.json else print_qwen(result)


if __name__ == "__main__":
    main()
