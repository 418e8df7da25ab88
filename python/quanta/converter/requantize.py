"""quanta.requantize(): a GGUF file to another file type, as llama-quantize does. Tensors whose type does
not change are copied byte for byte; the others are decoded to float32 and encoded again, chunk by chunk."""

from __future__ import annotations

import os

from .. import _core
from ..errors import FormatError
from ..gguf import GGUF
from .mixtures import check_file_type, file_type_metadata, tensor_types
from ..threads import threads
from .progress import ProgressArg
from .stream import TensorJob, write_gguf

_FLOAT_TYPES = ("f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_k", "q5_k", "q6_k")
_REPLACED_KEYS = ("general.file_type", "general.quantization_version", "general.alignment")


def requantize(src: "str | os.PathLike[str]", out: "str | os.PathLike[str]", type: str = "q4_k_m",
               progress: ProgressArg = True, n_threads: int = 0) -> None:
    """Rewrites GGUF `src` as `out` with file type `type` (the names convert() takes), metadata unchanged."""
    check_file_type(type)
    n_threads = threads(n_threads)
    if os.path.abspath(src) == os.path.abspath(out):
        raise ValueError(f"{out}: requantize cannot write over its own input")
    f = GGUF(src)
    md, types = f.metadata, f.metadata_types
    arch = md.get("general.architecture")
    if not isinstance(arch, str):
        raise FormatError(f"{f.path}: no general.architecture")
    metadata = [(k, v, types[k]) for k, v in md.items() if k not in _REPLACED_KEYS]
    new_types = tensor_types(type, [(t.name, t.shape) for t in f.tensors])
    jobs = [_job(f, t, new_type) for t, new_type in zip(f.tensors, new_types)]
    metadata += file_type_metadata(type, [j.type for j in jobs])
    write_gguf(out, metadata, jobs, progress, n_threads, label="quantizing")


def _job(f: GGUF, t, new_type: str) -> TensorJob:
    stored = f.tensor_bytes(t.name)  # rows x bytes per row, mapped
    # Integer tensors, types quanta cannot decode, and tensors that keep their type travel unchanged.
    if t.type not in _FLOAT_TYPES or new_type == t.type:
        return TensorJob(t.name, t.shape, t.type, None, raw=lambda a, b: stored[a:b])
    width = int(t.shape[-1])
    return TensorJob(t.name, t.shape, new_type,
                     lambda a, b: _core.dequantize(stored[a:b], t.type, [b - a, width]))
