"""The aarch64 build (NEON kernel level, scalar fallback) cannot be run on this
x86 machine, so CI at least cross-compiles the whole core and C library for it
to keep that path from rotting."""

import subprocess
from pathlib import Path

from conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent


def test_core_cross_compiles_for_aarch64(tmp_path):
    cxx = require_tool("aarch64-linux-gnu-g++")
    cc = require_tool("aarch64-linux-gnu-gcc")
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_SYSTEM_NAME=Linux",
                    "-DCMAKE_SYSTEM_PROCESSOR=aarch64", f"-DCMAKE_C_COMPILER={cc}", f"-DCMAKE_CXX_COMPILER={cxx}",
                    "-DQUANTA_CUDA=OFF", "-DQUANTA_PYTHON=OFF", "-DCMAKE_CXX_FLAGS=-Werror"],
                   check=True, capture_output=True)
    result = subprocess.run(["cmake", "--build", str(build), "-j2"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    elf = (build / "libquanta.so").read_bytes()[:20]
    assert elf[:4] == b"\x7fELF" and int.from_bytes(elf[18:20], "little") == 183  # EM_AARCH64
