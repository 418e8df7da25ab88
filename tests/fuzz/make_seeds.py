"""Writes a small seed corpus of valid GGUF files for the fuzz_gguf harness.

    python tests/fuzz/make_seeds.py OUT_DIR [--dict PATH]

The seeds are generated rather than checked in so they always match what
quanta.GGUFWriter writes. Together they cover every metadata value type
(scalars, strings, arrays of each, string arrays, nested arrays, empty
arrays), a non-default alignment, an empty tensor, and tensors of f32, f16,
q4_0, q8_0 and q4_k with raw blocks. Each stays well under libFuzzer's
default 4 KiB input limit so mutations reach every field.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys

import numpy as np

import quanta

# GGUF value type ids and a few ggml tensor type ids, for the dictionary.
_VALUE_TYPE_IDS = range(13)
_TENSOR_TYPE_IDS = (0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 24, 28, 30, 39, 41)


def _raw_blocks(rng: np.random.Generator, n_blocks: int, block_bytes: int, f16_scales: int) -> np.ndarray:
    """Random raw blocks whose leading f16 scale fields are small finite values (random bytes are often NaN)."""
    blocks = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    scales = rng.uniform(-0.1, 0.1, size=(n_blocks, f16_scales)).astype(np.float16)
    blocks[:, : 2 * f16_scales] = scales.view(np.uint8).reshape(n_blocks, -1)
    return blocks


def _metadata_seed(path: str) -> None:
    w = quanta.GGUFWriter(path)
    w.add_metadata("general.architecture", "llama")
    w.add_metadata("general.name", "seed ünï")
    for i, t in enumerate(("u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64")):
        w.add_metadata(f"s.{t}", (i + 1) * (-1 if t.startswith("i") else 1), type=t)
    w.add_metadata("s.f32", 0.5, type="f32")
    w.add_metadata("s.f64", -1e300, type="f64")
    w.add_metadata("s.bool", True, type="bool")
    w.add_metadata("s.empty_string", "", type="string")
    for t in ("u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64", "bool"):
        values = [True, False, True] if t == "bool" else [1, 2, 3]
        w.add_metadata(f"a.{t}", values, type=f"array[{t}]")
    w.add_metadata("a.string", ["<s>", "", "tok\u2581en", "</s>"], type="array[string]")
    w.add_metadata("a.empty", [], type="array[i32]")
    w.add_metadata("a.nested", [[1, 2], [3]], type="array[array[i32]]")
    w.add_metadata("a.nested3", [[["x"], []], [["y", "z"]]], type="array[array[array[string]]]")
    w.write()


def _tensor_seed(path: str, rng: np.random.Generator) -> None:
    w = quanta.GGUFWriter(path)
    w.add_metadata("general.architecture", "llama")
    w.add_metadata("llama.context_length", 128, type="u32")
    w.add_tensor("f32", rng.standard_normal((2, 8)).astype(np.float32))
    w.add_tensor("f16", rng.standard_normal(4).astype(np.float16))
    w.add_tensor("q4_0", _raw_blocks(rng, 1, 18, 1), type="q4_0", shape=(1, 32))
    w.add_tensor("q8_0", _raw_blocks(rng, 2, 34, 1), type="q8_0", shape=(2, 32))
    w.add_tensor("q4_k", _raw_blocks(rng, 1, 144, 2), type="q4_k", shape=(1, 256))
    w.write()


def _aligned_seed(path: str, rng: np.random.Generator) -> None:
    w = quanta.GGUFWriter(path, alignment=64)
    w.add_metadata("general.architecture", "gemma3")
    w.add_tensor("empty", np.zeros((0, 4), np.float32))
    w.add_tensor("i32", np.arange(3, dtype=np.int32))
    w.add_tensor("q8_0.weight", _raw_blocks(rng, 1, 34, 1), type="q8_0", shape=(1, 32))
    w.write()


def _empty_seed(path: str) -> None:
    quanta.GGUFWriter(path).write()


def write_seeds(out_dir: "str | os.PathLike[str]") -> list:
    """Writes the seed files into `out_dir` (created if needed); returns their paths."""
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(20240601)
    paths = [os.path.join(out_dir, name) for name in ("metadata.gguf", "tensors.gguf", "aligned64.gguf", "empty.gguf")]
    _metadata_seed(paths[0])
    _tensor_seed(paths[1], rng)
    _aligned_seed(paths[2], rng)
    _empty_seed(paths[3])
    return paths


def _dict_entry(data: bytes) -> str:
    return '"' + "".join(f"\\x{b:02x}" for b in data) + '"'


def write_dictionary(path: "str | os.PathLike[str]") -> None:
    """A libFuzzer dictionary of GGUF tokens: magic, versions, type ids, interesting counts and keys."""
    entries = [b"GGUF", struct.pack("<I", 3), struct.pack("<I", 2), b"general.alignment"]
    entries += [struct.pack("<I", i) for i in _VALUE_TYPE_IDS]
    entries += [struct.pack("<I", i) for i in _TENSOR_TYPE_IDS]
    for n in (0, 1, 4, 5, 32, 256, 2**31, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 1):
        entries.append(struct.pack("<Q", n))
    with open(path, "w") as f:
        for i, e in enumerate(entries):
            f.write(f"kw{i}={_dict_entry(e)}\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--dict", help="also write a libFuzzer dictionary here")
    args = parser.parse_args(argv)
    for p in write_seeds(args.out_dir):
        print(f"{p}: {os.path.getsize(p)} bytes")
    if args.dict:
        write_dictionary(args.dict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
