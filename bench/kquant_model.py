#!/usr/bin/env python3
"""A model that is k-quants throughout, for the speed race of issue 16: a random
Qwen2-shaped transformers checkpoint whose widths are multiples of 256 (hidden
1024, feed-forward 2816, 16 layers, 16 heads of 64, 2 kv heads, 32000 embedding
rows), converted with --type q4_k_m, so every matrix is q4_k or q6_k as in most
7B+ files. (The two real test models are only partly k-quants: their rows of
896 and 640 are not multiples of 256, so llama-quantize fell back to q5_0 and
q8_0 for most of them.)

    python bench/kquant_model.py /tmp/kq        # /tmp/kq/hf and /tmp/kq/qwen2-kq-q4_k_m.gguf
    python bench/llm_bench.py --models /tmp/kq/qwen2-kq-q4_k_m.gguf
"""

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hf_checkpoints import _tokenizer, make_hf  # noqa: E402

from quanta.converter.hf_convert import convert  # noqa: E402

SHAPE = dict(hidden=1024, ff=2816, layers=16, num_attention_heads=16)  # make_hf gives qwen2 2 kv heads


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir", type=Path)
    args = ap.parse_args()
    hf = args.workdir / "hf"
    if not (hf / "model.safetensors").exists():
        shutil.rmtree(hf, ignore_errors=True)
        _tokenizer("qwen2", hf)  # a small byte-level tokenizer; the embedding is padded to 32000 rows
        make_hf("qwen2", 32000, **SHAPE).save_pretrained(str(hf))
    out = args.workdir / "qwen2-kq-q4_k_m.gguf"
    convert(hf, out, type="q4_k_m")
    print(out)


if __name__ == "__main__":
    main()
