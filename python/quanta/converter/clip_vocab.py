"""Stable Diffusion's CLIP vocabulary for checkpoints that carry none (original-layout single files,
stable-diffusion.cpp's GGUF files): built from OpenAI CLIP's BPE merges list, which ships beside this package
(quanta/data/clip/bpe_simple_vocab_16e6.txt.gz, MIT, its LICENSE beside it), the way CLIP builds it: the 256
byte symbols in GPT-2's byte-to-character order, the same with "</w>", the first 48894 merges joined, then
<|startoftext|> and <|endoftext|>: 49408 ids, the rows of SD1's and SD2's token embeddings.

Both SD versions use this vocabulary; they differ in the padding token: SD1 (OpenAI's CLIP through transformers)
pads with <|endoftext|>, SD2 (OpenCLIP) with id 0, the "!" symbol, as diffusers' SD2 tokenizer files and
stable-diffusion.cpp do.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

MERGES_FILE = Path(__file__).resolve().parent.parent / "data" / "clip" / "bpe_simple_vocab_16e6.txt.gz"
N_VOCAB = 49408
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
_N_MERGES = N_VOCAB - 2 * 256 - 2


def _byte_symbols() -> list:
    """GPT-2's character for each byte value: printable Latin-1 bytes stand for themselves, the other 68 take
    the code points from 256 up, in byte order."""
    printable = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    symbols, extra = [], 256
    for b in range(256):
        if b in printable:
            symbols.append(chr(b))
        else:
            symbols.append(chr(extra))
            extra += 1
    # CLIP lists the printable bytes first (in order), then the remapped ones.
    return [symbols[b] for b in sorted(printable)] + [symbols[b] for b in range(256) if b not in printable]


@lru_cache(maxsize=None)
def clip_vocab() -> tuple:
    """(tokens in id order, merges "a b" in rank order) of SD's CLIP tokenizer."""
    lines = gzip.decompress(MERGES_FILE.read_bytes()).decode("utf-8").split("\n")
    merges = lines[1:1 + _N_MERGES]  # the first line is a version header
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + [m.replace(" ", "") for m in merges] + [BOS, EOS]
    return tokens, merges


def tokenizer_metadata(version: str) -> list:
    """The tokenizer.ggml.* metadata of an SD `version` ("sd1"/"sd2") GGUF file."""
    tokens, merges = clip_vocab()
    pad = N_VOCAB - 1 if version == "sd1" else 0
    return [("tokenizer.ggml.model", "clip", "string"),
            ("tokenizer.ggml.tokens", list(tokens), "array[string]"),
            ("tokenizer.ggml.merges", list(merges), "array[string]"),
            ("tokenizer.ggml.bos_token_id", N_VOCAB - 2, "u32"),
            ("tokenizer.ggml.eos_token_id", N_VOCAB - 1, "u32"),
            ("tokenizer.ggml.padding_token_id", pad, "u32")]
