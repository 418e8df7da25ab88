"""What a wheel user gets: the extension, libquanta.so, the header, and (when
built with CUDA) libquanta_cuda.so, none needing more than the C/C++ runtime
at load time, so the wheel works on a machine without a compiler or CUDA.

The wheel .ci/run builds and repairs with auditwheel (QUANTA_WHEEL) is checked
too: a manylinux tag whose policy every versioned symbol it uses is within, and
a fresh virtual environment with no compiler on PATH where `pip install` of it
alone is enough to run a model and convert a tokenizer.model checkpoint."""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
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


# ---- the wheel CI ships (.ci/run: pip wheel, auditwheel repair, QUANTA_WHEEL=...) ---------------------------------


def _missing(message):
    """As conftest.require_tool: in CI (CI set) a missing prerequisite fails, elsewhere it skips."""
    if os.environ.get("CI"):
        pytest.fail(message + " (.ci/run provides it)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def wheel():
    path = os.environ.get("QUANTA_WHEEL")
    if not path:
        _missing("QUANTA_WHEEL is not set: it names the repaired wheel .ci/run builds")
    path = Path(path)
    assert path.is_file(), f"QUANTA_WHEEL={path} is not a file"
    return path


def _manylinux_tags(wheel_path):
    """[(glibc major, minor, arch)] of the wheel's platform tags (PEP 600: manylinux_X_Y_ARCH means glibc <= X.Y)."""
    platforms = wheel_path.name[:-len(".whl")].split("-")[-1].split(".")
    return [(int(m[1]), int(m[2]), m[3]) for m in (re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", p) for p in platforms)
            if m]


def _policy(name):
    """auditwheel's own description of a manylinux tag: allowed libraries and symbol versions."""
    try:
        from importlib.resources import files

        policies = json.loads((files("auditwheel.policy") / "manylinux-policy.json").read_text())
    except ModuleNotFoundError:
        _missing("auditwheel is not installed")
    return next(p for p in policies if p["name"] == name or name in p["aliases"])


def version_needs(path):
    """{library: {version, ...}}: the versioned symbols `path` takes from each library (readelf -V)."""
    readelf = require_tool("readelf")
    out = subprocess.run([readelf, "-V", "-W", str(path)], capture_output=True, text=True, check=True).stdout
    needs, library = {}, None
    for line in out.split("Version needs section")[-1].splitlines() if "Version needs section" in out else []:
        m = re.search(r"File: (\S+)", line)
        if m:
            library = m.group(1)
            needs.setdefault(library, set())
        m = re.search(r"Name: (\S+)", line)
        if m and library:
            needs[library].add(m.group(1))
    return needs


def _version(text):
    return tuple(int(x) for x in text.split("."))


def test_wheel_is_manylinux_within_its_policy(wheel, tmp_path):
    tags = _manylinux_tags(wheel)
    assert tags, f"{wheel.name} has no manylinux platform tag"
    major, minor, arch = max(tags)
    policy = _policy(f"manylinux_{major}_{minor}")
    allowed = policy["symbol_versions"][arch]
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        libraries = [n for n in names if re.search(r"\.so(\.\d+)*$", n)]
        z.extractall(tmp_path, libraries)
    shipped = {Path(n).name for n in libraries}
    assert {"libquanta.so"} <= shipped and any(n.startswith("_core") for n in shipped), shipped
    if os.environ.get("QUANTA_EXPECT_CUDA_LIB") == "1":
        # dlopened at run time, so auditwheel sees no reference to it: it must still be in the wheel.
        assert "quanta/lib/libquanta_cuda.so" in names, names
    # The driver's libcuda.so.1 is the machine's, never the wheel's.
    assert not [n for n in shipped if n.startswith("libcuda.so")], shipped

    newest_glibc = (0, 0)
    for lib in libraries:
        path = tmp_path / lib
        for dep in needed(path):
            assert dep in policy["lib_whitelist"] or dep in shipped or dep.startswith("ld-linux"), (lib, dep)
        for dep, versions in version_needs(path).items():
            for v in versions:
                family, number = v.split("_", 1)
                assert number in allowed.get(family, []), f"{lib} needs {v} from {dep}, not in {policy['name']}"
                if family == "GLIBC":
                    newest_glibc = max(newest_glibc, _version(number))
    print(f"{wheel.name}: newest GLIBC symbol {'.'.join(map(str, newest_glibc))}, tag allows {major}.{minor}")
    assert (0, 0) < newest_glibc <= (major, minor)


_COMPILERS = ("cc", "gcc", "c++", "g++", "clang", "clang++")


def test_wheel_alone_runs_and_converts_in_a_fresh_venv_without_a_compiler(wheel, tmp_path, qwen_path,
                                                                         tiny_checkpoint):
    venv = tmp_path / "venv"
    # Only the venv's own bin on PATH: nothing can compile, so every dependency must come as a wheel.
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "CC", "CXX", "CFLAGS", "LDFLAGS")}
    env["PATH"] = str(venv / "bin")
    assert [c for c in _COMPILERS if shutil.which(c, path=env["PATH"])] == []

    def run(*args, timeout=600):
        r = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, timeout=timeout,
                           cwd=tmp_path)
        assert r.returncode == 0, f"{args}: {r.stderr[-3000:]}"
        return r

    run(sys.executable, "-m", "venv", venv)
    assert [c for c in _COMPILERS if shutil.which(c, path=env["PATH"])] == []
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel)  # its dependencies from the configured index
    where = run(venv / "bin" / "python", "-c", "import quanta; print(quanta.__file__)").stdout.strip()
    assert Path(where).is_relative_to(venv), where

    version = wheel.name.split("-")[1]
    assert run("quanta", "--version").stdout.strip() == f"quanta {version}"

    r = run("quanta", "run", "-m", qwen_path, "-p", "hi", "-n", "4", "--temp", "0", "-t", "2")
    want = quanta.LLM(qwen_path, n_ctx=64, n_threads=2).generate("hi", max_tokens=4, temperature=0)
    assert r.stdout == want + "\n" and want

    # A checkpoint whose only tokenizer is a tokenizer.model: needs sentencepiece and protobuf, which the
    # wheel's plain dependencies must have brought. The file equals what this environment's quanta writes.
    _, folder = tiny_checkpoint("llama")
    assert (folder / "tokenizer.model").exists() and not (folder / "tokenizer.json").exists()
    run("quanta", "convert", folder, tmp_path / "fresh.gguf", "--type", "q8_0", "--quiet")
    quanta.convert(folder, tmp_path / "here.gguf", type="q8_0", progress=False)
    assert (tmp_path / "fresh.gguf").read_bytes() == (tmp_path / "here.gguf").read_bytes()
    assert quanta.GGUF(tmp_path / "fresh.gguf").metadata["tokenizer.ggml.model"] == "llama"
