"""The real CLIP BPE vocabulary for tests: built from the merges list that ships in the open-clip-torch wheel
(open_clip/bpe_simple_vocab_16e6.txt.gz; `pip install --no-deps open-clip-torch`), the way OpenAI's CLIP and
open_clip build it (256 byte symbols, the same with </w>, 48894 merges, then the two special tokens: 49408 ids).
Found by importlib without importing open_clip, which would need torchvision."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path

N_MERGES = 49152 - 256 - 2


def _bytes_to_unicode() -> dict:
    """GPT-2's printable stand-ins for the 256 byte values."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def merges_path() -> Path:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        raise RuntimeError("open-clip-torch is not installed: pip install --no-deps open-clip-torch")
    return Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"


@lru_cache(maxsize=None)
def merges() -> tuple:
    lines = gzip.open(merges_path()).read().decode("utf-8").split("\n")
    return tuple(tuple(line.split()) for line in lines[1:N_MERGES + 1])


@lru_cache(maxsize=None)
def vocab() -> dict:
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges()]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}


def write_tokenizer_files(folder: "str | os.PathLike[str]") -> Path:
    """vocab.json and merges.txt in `folder`, as a diffusers pipeline's tokenizer/ holds them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab(), ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [" ".join(m) for m in merges()]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def clip_tokenizer(folder: "str | os.PathLike[str]", pad_token: str = "<|endoftext|>"):
    """transformers' (slow) CLIPTokenizer over the real vocabulary, as diffusers' pipelines load it; SD2's
    pipelines pad with "!" instead of <|endoftext|>."""
    from transformers import CLIPTokenizer

    write_tokenizer_files(folder)
    return CLIPTokenizer(str(Path(folder) / "vocab.json"), str(Path(folder) / "merges.txt"), pad_token=pad_token,
                         model_max_length=77)
