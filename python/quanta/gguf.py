"""Reading and writing GGUF files.

`GGUF` memory-maps a file (tensor data is used in place) and validates every
count, length and offset on open; malformed files raise `FormatError` naming
the field and byte position. `GGUFWriter` streams tensors to disk one at a
time and only renames the file into place when it is complete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import numpy as np

from . import _core

__all__ = ["GGUF", "GGUFWriter", "TensorInfo"]


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple  # numpy order: the reverse of GGUF's dims
    type: str  # lower-case ggml type name: "q4_k", "f32", ...
    offset: int  # byte offset within the data section
    nbytes: int


class GGUF:
    """A GGUF file opened for reading.

    >>> f = quanta.GGUF("model.gguf")
    >>> f.metadata["general.architecture"]
    >>> [t.name for t in f.tensors]
    >>> f.tensor("token_embd.weight")  # float32 numpy array
    """

    def __init__(self, path: "str | os.PathLike[str]"):
        self._file = _core.GGUFFile.open(os.fspath(path))
        self._metadata: Optional[dict] = None
        self._tensors: Optional[list] = None

    @classmethod
    def from_bytes(cls, data: bytes, label: str = "<bytes>") -> "GGUF":
        self = cls.__new__(cls)
        self._file = _core.GGUFFile.from_bytes(data, label)
        self._metadata = None
        self._tensors = None
        return self

    @property
    def path(self) -> str:
        return self._file.path

    @property
    def version(self) -> int:
        return self._file.version

    @property
    def alignment(self) -> int:
        return self._file.alignment

    @property
    def data_offset(self) -> int:
        """Byte position of the tensor data section in the file."""
        return self._file.data_offset

    @property
    def metadata(self) -> dict:
        """Every key/value pair, in file order. Strings that are not valid UTF-8 come back as bytes."""
        if self._metadata is None:
            self._metadata = self._file.metadata()
        return self._metadata

    @property
    def metadata_types(self) -> dict:
        """Each key's exact GGUF type: 'u32', 'string', 'array[f32]', ..."""
        return self._file.metadata_types()

    @property
    def tensors(self) -> list:
        if self._tensors is None:
            self._tensors = [TensorInfo(*info) for info in self._file.tensor_infos()]
        return self._tensors

    def tensor(self, name: str) -> np.ndarray:
        """Tensor `name` dequantized to float32, in numpy shape."""
        return self._file.tensor(name)

    def tensor_bytes(self, name: str) -> np.ndarray:
        """The raw stored bytes of `name` as a read-only uint8 array (rows x bytes_per_row), without copying."""
        return self._file.tensor_bytes(name)

    def __repr__(self) -> str:
        return f"GGUF({self.path!r}, v{self.version}, {len(self.tensors)} tensors, {len(self.metadata)} keys)"


_PLAIN_NUMPY_TYPES = {
    np.dtype(np.float32): "f32",
    np.dtype(np.float16): "f16",
    np.dtype(np.int8): "i8",
    np.dtype(np.int16): "i16",
    np.dtype(np.int32): "i32",
    np.dtype(np.int64): "i64",
    np.dtype(np.float64): "f64",
}

_NUMPY_VALUE_TYPES = {
    np.dtype(np.uint8): "u8", np.dtype(np.int8): "i8", np.dtype(np.uint16): "u16",
    np.dtype(np.int16): "i16", np.dtype(np.uint32): "u32", np.dtype(np.int32): "i32",
    np.dtype(np.float32): "f32", np.dtype(np.bool_): "bool", np.dtype(np.uint64): "u64",
    np.dtype(np.int64): "i64", np.dtype(np.float64): "f64",
}


def _infer_value_type(value: Any) -> str:
    """The GGUF type a Python value is written as when no type is given."""
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        if isinstance(value, np.integer):
            return _NUMPY_VALUE_TYPES[np.dtype(type(value))]
        if 0 <= value < 2**32:
            return "u32"
        if -(2**31) <= value < 0:
            return "i32"
        return "u64" if value > 0 else "i64"
    if isinstance(value, (float, np.floating)):
        return "f64" if isinstance(value, np.float64) and not isinstance(value, float) else "f32"
    if isinstance(value, (str, bytes)):
        return "string"
    if isinstance(value, np.ndarray):
        if value.dtype not in _NUMPY_VALUE_TYPES:
            raise ValueError(f"cannot store a numpy array of {value.dtype} as GGUF metadata")
        return f"array[{_NUMPY_VALUE_TYPES[value.dtype]}]"
    if isinstance(value, (list, tuple)):
        if not value:
            return "array[u8]"
        inner = {_infer_value_type(v) for v in value}
        if inner <= {"u32", "i32", "u64", "i64"} and len(inner) > 1:
            inner = {"i64"} if any(v < 0 for v in value) else {"u64"}
        if inner <= {"f32", "f64"}:
            inner = {"f32"}
        if len(inner) != 1:
            raise ValueError(f"GGUF arrays hold one type; got {sorted(inner)}")
        return f"array[{inner.pop()}]"
    raise ValueError(f"cannot store {type(value).__name__} as GGUF metadata")


