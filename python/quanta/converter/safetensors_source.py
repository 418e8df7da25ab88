"""Tensors of a Hugging Face checkpoint, read row range by row range from its safetensors files.

The `safetensors` package opens and validates each file (header JSON, dtypes, shapes, data offsets that cover the
file exactly: a corrupt or truncated file is a FormatError, never a crash) and reads rows lazily:
`safe_open(path, framework="numpy").get_slice(name)[a:b]` copies just those rows out of its memory map. Sharded
checkpoints list their files in `model.safetensors.index.json`. Nothing is read until asked for.

Two things the package cannot do here, which is why a little of the format is still read by hand:

- bfloat16, the dtype most checkpoints ship in: numpy has no bfloat16, and get_slice on a BF16 tensor raises
  TypeError ("data type 'bfloat16' not understood", safetensors 0.8). BF16 rows are read from our own memory map
  at the tensor's `data_offsets` (taken from the header after the package has validated it) and widened to
  float32 by a 16-bit shift.
- giving memory back: every page a safe_open handle has read stays mapped and resident until the handle is
  closed. Reading a 200 MB f16 checkpoint through one handle peaked at 255 MB of RSS; closing it after each
  tensor, 66 MB (tests/test_convert.py checks the bound on a full conversion). So `release()` closes the file's
  handle (the next tensor reopens it: one header parse, far below a millisecond) and hands our own mapping's
  pages back with madvise(MADV_DONTNEED).
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
from safetensors import SafetensorError, safe_open

from ..errors import FormatError, UnsupportedError

# safetensors dtype -> numpy dtype of the stored bits (BF16: the raw 16 bits)
_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"), "F64": np.dtype("<f8")}


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


def _open(path: Path):
    try:
        return safe_open(str(path), framework="numpy")
    except SafetensorError as e:
        raise FormatError(f"{path}: corrupt or truncated safetensors file: {e}") from None


def _data_offsets(path: Path) -> tuple:
    """(header JSON, where the data starts). Only called once safe_open has accepted the file, so the length
    and the JSON are known to be sound; what is checked again costs nothing."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        try:
            return json.loads(f.read(n)), 8 + n
        except (UnicodeDecodeError, json.JSONDecodeError) as e:  # the file changed under us
            raise FormatError(f"{path}: corrupt safetensors header: {e}") from None


def _parse_file(path: Path, ignore=None) -> dict:
    handle = _open(path)
    try:
        names = [n for n in handle.keys() if ignore is None or not ignore(n)]
        infos = {}
        for name in names:
            s = handle.get_slice(name)
            infos[name] = (s.get_dtype(), tuple(int(d) for d in s.get_shape()))
    finally:
        handle.__exit__(None, None, None)
    header, data_start = _data_offsets(path)
    size = path.stat().st_size
    tensors = {}
    for name in names:
        dtype, shape = infos[name]
        if dtype not in _DTYPES:
            raise UnsupportedError(f"{path}: tensor '{name}' has dtype {dtype}; quanta converts F32, F16, BF16 and F64")
        entry = header.get(name)
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        nbytes = math.prod(shape) * _DTYPES[dtype].itemsize
        if not (isinstance(offsets, list) and len(offsets) == 2 and offsets[1] - offsets[0] == nbytes
                and data_start + offsets[1] <= size):
            raise FormatError(f"{path}: tensor '{name}' (shape {list(shape)}, {dtype}) has data offsets "
                              f"{offsets} that do not match its size or the {size}-byte file")
        tensors[name] = SourceTensor(name, dtype, shape, path, data_start + offsets[0], nbytes)
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
    """Every tensor of the checkpoint in `folder`, by name. files: the safetensors files to read (default: the
    folder's index, else every *.safetensors in it); ignore(name) -> True leaves a tensor out unread, whatever
    its dtype (a diffusers text encoder's int64 position_ids buffer)."""

    def __init__(self, folder: "str | os.PathLike[str]", files=None, ignore=None):
        self.folder = Path(folder)
        self.tensors: dict = {}
        for path in (_checkpoint_files(self.folder) if files is None else [Path(f) for f in files]):
            for name, t in _parse_file(path, ignore).items():
                if name in self.tensors:
                    raise FormatError(f"{self.folder}: tensor '{name}' appears in two shards")
                self.tensors[name] = t
        self._handles: dict = {}  # file -> open safe_open handle (F32, F16, F64 reads)
        self._maps: dict = {}  # file -> our own mmap (BF16 reads)

    def _handle(self, path: Path):
        if path not in self._handles:
            self._handles[path] = _open(path)
        return self._handles[path]

    def _map(self, path: Path) -> mmap.mmap:
        if path not in self._maps:
            with open(path, "rb") as f:
                self._maps[path] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return self._maps[path]

    def rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of tensor `name` viewed as 2-D (rows, last dim), as a new float32 array."""
        t = self.tensors[name]
        if t.dtype == "BF16":
            row_bytes = t.row_length * 2
            raw = np.frombuffer(self._map(t.file), dtype=np.uint16, count=(stop - start) * t.row_length,
                                offset=t.start + start * row_bytes).reshape(stop - start, t.row_length)
            return (raw.astype(np.uint32) << 16).view(np.float32)  # bf16 is the top half of a float32
        handle = self._handle(t.file)
        if len(t.shape) == 0:
            data = np.asarray(handle.get_tensor(name)).reshape(1, 1)
        elif len(t.shape) == 1:
            data = handle.get_slice(name)[:].reshape(1, -1)
        else:
            # get_slice indexes the first dimension; rows of the 2-D view are (shape[0] x ... x shape[-2]).
            per_first = t.n_rows // t.shape[0] if t.shape[0] else 1
            first, last = start // per_first, -(-stop // per_first)
            data = handle.get_slice(name)[first:last].reshape(-1, t.row_length)
            data = data[start - first * per_first: stop - first * per_first]
        return np.asarray(data, dtype=np.float32)

    def release(self, name: str) -> None:
        """Drops the pages read for tensor `name` from this process's memory (they stay in the page cache)."""
        t = self.tensors[name]
        handle = self._handles.pop(t.file, None)
        if handle is not None:
            handle.__exit__(None, None, None)  # unmaps the package's mapping of the file
        if t.file in self._maps and hasattr(mmap, "MADV_DONTNEED"):
            page = mmap.PAGESIZE
            begin = t.start // page * page
            length = t.start + t.nbytes - begin
            if length > 0:
                self._maps[t.file].madvise(mmap.MADV_DONTNEED, begin, length)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.__exit__(None, None, None)
        self._handles = {}
        for m in self._maps.values():
            try:
                m.close()
            except BufferError:  # an array still views it (an exception's frames): unmapped when freed
                pass
        self._maps = {}
