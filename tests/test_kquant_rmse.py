"""K-quant round-trip error is no worse than ggml's own quantizer on every data
set. With llama-cpp-python installed the comparison is live (ggml_quantize_chunk
through ctypes); otherwise against ggml's figures recorded by
`python bench/kquant_rmse.py --record` on the same deterministic data."""

import json
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

import quanta
from kquant_data import K_TYPES, datasets

RECORDED = Path(__file__).parent / "data" / "ggml_kquant_rmse.json"


def rmse(x, blocks, qtype):
    y = gguf.quants.dequantize(blocks, getattr(gguf.GGMLQuantizationType, qtype.upper())).reshape(x.shape)
    return float(np.sqrt(np.mean((y.astype(np.float64) - x) ** 2)))


@pytest.fixture(scope="module")
def data(qwen_path):
    return datasets(qwen_path)


@pytest.fixture(scope="module")
def ggml_rmse():
    try:
        sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
        import ggml_peer

        peer = ggml_peer.Ggml()
        return lambda name, x, qtype: rmse(x, peer.quantize(x, qtype), qtype)
    except (ImportError, OSError):
        recorded = json.loads(RECORDED.read_text())
        return lambda name, x, qtype: recorded[f"{name}/{qtype}"]


@pytest.mark.parametrize("qtype", K_TYPES)
def test_no_worse_than_ggml(data, ggml_rmse, qtype):
    for name, x in data.items():
        ours = rmse(x, quanta.quantize(x, qtype), qtype)
        assert ours <= ggml_rmse(name, x, qtype), (name, qtype, ours)
