"""The aarch64 build on this x86 machine: CI cross-compiles the whole core and
C library for it, so that path cannot rot, and runs its kernel check
(tests/cpp/kernel_check.cpp: every NEON level against the scalar one) under
qemu-user, as a CPU with the dot product and int8 matrix instructions (qemu's
"max"), one with the dot product only (Cortex-A76) and one with neither
(Cortex-A53), so every NEON level and their run-time choice are exercised
without an ARM machine."""

import subprocess
from pathlib import Path

import pytest

from conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent
SYSROOT = "/usr/aarch64-linux-gnu"  # Debian's cross C/C++ runtime, which qemu-user loads the binary against


@pytest.fixture(scope="module")
def aarch64_build(tmp_path_factory):
    cxx = require_tool("aarch64-linux-gnu-g++")
    cc = require_tool("aarch64-linux-gnu-gcc")
    build = tmp_path_factory.mktemp("aarch64") / "build"
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_SYSTEM_NAME=Linux",
                    "-DCMAKE_SYSTEM_PROCESSOR=aarch64", f"-DCMAKE_C_COMPILER={cc}", f"-DCMAKE_CXX_COMPILER={cxx}",
                    "-DQUANTA_CUDA=OFF", "-DQUANTA_PYTHON=OFF", "-DQUANTA_KERNEL_CHECK=ON",
                    "-DCMAKE_CXX_FLAGS=-Werror"], check=True, capture_output=True)
    result = subprocess.run(["cmake", "--build", str(build), "-j2"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return build


def test_core_cross_compiles_for_aarch64(aarch64_build):
    elf = (aarch64_build / "libquanta.so").read_bytes()[:20]
    assert elf[:4] == b"\x7fELF" and int.from_bytes(elf[18:20], "little") == 183  # EM_AARCH64


@pytest.mark.parametrize("cpu, levels", [("max", ["neon", "neon-dotprod", "neon-i8mm"]),
                                         ("cortex-a76", ["neon", "neon-dotprod"]), ("cortex-a53", ["neon"])])
def test_neon_kernels_match_scalar_under_qemu(aarch64_build, cpu, levels):
    qemu = require_tool("qemu-aarch64")
    result = subprocess.run([qemu, "-cpu", cpu, "-L", SYSROOT, str(aarch64_build / "kernel_check")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    reported = [line.split(":")[0] for line in result.stdout.splitlines() if line.endswith(": ok")]
    assert reported == levels + ["scalar"], result.stdout
