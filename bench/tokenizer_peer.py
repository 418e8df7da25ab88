#!/usr/bin/env python3
"""quanta's tokenizers next to llama.cpp's on the hard-string corpus of
tests/test_tokenizer.py (the tests compare with Hugging Face). llama.cpp has
no NFC step and matches Gemma's space-run tokens whole in the raw text where
Hugging Face merges them as runs of "▁", so strings that are not NFC, hold
long space runs or a typed "▁" are left out.

    python bench/tokenizer_peer.py
"""

import sys
import unicodedata
from pathlib import Path

from quanta import _core, fetch

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from test_tokenizer import CORPUS  # noqa: E402


def main():
    import llama_cpp

    texts = [s for s in CORPUS if unicodedata.normalize("NFC", s) == s and "  " * 20 not in s and "\u2581" not in s]
    for name in ("qwen2.5-coder-0.5b-instruct-q4_k_m", "gemma-3-270m-q4_k_m"):
        path = str(fetch.fetch(name))
        ours = _core.Tokenizer(path)
        peer = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        bad = [s for s in texts if peer.tokenize(s.encode(), add_bos=True, special=True) != ours.encode(s)]
        print(f"{name}: {len(texts) - len(bad)}/{len(texts)} strings tokenized identically by llama.cpp")
        for s in bad:
            print(f"  differs: {s!r}")


if __name__ == "__main__":
    main()
