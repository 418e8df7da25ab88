"""The C API: the example in tests/c builds with -std=c11 -Wall -Werror against
the installed header and library, runs, and agrees with gguf-py; the library
exports nothing but quanta_* symbols."""

import subprocess

import gguf
import numpy as np
import pytest

import quanta
from conftest import require_tool

HERE = __import__("pathlib").Path(__file__).parent


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    cc = require_tool("cc")
    exe = tmp_path_factory.mktemp("c") / "gguf_info"
    subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{quanta.get_include()}",
                    str(HERE / "c" / "gguf_info.c"), "-o", str(exe), f"-L{quanta.get_lib_dir()}", "-lquanta",
                    f"-Wl,-rpath,{quanta.get_lib_dir()}", "-lm"], check=True)
    return exe


def run_example(exe, *args):
    out = subprocess.run([str(exe), *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())


def test_example_matches_gguf_py(example, real_model_path):
    ref = gguf.GGUFReader(real_model_path)
    # f32, q5_0/q4_k and q6_k/q8_0 tensors
    for tensor in ["output_norm.weight", "blk.0.attn_q.weight", "blk.3.ffn_down.weight"]:
        info = run_example(example, real_model_path, tensor)
        assert info["version"] == quanta.__version__
        assert info["cpu_level"] == quanta._core.cpu_level()
        assert info["missing_file_error"] == "i/o error"
        assert info["architecture"] == ref.fields["general.architecture"].contents()
        assert int(info["n_tensors"]) == len(ref.tensors)
        assert int(info["n_metadata"]) == len([k for k in ref.fields if not k.startswith("GGUF.")])
        t = next(t for t in ref.tensors if t.name == tensor)
        name, type_name, dims = info["tensor"].split()
        assert (name, type_name) == (tensor, t.tensor_type.name.lower())
        assert [int(d) for d in dims.split("x")] == [int(d) for d in t.shape]
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
        assert float(info["sum_abs"]) == pytest.approx(np.abs(values).sum(), rel=1e-9)
        assert float(info["sum"]) == pytest.approx(values.sum(), rel=1e-9, abs=1e-9 * np.abs(values).sum())
        assert np.float32(info["first"]) == np.float32(values.reshape(-1)[0])  # %.9g round-trips a float


def test_example_reports_corrupt_files(example, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    out = subprocess.run([str(example), str(bad)], capture_output=True, text=True)
    assert out.returncode == 1
    assert "format error" in out.stderr and "cannot fit" in out.stderr


def test_library_exports_only_quanta_symbols():
    nm = require_tool("nm")
    lib = f"{quanta.get_lib_dir()}/libquanta.so"
    out = subprocess.run([nm, "-D", "--defined-only", lib], capture_output=True, text=True, check=True).stdout
    symbols = [line.split()[-1] for line in out.splitlines() if line.strip()]
    assert "quanta_gguf_open" in symbols and "quanta_last_error" in symbols
    assert [s for s in symbols if not s.startswith("quanta_")] == []


def test_header_compiles_as_cplusplus(tmp_path):
    cxx = require_tool("c++")
    src = tmp_path / "use.cpp"
    src.write_text('#include <quanta.h>\nint main() { return quanta_version() == nullptr; }\n')
    subprocess.run([cxx, "-std=c++17", "-Wall", "-Werror", f"-I{quanta.get_include()}", str(src),
                    "-o", str(tmp_path / "use"), f"-L{quanta.get_lib_dir()}", "-lquanta",
                    f"-Wl,-rpath,{quanta.get_lib_dir()}"], check=True)
    assert subprocess.run([str(tmp_path / "use")]).returncode == 0
