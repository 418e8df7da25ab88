"""conv2d on the CPU backend against torch.nn.functional.conv2d, at every CPU
kernel level: the shapes Stable Diffusion uses (3x3 pad 1 stride 1 and 2, 1x1,
the VAE encoder's one-sided padding) on odd sizes, f32/f16/bf16 kernels (torch
gets the same rounded values), quantized kernels as flattened rows, and the
shape rule's messages."""

import gguf
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import quanta
from quanta import _core


def torch_conv(x, w, bias, stride, pad, pad_end=None):
    """The float64 torch result for numpy x [N, Cin, H, W] and w [Cout, Cin, KH, KW]."""
    t = torch.from_numpy(x.astype(np.float64))
    if pad_end is not None and pad_end != pad:
        t = F.pad(t, (pad, pad_end, pad, pad_end))
        pad = 0
    b = None if bias is None else torch.from_numpy(bias.astype(np.float64))
    return F.conv2d(t, torch.from_numpy(w.astype(np.float64)), b, stride=stride, padding=pad).numpy()


def run_conv(x, w, bias, stride, pad, pad_end=-1, wtype="", threads=2):
    g = _core.Graph()
    tb = None if bias is None else g.constant(bias)
    (y,) = g.run([g.conv2d(g.constant(x), g.constant(w, wtype), tb, stride, pad, pad_end)], {}, "cpu", threads)
    return y


GEOMETRIES = [  # (kernel, stride, pad)
    (3, 1, 1),
    (3, 2, 1),
    (1, 1, 0),
    (3, 1, 0),
    (3, 2, 3),  # padding wider than the kernel: whole taps outside the image
]


@pytest.mark.parametrize("kernel,stride,pad", GEOMETRIES)
@pytest.mark.parametrize("n,cin,h,w,cout", [(2, 5, 7, 9, 6), (1, 40, 11, 13, 9)])
def test_f32_matches_torch(cpu_level, rng, kernel, stride, pad, n, cin, h, w, cout):
    x = rng.standard_normal((n, cin, h, w), dtype=np.float32)
    k = rng.standard_normal((cout, cin, kernel, kernel), dtype=np.float32)
    bias = rng.standard_normal(cout, dtype=np.float32)
    ref = torch_conv(x, k, bias, stride, pad)
    got = run_conv(x, k, bias, stride, pad)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("wtype", ["f16", "bf16"])
def test_half_kernels_match_torch_on_the_rounded_values(cpu_level, rng, wtype):
    x = rng.standard_normal((2, 24, 9, 7), dtype=np.float32)
    k = rng.standard_normal((10, 24, 3, 3), dtype=np.float32)
    if wtype == "f16":
        stored = k.astype(np.float16)
        held = stored.astype(np.float32)
    else:  # bf16: the top half of each f32 (round to nearest even), as uint16
        bits = k.view(np.uint32)
        stored = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
        held = (stored.astype(np.uint32) << 16).view(np.float32)
    for stride in (1, 2):
        ref = torch_conv(x, held, None, stride, 1)
        got = run_conv(x, stored, None, stride, 1, wtype=wtype if wtype == "bf16" else "")
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


# Layers that take Winograd's F(2x2, 3x3) path (winograd.cpp: 3x3, stride 1, plain float kernels, at least 64
# output tiles): odd output sizes (a half tile at the right and bottom edges), a tile count that is not a
# multiple of the 64-tile chunk, no padding, one-sided padding, and output channels not a multiple of 6.
@pytest.mark.parametrize("pad, pad_end", [(1, 1), (0, 0), (1, 0), (2, 1)])
@pytest.mark.parametrize("wtype", ["f32", "f16", "bf16"])
def test_winograd_layers_match_torch(cpu_level, rng, pad, pad_end, wtype):
    x = rng.standard_normal((2, 12, 33, 35), dtype=np.float32)
    k = rng.standard_normal((13, 12, 3, 3), dtype=np.float32)
    bias = rng.standard_normal(13, dtype=np.float32)
    stored, held, tag = k, k, ""
    if wtype == "f16":
        stored = k.astype(np.float16)
        held = stored.astype(np.float32)
    elif wtype == "bf16":
        bits = k.view(np.uint32)
        stored = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
        held, tag = (stored.astype(np.uint32) << 16).view(np.float32), "bf16"
    ref = torch_conv(x, held, bias, 1, pad, pad_end)
    got = run_conv(x, stored, bias, 1, pad, pad_end, wtype=tag)
    assert got.shape == ref.shape
    # Winograd's transforms round differently from a direct sum, within the same few ulps of the magnitude.
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=2e-6 * np.abs(ref).max())