class GGUFWriter:
    """Writes a GGUF v3 file, streaming tensor data.

    Declare metadata and tensors, then call `write()`; or use it as a context
    manager. Tensors given as arrays are held until written; for very large
    models pass a callable returning the array, which is called only when
    that tensor's turn comes.

    >>> with quanta.GGUFWriter("out.gguf") as w:
    ...     w.add_metadata("general.architecture", "llama")
    ...     w.add_metadata("llama.context_length", 4096, type="u32")
    ...     w.add_tensor("token_embd.weight", np.zeros((32, 8), np.float32), type="f16")
    """

    def __init__(self, path: "str | os.PathLike[str]", alignment: int = 32):
        self.path = os.fspath(path)
        self._writer = _core.GGUFWriterCore(self.path, alignment)
        self._pending: list = []
        self._done = False

    def add_metadata(self, key: str, value: Any, type: Optional[str] = None) -> None:
        """Adds `key`. `type` is a GGUF type ('u32', 'f32', 'string', 'array[i32]', ...), inferred when omitted:
        int -> u32 (i32 if negative), float -> f32, str -> string, list -> array of one type."""
        self._writer.set(key, value, type or _infer_value_type(value))

    def add_tensor(self, name: str, data: Any, type: Optional[str] = None, shape: Optional[Iterable[int]] = None) -> None:
        """Declares tensor `name`.

        data: a numpy array (or a callable returning one, called at write time).
        type: the stored type. Float arrays can be stored as f32, f16 or bf16
          (converted here). For quantized types, pass the raw blocks as uint8
          and the logical `shape`.
        """
        if shape is None:
            if callable(data):
                raise ValueError(f"tensor '{name}': pass shape= when data is a callable")
            shape = np.shape(data)
        shape = [int(d) for d in shape]
        if type is None:
            if callable(data):
                raise ValueError(f"tensor '{name}': pass type= when data is a callable")
            dtype = np.asarray(data).dtype
            if dtype not in _PLAIN_NUMPY_TYPES:
                raise ValueError(f"tensor '{name}': pass type= for arrays of {dtype}")
            type = _PLAIN_NUMPY_TYPES[dtype]
        self._writer.add_tensor(name, type, shape)
        self._pending.append((name, data, type))

    def write(self) -> None:
        """Writes the header and every tensor's data, then moves the file into place."""
        if self._done:
            raise ValueError("GGUFWriter.write() was already called")
        for name, data, type in self._pending:
            array = data() if callable(data) else data
            self._writer.write_tensor(name, _to_stored_bytes(name, np.asarray(array), type))
        self._pending = []
        self._writer.finish()
        self._done = True

    def __enter__(self) -> "GGUFWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.write()
        # On error the temporary file is discarded with the core writer.


def _to_stored_bytes(name: str, array: np.ndarray, type: str) -> np.ndarray:
    """The bytes of `array` in GGUF type `type`, converting float arrays to f16/bf16 when asked."""
    if array.dtype == np.uint8 and type not in ("i8",):
        return np.ascontiguousarray(array)
    if type == "bf16" and array.dtype == np.float32:
        bits = np.ascontiguousarray(array).view(np.uint32).astype(np.uint64)
        nan = (bits & 0x7FFFFFFF) > 0x7F800000
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
        return np.where(nan, ((bits >> 16) | 0x40).astype(np.uint16), rounded)
    if type == "bf16" and array.dtype == np.uint16:
        return np.ascontiguousarray(array)
    wanted = {"f32": np.float32, "f16": np.float16, "f64": np.float64, "i8": np.int8, "i16": np.int16,
              "i32": np.int32, "i64": np.int64}.get(type)
    if wanted is None:
        raise ValueError(f"tensor '{name}': {type} data must be given as raw uint8 blocks")
    if array.dtype != wanted and not (np.issubdtype(array.dtype, np.floating) and np.issubdtype(wanted, np.floating)):
        raise ValueError(f"tensor '{name}': cannot store {array.dtype} as {type}")
    return np.ascontiguousarray(array, dtype=wanted)
