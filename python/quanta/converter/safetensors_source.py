"""Tensors of a Hugging Face checkpoint, read row range by row range from memory-mapped safetensors files.

A safetensors file is an 8-byte little-endian header length, a JSON header mapping each tensor name to
{dtype, shape, data_offsets}, then the raw little-endian data. Sharded checkpoints list their files in
`model.safetensors.index.json`. Nothing is read until asked for, and `release()` hands a tensor's pages back
to the kernel, so converting a model holds about one chunk of it in memory, not the whole.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FormatError, UnsupportedError

# safetensors dtype -> (numpy dtype of the stored bits, bytes per element)
_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"), "F64": np.dtype("<f8")}
_MAX_HEADER = 100 << 20  # the format's own limit on the JSON header


@dataclass(frozen=True)
class SourceTensor:
    name: str
    dtype: str  # safetensors name: F32, F16, BF16, F64
    shape: tuple
    file: Path
    start: int  # absolute byte offset of the data in `file`
    nbytes: int

    @property
    def n_rows(self) -> int:
        return int(np.prod(self.shape[:-1], dtype=np.int64)) if len(self.shape) > 1 else 1

    @property
    def row_length(self) -> int:
        return int(self.shape[-1]) if self.shape else 1


def _read_header(path: Path) -> tuple:
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise FormatError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", raw)
        if n > _MAX_HEADER or 8 + n > size:
            raise FormatError(f"{path}: safetensors header length {n} does not fit in a {size}-byte file")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatError(f"{path}: corrupt safetensors header: {e}") from None
    if not isinstance(header, dict):
        raise FormatError(f"{path}: safetensors header is not a JSON object")
    return header, 8 + n, size


def _parse_file(path: Path) -> dict:
    header, data_start, size = _read_header(path)
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
            if not all(type(v) is int for v in shape + (begin, end)) or not isinstance(dtype, str):
                raise TypeError
        except (KeyError, TypeError, ValueError):
            raise FormatError(f"{path}: tensor '{name}' has a malformed safetensors entry") from None
        if dtype not in _DTYPES:
            raise UnsupportedError(f"{path}: tensor '{name}' has dtype {dtype}; quanta converts F32, F16, BF16 and F64")
        count = math.prod(shape)
        if any(d < 0 for d in shape) or not (0 <= begin <= end) or end - begin != count * _DTYPES[dtype].itemsize \
                or data_start + end > size:
            raise FormatError(f"{path}: tensor '{name}' (shape {list(shape)}, {dtype}) has data offsets "
                              f"[{begin}, {end}) that do not match its size or the {size}-byte file")
        tensors[name] = SourceTensor(name, dtype, shape, path, data_start + begin, end - begin)
    return tensors


def _checkpoint_files(folder: Path) -> list:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatError(f"{index}: not a safetensors index ({e})") from None
        files = sorted({folder / f for f in weight_map.values()})
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise FormatError(f"{index}: lists shard(s) that are missing: {', '.join(missing)}")
        return files
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FormatError(f"{folder}: no *.safetensors files (quanta converts safetensors checkpoints)")
    return files


class SafetensorsSource:
    """Every tensor of the checkpoint in `folder`, by name."""

    def __init__(self, folder: "str | os.PathLike[str]"):
        self.folder = Path(folder)
        self.tensors: dict = {}
        for path in _checkpoint_files(self.folder):
            for name, t in _parse_file(path).items():
                if name in self.tensors:
                    raise FormatError(f"{self.folder}: tensor '{name}' appears in two shards")
                self.tensors[name] = t
        self._maps: dict = {}

    def _map(self, path: Path) -> mmap.mmap:
        if path not in self._maps:
            with open(path, "rb") as f:
                self._maps[path] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return self._maps[path]

    def rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of tensor `name` viewed as 2-D (rows, last dim), as a new float32 array."""
        t = self.tensors[name]
        stored = _DTYPES[t.dtype]
        row_bytes = t.row_length * stored.itemsize
        raw = np.frombuffer(self._map(t.file), dtype=stored, count=(stop - start) * t.row_length,
                            offset=t.start + start * row_bytes).reshape(stop - start, t.row_length)
        if t.dtype == "BF16":  # bf16 is the top half of a float32
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(np.float32)

    def release(self, name: str) -> None:
        """Drops tensor `name`'s pages from this process's memory (they stay in the page cache)."""
        t = self.tensors[name]
        page = mmap.PAGESIZE
        begin = t.start // page * page
        length = t.start + t.nbytes - begin
        if length > 0 and hasattr(mmap, "MADV_DONTNEED"):
            self._map(t.file).madvise(mmap.MADV_DONTNEED, begin, length)

    def close(self) -> None:
        for m in self._maps.values():
            try:
                m.close()
            except BufferError:  # an array still views it (an exception's frames): unmapped when freed
                pass
        self._maps = {}
