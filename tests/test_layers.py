"""The build enforces the layers (README.md, "Layers"): a header of a layer
that another may not use is not even on its include path, so the include is a
compile error. Configures the source tree with a layering probe (one file that
includes one header with one layer's include paths) and builds just that."""

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    cmake = require_tool("cmake")
    require_tool("c++")

    def build(layer, header):
        folder = tmp_path_factory.mktemp("layers")
        subprocess.run([cmake, "-S", ROOT, "-B", folder, "-DQUANTA_PYTHON=OFF", "-DQUANTA_CUDA=OFF",
                        f"-DQUANTA_LAYER_PROBE={layer}:{header}"], check=True, capture_output=True)
        out = subprocess.run([cmake, "--build", folder, "--target", "layer_probe"], capture_output=True, text=True)
        shutil.rmtree(folder, ignore_errors=True)
        return out.returncode, out.stdout + out.stderr

    return build


@pytest.mark.parametrize("layer,header", [
    ("models", "cpu/backend_cpu.h"),    # models never know which backend runs them
    ("models", "cuda/backend_cuda.h"),
    ("models", "text/tokenizer.h"),     # nor tokenizers: the engine layer joins the two
    ("core", "gguf/reader.h"),          # the core knows no files
    ("core", "cpu/kernels.h"),          # nor SIMD
    ("gguf", "core/graph.h"),           # the file format knows no graphs
    ("quant", "core/tensor.h"),
    ("text", "models/llm.h"),
    ("cpu", "models/llm.h"),
    ("sample", "text/tokenizer.h"),
])
def test_forbidden_include_fails_to_compile(probe, layer, header):
    rc, log = probe(layer, header)
    assert rc != 0 and f"{header}: No such file or directory" in log, log[-2000:]


@pytest.mark.parametrize("layer,header", [
    ("models", "core/backend.h"),
    ("models", "gguf/reader.h"),
    ("cpu", "core/graph.h"),
    ("engine", "models/llm.h"),
    ("engine", "text/tokenizer.h"),
    ("backends", "cpu/backend_cpu.h"),
    ("api", "engine/generator.h"),
])
def test_allowed_include_compiles(probe, layer, header):
    rc, log = probe(layer, header)
    assert rc == 0, log[-2000:]
