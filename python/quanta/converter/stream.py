"""Writes a GGUF file tensor by tensor, chunk by chunk: each chunk of rows is read, converted and quantized
(in C++, across threads) and appended, so memory holds about one chunk at a time. The file is built under
a temporary name and renamed into place only when complete; any failure or interrupt deletes it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .. import _core
from .progress import Progress, ProgressArg

CHUNK_ELEMENTS = 1 << 22  # 16 MB of float32 per chunk


@dataclass
class TensorJob:
    name: str
    shape: tuple  # numpy order, rows last
    type: str  # stored type
    read: Callable[[int, int], np.ndarray]  # rows [a, b) of the tensor seen as 2-D, float32
    row_align: int = 1  # chunks start at multiples of this many rows (row permutations need whole heads)
    raw: Optional[Callable[[int, int], np.ndarray]] = None  # rows [a, b) already stored as `type`: copied as is
    release: Optional[Callable[[], None]] = None  # called once the tensor is written

    @property
    def n_rows(self) -> int:
        return int(np.prod(self.shape[:-1], dtype=np.int64)) if len(self.shape) > 1 else 1

    @property
    def nbytes(self) -> int:
        return self.n_rows * _core.row_bytes(self.type, int(self.shape[-1]))

    def chunks(self):
        per_chunk = max(1, CHUNK_ELEMENTS // max(1, int(self.shape[-1])))
        per_chunk = max(self.row_align, per_chunk // self.row_align * self.row_align)
        for start in range(0, self.n_rows, per_chunk):
            yield start, min(self.n_rows, start + per_chunk)


def encode(rows: np.ndarray, type: str, n_threads: int) -> np.ndarray:
    """float32 rows stored as `type`."""
    if type == "f32":
        return np.ascontiguousarray(rows, dtype=np.float32)
    return _core.quantize(np.ascontiguousarray(rows, dtype=np.float32), type, n_threads)


def write_gguf(out: "str | os.PathLike[str]", metadata: list, jobs: list, progress: ProgressArg = True,
               n_threads: int = 0, label: str = "converting") -> None:
    """metadata: [(key, value, gguf type)]; jobs: TensorJob per tensor, in file order."""
    if os.path.isdir(out):  # found now, not at the final rename
        raise ValueError(f"{out} is a folder; give the path of the .gguf file to write")
    writer = _core.GGUFWriterCore(os.fspath(out))
    try:
        for key, value, type in metadata:
            writer.set(key, value, type)
        for job in jobs:
            writer.add_tensor(job.name, job.type, [int(d) for d in job.shape])
        bar = Progress(progress, len(jobs), sum(job.nbytes for job in jobs), label)
        for job in jobs:
            for start, stop in job.chunks():
                data = job.raw(start, stop) if job.raw else encode(job.read(start, stop), job.type, n_threads)
                writer.write_tensor_data(data)
                bar.advance(data.nbytes, job.name, stop == job.n_rows)
            if job.release:
                job.release()
        writer.finish()
        bar.close()
    except BaseException:
        writer.discard()
        raise
