#!/usr/bin/env python3
"""How close quanta and llama.cpp get to the exact answer: transformers in fp32
on the same GGUF (dequantized). For each prompt, quanta continues it greedily
by --gen tokens; then quanta, llama.cpp and transformers all score that same
token sequence, and we report the mean KL divergence from fp32 and the top-1
agreement; then how many greedy tokens each engine produces before it leaves
fp32's greedy continuation (summed over prompts), and whether quanta's and
llama.cpp's greedy continuations agree.

    python bench/llm_fidelity.py --threads 2
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import quanta
from quanta import fetch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from divergence import kld  # noqa: E402
from llama_peer import LlamaPeer  # noqa: E402
from llm_bench import MODELS  # noqa: E402
from test_llm_fidelity import PROMPTS  # noqa: E402  (the prompts the KLD test uses)

def evaluate(name, path, threads, n_gen):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    ours = quanta.LLM(path, n_ctx=1024, n_threads=threads)
    peer = LlamaPeer(path, n_ctx=1024, threads=threads)
    rows = []
    for prompt in PROMPTS:
        ids = hf_tok(prompt)["input_ids"]
        cont = list(ours.generate_tokens(ids, max_tokens=n_gen, temperature=0))
        peer_cont = peer.greedy(ids, n_gen)
        with torch.no_grad():
            hf_cont = hf.generate(torch.tensor([ids]), max_new_tokens=n_gen, do_sample=False)[0, len(ids):].tolist()
        seq = ids + cont
        with torch.no_grad():
            ref = hf(torch.tensor([seq])).logits[0].numpy()
        q = ours.logits(seq)
        peer.clear()
        p = peer.decode(seq, all_logits=True)
        rows.append({
            "prompt": prompt, "tokens": len(seq),
            "kld_quanta": kld(ref, q), "kld_llama": kld(ref, p),
            "top1_quanta": (ref.argmax(-1) == q.argmax(-1)), "top1_llama": (ref.argmax(-1) == p.argmax(-1)),
            "greedy_same": cont == peer_cont, "greedy_common": _common_prefix(cont, peer_cont), "n_gen": len(cont),
            "fp32_common_quanta": _common_prefix(cont, hf_cont), "fp32_common_llama": _common_prefix(peer_cont, hf_cont),
        })
    cat = lambda k: np.concatenate([r[k] for r in rows])  # noqa: E731
    return {
        "model": name, "positions": int(sum(r["tokens"] for r in rows)),
        "kld_quanta": float(cat("kld_quanta").mean()), "kld_llama": float(cat("kld_llama").mean()),
        "top1_quanta": float(cat("top1_quanta").mean()), "top1_llama": float(cat("top1_llama").mean()),
        "greedy_identical": f"{sum(r['greedy_same'] for r in rows)}/{len(rows)}",
        "greedy_common_prefix": [f"{r['greedy_common']}/{r['n_gen']}" for r in rows],
        "fp32_greedy_prefix_quanta": sum(r["fp32_common_quanta"] for r in rows),
        "fp32_greedy_prefix_llama": sum(r["fp32_common_llama"] for r in rows),
    }


def _common_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gen", type=int, default=32, help="greedy tokens appended to each prompt")
    ap.add_argument("--models", default="qwen,gemma")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = [evaluate(m, Path(fetch.fetch(MODELS[m])), args.threads, args.gen) for m in args.models.split(",")]
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print("| model | positions | KLD quanta | KLD llama.cpp | top-1 quanta | top-1 llama.cpp | "
          "greedy tokens equal to fp32's, quanta / llama.cpp | greedy text quanta = llama.cpp |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} | {r['positions']} | {r['kld_quanta']:.5f} | {r['kld_llama']:.5f} | "
              f"{r['top1_quanta']:.3f} | {r['top1_llama']:.3f} | "
              f"{r['fp32_greedy_prefix_quanta']} / {r['fp32_greedy_prefix_llama']} | {r['greedy_identical']} "
              f"(common prefix {', '.join(r['greedy_common_prefix'])}) |")


if __name__ == "__main__":
    main()
