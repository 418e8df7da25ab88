"""Quantizers: the seven reference types bit-exact with gguf-py (which matches
ggml) on Gaussian, heavy-tailed and real weight rows; k-quants round-trip
through the reference dequantizer and keep their error small."""

import gguf
import numpy as np
import pytest

import quanta

REFERENCE_TYPES = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "f16", "bf16"]
K_TYPES = ["q4_k", "q5_k", "q6_k"]


def datasets(rng, real_rows):
    return {
        "gaussian": rng.standard_normal((32, 1024)).astype(np.float32),
        "heavy_tailed": (rng.standard_t(2, (32, 1024)) * 0.02).astype(np.float32),
        "outliers": np.where(rng.random((32, 1024)) < 0.01, 50.0, 1.0).astype(np.float32)
        * rng.standard_normal((32, 1024)).astype(np.float32),
        "with_zero_blocks": np.concatenate([np.zeros((4, 1024), np.float32),
                                            rng.standard_normal((4, 1024)).astype(np.float32)]),
        "real": real_rows,
    }


@pytest.fixture(scope="module")
def real_rows(qwen_path):
    # Real weights: rows of an attention projection and the norm vectors of the Qwen model.
    f = quanta.GGUF(qwen_path)
    return np.ascontiguousarray(f.tensor("blk.5.attn_q.weight")[:64, :768])


def gguf_type(name):
    return getattr(gguf.GGMLQuantizationType, name.upper())


@pytest.mark.parametrize("qtype", REFERENCE_TYPES)
def test_bit_exact_with_gguf_py(rng, real_rows, qtype):
    for name, x in datasets(rng, real_rows).items():
        ours = quanta.quantize(x, qtype)
        ref = gguf.quants.quantize(x, gguf_type(qtype))
        np.testing.assert_array_equal(ours, ref.view(np.uint8), err_msg=name)
        np.testing.assert_array_equal(quanta.dequantize(ours, qtype, x.shape),
                                      gguf.quants.dequantize(ref, gguf_type(qtype)).reshape(x.shape), err_msg=name)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # gguf-py's own overflow on the subnormal block
def test_bit_exact_special_values():
    x = np.zeros((3, 64), np.float32)
    x[1, :32] = 1e-40  # subnormal block: 1/d overflows to inf
    x[2, 5] = -3.0     # single nonzero
    x[2, 40:] = 65504.0 * 4  # beyond f16 range
    for qtype in ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"]:
        np.testing.assert_array_equal(quanta.quantize(x, qtype),
                                      gguf.quants.quantize(x, gguf_type(qtype)).view(np.uint8), err_msg=qtype)


@pytest.mark.parametrize("qtype", K_TYPES)
def test_k_quants_round_trip_and_error(rng, real_rows, qtype):
    # Relative RMSE bounds well above ggml's typical figures for these bit widths; the
    # comparison against ggml itself is in bench/kquant_rmse.py and test_kquant_vs_ggml.
    bound = {"q4_k": 0.1, "q5_k": 0.06, "q6_k": 0.045}[qtype]
    for name, x in datasets(rng, real_rows).items():
        q = quanta.quantize(x, qtype)
        y = quanta.dequantize(q, qtype, x.shape)
        np.testing.assert_array_equal(y, gguf.quants.dequantize(q, gguf_type(qtype)).reshape(x.shape), err_msg=name)
        rms = np.sqrt(np.mean(x.astype(np.float64) ** 2))
        rel = np.sqrt(np.mean((y - x).astype(np.float64) ** 2)) / rms if rms else 0.0
        assert rel < bound, (name, rel)
    zeros = np.zeros((2, 256), np.float32)
    assert not quanta.dequantize(quanta.quantize(zeros, qtype), qtype, zeros.shape).any()


def test_quantize_rejects_bad_input():
    with pytest.raises(ValueError, match="multiple"):
        quanta.quantize(np.zeros((2, 100), np.float32), "q4_0")
    with pytest.raises(ValueError, match="multiple"):
        quanta.quantize(np.zeros((2, 128), np.float32), "q4_k")
    with pytest.raises(ValueError, match="float32"):
        quanta.quantize(np.zeros((2, 64), np.float64), "q8_0")
    with pytest.raises(ValueError, match="2-D"):
        quanta.quantize(np.zeros(64, np.float32), "q8_0")
    with pytest.raises(ValueError, match="contiguous"):
        quanta.quantize(np.zeros((4, 64), np.float32)[::2], "q8_0")
    with pytest.raises(ValueError, match="unknown type"):
        quanta.quantize(np.zeros((2, 64), np.float32), "q3_0")
    with pytest.raises(quanta.UnsupportedError, match="no quantizer"):
        quanta.quantize(np.zeros((2, 256), np.float32), "iq4_xs")


def test_quantize_threads_are_capped_and_checked(rng):
    # Enough rows to be split across threads; any thread count gives the same blocks.
    x = rng.standard_normal((512, 256)).astype(np.float32)
    one = quanta.quantize(x, "q4_k", n_threads=1)
    with pytest.warns(RuntimeWarning, match="999 threads asked for"):
        assert np.array_equal(quanta.quantize(x, "q4_k", n_threads=999), one)
    with pytest.raises(ValueError, match="not -1"):
        quanta.quantize(x, "q4_k", n_threads=-1)