def test_one_sided_padding_as_the_vae_encoder_downsamples(rng):
    x = rng.standard_normal((1, 8, 10, 9), dtype=np.float32)
    k = rng.standard_normal((8, 8, 3, 3), dtype=np.float32)
    bias = rng.standard_normal(8, dtype=np.float32)
    ref = torch_conv(x, k, bias, 2, 0, pad_end=1)
    got = run_conv(x, k, bias, 2, 0, pad_end=1)
    assert got.shape == ref.shape == (1, 8, 5, 4)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("threads", [1, 3])
def test_thread_counts_agree(rng, threads):
    x = rng.standard_normal((2, 16, 13, 11), dtype=np.float32)
    k = rng.standard_normal((7, 16, 3, 3)).astype(np.float16)
    np.testing.assert_array_equal(run_conv(x, k, None, 1, 1, threads=threads), run_conv(x, k, None, 1, 1, threads=2))


# 6 or 70 output channels: one or three panels of the GEMM tile (AVX-512), the last partial.
@pytest.mark.parametrize("qtype,cin,cout", [("q8_0", 32, 6), ("q8_0", 32, 70), ("q4_0", 32, 70), ("q4_k", 256, 6),
                                            ("q6_k", 256, 70), ("q3_k", 256, 6)])
def test_quantized_kernels_as_flat_rows(cpu_level, rng, qtype, cin, cout):
    x = rng.standard_normal((2, cin, 7, 9), dtype=np.float32)
    k = rng.standard_normal((cout, cin * 9), dtype=np.float32)
    if qtype == "q3_k":  # no quantizer (and no row kernel: dequantized rows): random blocks, d = 0.01
        stored = rng.integers(0, 256, (cout, cin * 9 // 256, 110), dtype=np.uint8)
        stored[..., 108:] = np.array([0.01], np.float16).view(np.uint8)
        stored = stored.reshape(cout, -1)
    else:
        stored = quanta.quantize(k, qtype)  # decoded by gguf-py for torch
    held = gguf.quants.dequantize(stored, getattr(gguf.GGMLQuantizationType, qtype.upper()))
    held = held.reshape(cout, cin, 3, 3).astype(np.float32)
    bias = rng.standard_normal(cout, dtype=np.float32)
    ref = torch_conv(x, held, bias, 1, 1)
    got = run_conv(x, stored, bias, 1, 1, wtype=qtype, threads=3)
    # Patches are quantized to 8 bits where the type has a row kernel (as matmul's activations): about 1%.
    np.testing.assert_allclose(got, ref, rtol=0, atol=0.02 * np.abs(ref).max())


def test_shape_rule_names_the_problem(rng):
    g = _core.Graph()
    x = g.constant(rng.standard_normal((1, 4, 5, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"neither \[3, 3, 4, Cout\] nor rows of 36"):
        g.conv2d(x, g.constant(np.zeros((2, 3, 3, 3), dtype=np.float32)), None, 1, 1)
    with pytest.raises(ValueError, match="one value per output channel"):
        g.conv2d(x, g.constant(np.zeros((2, 4, 3, 3), dtype=np.float32)), g.constant(np.zeros(3, np.float32)), 1, 1)
    with pytest.raises(ValueError, match="does not fit the padded input"):
        g.conv2d(x, g.constant(np.zeros((2, 4, 7, 7), dtype=np.float32)), None, 1, 0)
    with pytest.raises(ValueError, match="stride must be at least 1"):
        g.conv2d(x, g.constant(np.zeros((2, 4, 3, 3), dtype=np.float32)), None, 0, 1)
