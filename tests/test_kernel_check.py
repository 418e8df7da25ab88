"""tests/cpp/kernel_check.cpp on this machine: every kernel table entry of every
CPU level it has (the GEMM tiles included, where the level has them) against
the scalar table and against double-precision sums of the dequantized values,
called directly rather than through graphs (tests/test_ops.py does that). The
same build compiles bench/cpp/kernel_bench.cpp (and on x86 bench/cpp/avx2_mix.cpp),
so that they cannot rot; they are not run (speed lives in bench/)."""

import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_level_matches_scalar(tmp_path):
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DQUANTA_CUDA=OFF", "-DQUANTA_PYTHON=OFF",
                    "-DQUANTA_KERNEL_CHECK=ON", "-DQUANTA_KERNEL_BENCH=ON", "-DCMAKE_CXX_FLAGS=-Werror"],
                   check=True, capture_output=True)
    targets = ["kernel_check", "kernel_bench"] + (["avx2_mix"] if platform.machine() in ("x86_64", "AMD64") else [])
    made = subprocess.run(["cmake", "--build", str(build), "-j2", "--target", *targets], capture_output=True, text=True)
    assert made.returncode == 0, made.stdout[-4000:] + made.stderr[-4000:]
    result = subprocess.run([str(build / "kernel_check")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:]
    assert result.stdout.strip().endswith("scalar: ok"), result.stdout
