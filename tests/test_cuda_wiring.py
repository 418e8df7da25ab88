"""CUDA wiring: libquanta_cuda.so is built when asked, is only loaded where a
device exists, and never stops a CPU-only machine from working. On a machine
with a GPU the same tests run the trivial kernel against numpy."""

import ctypes
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import quanta
from quanta import _core

CUDA_LIB = Path(quanta.get_lib_dir()) / "libquanta_cuda.so"
HAVE_GPU = _core.cuda_status()["available"]
ABI_HEADER = Path(__file__).parent.parent / "kernels" / "quanta_cuda_abi.h"
ABI_VERSION = int(re.search(r"#define QUANTA_CUDA_ABI_VERSION (\d+)", ABI_HEADER.read_text()).group(1))


class CudaApi(ctypes.Structure):
    """Mirror of kernels/quanta_cuda_abi.h (the first fields are enough here)."""

    _fields_ = [
        ("abi_version", ctypes.c_int),
        ("device_count", ctypes.CFUNCTYPE(ctypes.c_int)),
    ]


def test_cuda_library_is_bundled_when_built_with_cuda():
    # .ci/run builds the wheel with QUANTA_CUDA=ON and sets this.
    if os.environ.get("QUANTA_EXPECT_CUDA_LIB") == "1":
        assert CUDA_LIB.is_file()
    if not CUDA_LIB.is_file():
        pytest.skip("this build has no CUDA library (QUANTA_CUDA=OFF or no nvcc)")
    assert _core.cuda_status()["library"] == str(CUDA_LIB)


def test_cuda_library_loads_and_reports_devices_without_crashing():
    if not CUDA_LIB.is_file():
        pytest.skip("this build has no CUDA library")
    # Load it in a child so a broken library cannot take the test run down.
    code = (
        "import ctypes, sys; sys.path.insert(0, %r); from test_cuda_wiring import CudaApi;"
        "lib = ctypes.CDLL(%r); lib.quanta_cuda_get_api.restype = ctypes.POINTER(CudaApi);"
        "api = lib.quanta_cuda_get_api().contents; print(api.abi_version, api.device_count())"
    ) % (str(Path(__file__).parent), str(CUDA_LIB))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    abi, count = map(int, out.stdout.split())
    assert abi == ABI_VERSION
    if HAVE_GPU:
        assert count == _core.cuda_status()["device_count"] > 0
    else:
        assert count <= 0  # -1: no driver; 0: driver without devices


def test_quanta_device_cpu_skips_cuda():
    code = "import quanta; print(quanta._core.cuda_status())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "QUANTA_DEVICE": "cpu"})
    assert "disabled by QUANTA_DEVICE=cpu" in out.stdout
    assert "'available': False" in out.stdout


def test_cuda_add_kernel_or_clear_refusal(rng):
    a = rng.standard_normal((4, 1000), dtype=np.float32)
    b = rng.standard_normal((1000,), dtype=np.float32)
    g = _core.Graph()
    y = g.add(g.constant(a), g.constant(b))
    if not HAVE_GPU:
        with pytest.raises(quanta.UnsupportedError, match="CUDA is not available"):
            g.run([y], {}, "cuda")
        return
    (out,) = g.run([y], {}, "cuda")
    np.testing.assert_array_equal(out, a + b)


def test_cuda_backend_names_unsupported_ops(rng):
    if not HAVE_GPU:
        pytest.skip("needs a CUDA device")
    g = _core.Graph()
    y = g.layer_norm(g.constant(rng.standard_normal((4, 8), dtype=np.float32)), 1e-5)
    with pytest.raises(quanta.UnsupportedError, match="no kernel for layer_norm"):
        g.run([y], {}, "cuda")
