"""Fuzzes the GGUF reader with libFuzzer for a bounded time.

Builds tests/fuzz/fuzz_gguf.cpp with clang (-DQUANTA_FUZZ=ON) into a cached
build folder, seeds it with the files tests/fuzz/make_seeds.py writes, and
runs it for QUANTA_FUZZ_SECONDS (60 by default). Any crash, leak, timeout,
uncaught exception or sanitizer report fails the test; the fuzzer's own
artifact (the input that did it) is named in the failure.

The core is compiled with the sanitizers and coverage too (CMAKE_CXX_FLAGS),
not only the harness: without that libFuzzer sees no coverage inside the
reader and ASan checks none of its reads.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_tool

ROOT = Path(__file__).resolve().parents[1]
FUZZ_SECONDS = int(os.environ.get("QUANTA_FUZZ_SECONDS", "60"))
SANITIZE = "-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -g"


def _clang() -> tuple:
    """(clang, clang++): the newest versioned pair installed, else plain clang++.

    Versioned names come first because a distribution's default clang can be
    too old for the core (clang 14 rejects __builtin_cpu_supports("f16c"))."""
    for version in range(25, 15, -1):
        cxx, cc = shutil.which(f"clang++-{version}"), shutil.which(f"clang-{version}")
        if cxx and cc:
            return cc, cxx
    cxx = require_tool("clang++")
    return shutil.which("clang") or cxx, cxx


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def fuzz_binary():
    cc, cxx = _clang()
    cmake = require_tool("cmake")
    build = Path(os.environ.get("QUANTA_FUZZ_BUILD_DIR") or ROOT / "build" / f"fuzz-{Path(cxx).name}")
    configure = [cmake, "-S", ROOT, "-B", build, f"-DCMAKE_C_COMPILER={cc}", f"-DCMAKE_CXX_COMPILER={cxx}",
                 "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_CXX_FLAGS={SANITIZE}", "-DQUANTA_FUZZ=ON",
                 "-DQUANTA_CUDA=OFF", "-DQUANTA_PYTHON=OFF"]
    if shutil.which("ninja") and not (build / "Makefile").exists():
        configure += ["-G", "Ninja"]
    for step in (configure, [cmake, "--build", build, "--target", "fuzz_gguf", "--parallel", str(os.cpu_count() or 2)]):
        result = _run(step, timeout=600)
        assert result.returncode == 0, f"{' '.join(map(str, step))} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return build / "fuzz_gguf"


def test_fuzz_gguf_reader(fuzz_binary, tmp_path):
    seeds, corpus, artifacts = tmp_path / "seeds", tmp_path / "corpus", tmp_path / "artifacts"
    corpus.mkdir()
    artifacts.mkdir()
    dictionary = tmp_path / "gguf.dict"
    made = _run([sys.executable, ROOT / "tests" / "fuzz" / "make_seeds.py", seeds, "--dict", dictionary], timeout=60)
    assert made.returncode == 0, made.stderr
    assert len(list(seeds.iterdir())) >= 4

    env = dict(os.environ,
               ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:allocator_may_return_null=0",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    cmd = [fuzz_binary, corpus, seeds, f"-dict={dictionary}", f"-max_total_time={FUZZ_SECONDS}",
           "-rss_limit_mb=2048", "-timeout=5", "-print_final_stats=1", f"-artifact_prefix={artifacts}/"]
    # Through a shell that forks: Linux carries a process's peak RSS across execve, so a fuzzer
    # exec'd straight from this (model-laden) pytest process would start "using" pytest's
    # gigabytes and trip -rss_limit_mb at once. The shell's own child starts from the shell's.
    run = _run(["sh", "-c", '"$0" "$@"; exit $?', *cmd], timeout=FUZZ_SECONDS + 120, env=env)
    log = run.stderr + run.stdout
    stats = dict(re.findall(r"^stat::(\w+):\s+(\d+)", log, re.M))
    found = sorted(p.name for p in artifacts.iterdir())
    assert run.returncode == 0 and not found, (
        f"fuzz_gguf exited {run.returncode}, artifacts {found} in {artifacts}\n" + log[-6000:])
    assert "runtime error:" not in log and "ERROR: AddressSanitizer" not in log, log[-6000:]
    # The reader must be instrumented: an uninstrumented core shows only the harness's ~130 edges.
    cov = [int(c) for c in re.findall(r"cov: (\d+)", log)]
    assert cov and max(cov) > 500, f"coverage {max(cov, default=0)}: is quanta_core built with -fsanitize=fuzzer-no-link?"
    assert int(stats.get("number_of_executed_units", 0)) > 1000, stats
    print(f"fuzz_gguf: {stats.get('number_of_executed_units')} execs, "
          f"{stats.get('average_exec_per_sec')} exec/s, cov {max(cov)}, corpus {len(list(corpus.iterdir()))} new inputs")
