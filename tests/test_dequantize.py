"""The scalar reference dequantizers against gguf-py, bit for bit, on random
blocks of every supported type (scales forced finite, all other bits random)."""

import gguf
import numpy as np
import pytest

import quanta

BLOCK = {  # type -> (elements per block, bytes per block, byte offsets of f16 scale fields)
    "q4_0": (32, 18, [0]),
    "q4_1": (32, 20, [0, 2]),
    "q5_0": (32, 22, [0]),
    "q5_1": (32, 24, [0, 2]),
    "q8_0": (32, 34, [0]),
    "q8_1": (32, 36, [0, 2]),
    "q2_k": (256, 84, [80, 82]),
    "q3_k": (256, 110, [108]),
    "q4_k": (256, 144, [0, 2]),
    "q5_k": (256, 176, [0, 2]),
    "q6_k": (256, 210, [208]),
    "q8_k": (256, 292, []),
}


def random_blocks(rng, qtype, n_elements):
    """Random block bytes of `qtype` covering n_elements, with finite scales."""
    per, size, scale_offsets = BLOCK[qtype]
    n = n_elements // per
    blocks = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    for off in scale_offsets:
        scales = (rng.standard_normal(n) * 0.05).astype(np.float16)
        blocks[:, off:off + 2] = scales.view(np.uint8).reshape(n, 2)
    if qtype == "q8_k":
        blocks[:, 0:4] = (rng.standard_normal(n) * 0.01).astype(np.float32).view(np.uint8).reshape(n, 4)
    return blocks.reshape(-1)


@pytest.mark.parametrize("qtype", ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"])
def test_block_types_bit_exact_with_gguf_py(rng, qtype):
    rows, cols = 7, 1024
    raw = random_blocks(rng, qtype, rows * cols).reshape(rows, -1)
    ours = quanta.dequantize(raw, qtype, (rows, cols))
    ref = gguf.quants.dequantize(raw, getattr(gguf.GGMLQuantizationType, qtype.upper()))
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_array_equal(ours.view(np.uint32), ref.view(np.uint32))


def test_q8_1_and_q8_k_against_their_layout(rng):
    # gguf-py has no dequantizer for these activation formats; their layout is x = d * q.
    raw = random_blocks(rng, "q8_1", 64).reshape(2, 36)
    d = raw[:, 0:2].copy().view(np.float16).astype(np.float32)
    q = raw[:, 4:].view(np.int8).astype(np.float32)
    np.testing.assert_array_equal(quanta.dequantize(raw.reshape(1, -1), "q8_1", (1, 64)).reshape(2, 32), q * d)
    raw = random_blocks(rng, "q8_k", 256).reshape(1, 292)
    d = raw[:, 0:4].copy().view(np.float32)
    q = raw[:, 4:260].view(np.int8).astype(np.float32)
    np.testing.assert_array_equal(quanta.dequantize(raw, "q8_k", (1, 256)), d * q)


@pytest.mark.parametrize("qtype,dtype", [("f16", np.float16), ("f32", np.float32)])
def test_float_types(rng, qtype, dtype):
    x = (rng.standard_normal((3, 40)) * 100).astype(dtype)
    x.flat[:4] = [np.inf, -np.inf, 0.0, -0.0]
    x.flat[4] = np.finfo(dtype).tiny / 4  # subnormal
    ours = quanta.dequantize(x.view(np.uint8), qtype, x.shape)
    ref = gguf.quants.dequantize(x.view(np.uint8), getattr(gguf.GGMLQuantizationType, qtype.upper()))
    np.testing.assert_array_equal(ours.view(np.uint32), ref.reshape(x.shape).view(np.uint32))


def test_bf16(rng):
    bits = rng.integers(0, 2**16, size=(4, 64), dtype=np.uint16)
    bits[(bits & 0x7F80) == 0x7F80] = 0x3F80  # no inf/nan patterns
    ours = quanta.dequantize(bits.view(np.uint8), "bf16", bits.shape)
    ref = gguf.quants.dequantize(bits.view(np.uint8), gguf.GGMLQuantizationType.BF16)
    np.testing.assert_array_equal(ours.view(np.uint32), ref.view(np.uint32))


def test_f16_subnormals_and_specials_exhaustive():
    # Every one of the 65536 half-precision bit patterns.
    bits = np.arange(2**16, dtype=np.uint16)
    ours = quanta.dequantize(bits.view(np.uint8), "f16", (2**16,))
    ref = bits.view(np.float16).astype(np.float32)
    same = (ours.view(np.uint32) == ref.view(np.uint32)) | (np.isnan(ours) & np.isnan(ref))
    assert same.all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown type"):
        quanta.dequantize(np.zeros(18, np.uint8), "q4_2", (32,))
    with pytest.raises(ValueError, match="bytes"):
        quanta.dequantize(np.zeros(17, np.uint8), "q4_0", (32,))
    with pytest.raises(ValueError, match="multiple"):
        quanta.dequantize(np.zeros(18, np.uint8), "q4_0", (16,))
    with pytest.raises(ValueError, match="uint8"):
        quanta.dequantize(np.zeros(18, np.int16), "q4_0", (32,))
    with pytest.raises(quanta.UnsupportedError, match="iq2_xxs"):
        quanta.dequantize(np.zeros(66, np.uint8), "iq2_xxs", (256,))
