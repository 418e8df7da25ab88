"""quanta: a native inference engine for quantized LLMs and diffusion models."""

from pathlib import Path

from . import _core
from .converter import convert, requantize
from .errors import ContextOverflowError, FormatError, ModelError, QuantaError, UnsupportedError
from .gguf import GGUF, GGUFWriter, TensorInfo
from .diffusion import Diffusion
from .llm import LLM

__version__ = _core.version()

__all__ = [
    "GGUF",
    "LLM",
    "Diffusion",
    "ContextOverflowError",
    "convert",
    "requantize",
    "GGUFWriter",
    "TensorInfo",
    "FormatError",
    "ModelError",
    "QuantaError",
    "UnsupportedError",
    "dequantize",
    "quantize",
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


def quantize(x, qtype: str, n_threads: int = 0) -> "numpy.ndarray":  # noqa: F821
    """Encodes a 2-D float32 array into ggml blocks of `qtype` ("q4_0", "q4_k", "f16", ...).

    The row length must be a multiple of the type's block size (32, or 256 for k-quants). Returns uint8 of
    shape (rows, bytes_per_row). q4_0, q4_1, q5_0, q5_1, q8_0, f16 and bf16 are bit-exact with ggml.
    n_threads: 0 uses every usable core; more than that is capped with a RuntimeWarning.
    """
    import numpy as np

    from .threads import threads

    n_threads = threads(n_threads)

    x = np.asarray(x)
    if x.dtype != np.float32:
        raise ValueError(f"quantize takes float32 data, not {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"quantize takes a 2-D array (rows, row_length), not {x.ndim}-D")
    if not x.flags.c_contiguous:
        raise ValueError("quantize takes C-contiguous data (use numpy.ascontiguousarray)")
    return _core.quantize(x, qtype, n_threads)


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
