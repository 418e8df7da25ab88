"""What a wheel user gets: the extension, libquanta.so, the header, and (when
built with CUDA) libquanta_cuda.so, none needing more than the C/C++ runtime
at load time, so the wheel works on a machine without a compiler or CUDA."""

import subprocess
from pathlib import Path

import pytest

import quanta
from conftest import require_tool

RUNTIME = {"libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2",
           "libpthread.so.0", "libdl.so.2", "librt.so.1", "ld-linux-aarch64.so.1"}


def needed(path):
    readelf = require_tool("readelf")
    out = subprocess.run([readelf, "-d", str(path)], capture_output=True, text=True, check=True).stdout
    return {line.split("[")[1].split("]")[0] for line in out.splitlines() if "(NEEDED)" in line}


def shipped_libraries():
    package = Path(quanta.__file__).parent
    libs = [next(package.glob("_core*.so")), Path(quanta.get_lib_dir()) / "libquanta.so"]
    cuda = Path(quanta.get_lib_dir()) / "libquanta_cuda.so"
    return libs + ([cuda] if cuda.exists() else [])


@pytest.mark.parametrize("lib", shipped_libraries(), ids=lambda p: p.name)
def test_libraries_need_only_the_c_runtime(lib):
    assert needed(lib) <= RUNTIME, needed(lib) - RUNTIME


def test_header_and_library_are_installed():
    assert (Path(quanta.get_include()) / "quanta.h").is_file()
    assert (Path(quanta.get_lib_dir()) / "libquanta.so").is_file()


def test_converting_needs_no_extra():
    # A plain `pip install quanta` must convert any supported checkpoint: safetensors, sentencepiece and protobuf are
    # unconditional requirements of the installed distribution (no `extra == ...` marker).
    import re
    from importlib.metadata import requires

    plain = {re.match(r"[A-Za-z0-9._-]+", r).group().lower() for r in requires("quanta") if ";" not in r}
    assert {"numpy", "jinja2", "safetensors", "sentencepiece", "protobuf"} <= plain, plain
