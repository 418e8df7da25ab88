"""quanta: a native inference engine for quantized LLMs and diffusion models."""

from pathlib import Path

from . import _core
from .errors import FormatError, ModelError, QuantaError, UnsupportedError
from .gguf import GGUF, GGUFWriter, TensorInfo

__version__ = _core.version()

__all__ = [
    "GGUF",
    "GGUFWriter",
    "TensorInfo",
    "FormatError",
    "ModelError",
    "QuantaError",
    "UnsupportedError",
    "dequantize",
    "get_include",
    "get_lib_dir",
    "system_info",
    "__version__",
]

_PACKAGE_DIR = Path(__file__).resolve().parent


def get_include() -> str:
    """The folder holding quanta.h, for compiling C programs against libquanta."""
    return str(_PACKAGE_DIR / "include")


def get_lib_dir() -> str:
    """The folder holding libquanta.so (and libquanta_cuda.so when built with CUDA)."""
    return str(_PACKAGE_DIR / "lib")


def dequantize(q, qtype: str, shape) -> "numpy.ndarray":  # noqa: F821
    """Decodes raw ggml blocks (uint8, rows x bytes_per_row) of `qtype` into float32 of `shape`."""
    import numpy as np

    q = np.asarray(q)
    if q.dtype != np.uint8:
        raise ValueError(f"quantized data must be uint8, not {q.dtype}")
    if not q.flags.c_contiguous:
        raise ValueError("quantized data must be C-contiguous")
    return _core.dequantize(q, qtype, [int(d) for d in shape])


def system_info() -> dict:
    """What this machine offers quanta: CPU kernel level and features, CUDA devices."""
    return {
        "version": __version__,
        "cpu_level": _core.cpu_level(),
        "cpu_levels": _core.cpu_levels(),
        "cpu_features": _core.cpu_features(),
        "cuda": _core.cuda_status(),
    }
