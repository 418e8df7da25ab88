"""Each graph op on the CPU backend against a numpy reference, at every CPU
kernel level this machine has, with odd shapes and several thread counts."""

import gguf
import numpy as np
import pytest

import quanta
from quanta import _core

F32_TOL = dict(rtol=2e-5, atol=2e-5)


def run(graph, outputs, inputs=None, threads=2):
    return graph.run(outputs, inputs or {}, "cpu", threads)


def typed_constant(graph, x, qtype):
    """A constant holding x stored as `qtype`, and the float values it then holds (decoded by gguf-py)."""
    if qtype == "f32":
        return graph.constant(x), x
    gtype = getattr(gguf.GGMLQuantizationType, qtype.upper())
    stored = gguf.quants.quantize(x, gtype)
    held = gguf.quants.dequantize(stored, gtype).reshape(x.shape).astype(np.float32)
    return graph.constant(stored.view(np.uint8).reshape(x.shape[0], -1), qtype), held


def test_add_mul_broadcast(cpu_level, rng):
    a = rng.standard_normal((3, 5, 37), dtype=np.float32)
    for b_shape in [(3, 5, 37), (1, 1, 37), (3, 1, 37), (1, 5, 1)]:
        b = rng.standard_normal(b_shape, dtype=np.float32)
        g = _core.Graph()
        ta, tb = g.constant(a), g.constant(b)
        add, mul = run(g, [g.add(ta, tb), g.mul(ta, tb)])
        np.testing.assert_allclose(add, a + b, **F32_TOL)
        np.testing.assert_allclose(mul, a * b, **F32_TOL)


def test_unary_ops(cpu_level, rng):
    x = rng.standard_normal((7, 129), dtype=np.float32) * 4
    g = _core.Graph()
    t = g.constant(x)
    silu, gelu, scaled = run(g, [g.silu(t), g.gelu(t), g.scale(t, -0.25)])
    np.testing.assert_allclose(silu, x / (1 + np.exp(-x)), rtol=1e-5, atol=1e-6)
    ref_gelu = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(gelu, ref_gelu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scaled, x * -0.25, **F32_TOL)


def test_glu(cpu_level, rng):
    # The gated feed-forward's act(gate) * up, both activations, against numpy; rows longer than a vector.
    gate = rng.standard_normal((3, 2, 133), dtype=np.float32) * 4
    up = rng.standard_normal((3, 2, 133), dtype=np.float32)
    g = _core.Graph()
    silu, gelu = run(g, [g.glu(g.constant(gate), g.constant(up), act) for act in ("silu", "gelu")])
    np.testing.assert_allclose(silu, gate / (1 + np.exp(-gate)) * up, rtol=1e-5, atol=1e-6)
    ref_gelu = 0.5 * gate * (1 + np.tanh(np.sqrt(2 / np.pi) * (gate + 0.044715 * gate**3)))
    np.testing.assert_allclose(gelu, ref_gelu * up, rtol=1e-5, atol=1e-6)


def test_glu_rejects_bad_input(rng):
    g = _core.Graph()
    a = g.constant(rng.standard_normal((2, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="differ in shape"):
        g.glu(a, g.constant(rng.standard_normal((1, 8), dtype=np.float32)))
    with pytest.raises(ValueError, match="activation must be"):
        g.glu(a, a, "relu")


def test_rms_norm(cpu_level, rng):
    x = rng.standard_normal((4, 6, 896), dtype=np.float32)
    g = _core.Graph()
    (y,) = run(g, [g.rms_norm(g.constant(x), 1e-6)])
    ref = x / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("wtype", ["f32", "f16", "bf16"])
@pytest.mark.parametrize("m", [1, 3, 9])  # 3, 9: the register tile where the level has one, with partial tiles
@pytest.mark.parametrize("k", [96, 37])  # 37: a masked tail
def test_matmul_float_weights(cpu_level, rng, wtype, m, k):
    n = 19
    w = rng.standard_normal((n, k), dtype=np.float32)
    x = rng.standard_normal((m, k), dtype=np.float32)
    g = _core.Graph()
    tw, w_used = typed_constant(g, w, wtype)
    (y,) = run(g, [g.matmul(tw, g.constant(x))])
    assert y.shape == (m, n)
    np.testing.assert_allclose(y, x.astype(np.float64) @ w_used.T.astype(np.float64), rtol=1e-4, atol=1e-4)


QUANT_TYPES = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_k", "q5_k", "q6_k"]


def dequantized_activations(x, block=32):
    """Activations as the quantized matmul sees them for every weight type (k-quants too):
    symmetric 8-bit per block of 32, scale amax / 127, levels rounded half to even in float32."""
    xb = x.reshape(x.shape[0], -1, block)
    amax = np.abs(xb).max(-1, keepdims=True)
    with np.errstate(divide="ignore"):
        inv = np.where(amax > 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    q = np.rint(xb * inv)
    return (q * (amax / np.float32(127))).reshape(x.shape).astype(np.float64)


# Row lengths: 512 for every type; 800 = 25 blocks of 32 (an odd count: a half-filled last
# activation pair) for the 32-element types (k-quant rows are whole 256-element super-blocks).
SHAPES = [(t, 512) for t in QUANT_TYPES] + [(t, 800) for t in QUANT_TYPES if not t.endswith("_k")]


@pytest.mark.parametrize("wtype,k", SHAPES)
# 33: the tiled prefill GEMM where the level has one (packed: for q4_k/q5_k), 65: for packed weights of every type
@pytest.mark.parametrize("m", [1, 2, 5, 9, 33, 65])
@pytest.mark.parametrize("pack", [False, True])  # True: octets where the level has their kernels (cpu/octets.h)
def test_matmul_quantized_weights(cpu_level, rng, wtype, k, m, pack):
    n = 19  # two octets and a partial third
    w = rng.standard_normal((n, k), dtype=np.float32)
    x = rng.standard_normal((m, k), dtype=np.float32)
    x[0, :32] = 0  # an all-zero activation block
    blocks = quanta.quantize(w, wtype)
    w_deq = quanta.dequantize(blocks, wtype, w.shape).astype(np.float64)
    g = _core.Graph()
    (y,) = run(g, [g.matmul(g.constant(blocks, wtype, pack=pack), g.constant(x))])
    assert y.shape == (m, n)
    # Exact up to float summation: the integer kernels against the same 8-bit activations.
    xq = dequantized_activations(x)
    scale = np.abs(xq) @ np.abs(w_deq).T
    np.testing.assert_allclose(y, xq @ w_deq.T, rtol=0, atol=1e-5 * scale.max())
    # And close to the float product: 8-bit activations cost well under 1% of the magnitude.
    err = np.abs(y - x.astype(np.float64) @ w_deq.T)
    assert (err <= 0.01 * (np.abs(x) @ np.abs(w_deq).T)).all()


@pytest.mark.parametrize("wtype", ["q4_k", "q5_k", "q6_k"])
@pytest.mark.parametrize("m", [2, 20])  # 20: the tiled prefill GEMM where the level has one
def test_matmul_kquant_outlier_costs_one_block(cpu_level, rng, wtype, m):
    # One activation 50x its neighbours coarsens only its own 32-element block; with one scale per
    # 256 elements (ggml's q8_K for k-quants) it would coarsen 255 neighbours, about 3x the error here.
    n, k = 24, 1024
    w = rng.standard_normal((n, k), dtype=np.float32)
    x = rng.standard_normal((m, k), dtype=np.float32)
    x[:, 300] = 50
    blocks = quanta.quantize(w, wtype)
    w_deq = quanta.dequantize(blocks, wtype, w.shape).astype(np.float64)
    g = _core.Graph()
    (y,) = run(g, [g.matmul(g.constant(blocks, wtype), g.constant(x))])
    exact = x.astype(np.float64) @ w_deq.T
    rms = np.sqrt(np.mean((y - exact) ** 2))
    rms_per256 = np.sqrt(np.mean((dequantized_activations(x, 256) @ w_deq.T - exact) ** 2))
    assert rms < 0.5 * rms_per256


def test_matmul_quantized_long_prefill_blocks(rng):
    # M large enough to span several activation cache blocks, N not a multiple of the thread count.
    n, k, m = 7, 4864, 300
    w = rng.standard_normal((n, k), dtype=np.float32)
    x = rng.standard_normal((m, k), dtype=np.float32)
    for wtype in ["q4_k", "q8_0"]:
        blocks = quanta.quantize(w, wtype)
        w_deq = quanta.dequantize(blocks, wtype, w.shape).astype(np.float64)
        g = _core.Graph()
        (y,) = run(g, [g.matmul(g.constant(blocks, wtype), g.constant(x))], threads=3)
        xq = dequantized_activations(x)
        np.testing.assert_allclose(y, xq @ w_deq.T, rtol=0, atol=1e-5 * (np.abs(xq) @ np.abs(w_deq).T).max())


def test_matmul_batched_broadcast(cpu_level, rng):
    # Grouped-query attention shape: 2 KV heads shared by 6 query heads.
    k_cache = rng.standard_normal((2, 11, 64), dtype=np.float32)
    q = rng.standard_normal((6, 5, 64), dtype=np.float32)
    g = _core.Graph()
    (scores,) = run(g, [g.matmul(g.constant(k_cache), g.constant(q))])
    ref = np.einsum("hqd,hkd->hqk", q, np.repeat(k_cache, 3, axis=0))
    np.testing.assert_allclose(scores, ref, rtol=1e-4, atol=1e-4)


def test_matmul_random_block_contents(cpu_level, rng):
    # Every bit pattern a file may hold (random bytes, finite scales); gguf-py dequantizes the
    # weights. q2_k and q3_k take the reference (dequantize, then f32) path.
    from test_dequantize import random_blocks

    for qtype in ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_k", "q5_k", "q6_k", "q2_k", "q3_k"]:
        n, k = 5, 512
        blocks = random_blocks(rng, qtype, n * k).reshape(n, -1)
        w = gguf.quants.dequantize(blocks, getattr(gguf.GGMLQuantizationType, qtype.upper())).astype(np.float64)
        x = rng.standard_normal((3, k), dtype=np.float32)
        g = _core.Graph()
        (y,) = run(g, [g.matmul(g.constant(blocks, qtype), g.constant(x))])
        exact = qtype in ("q2_k", "q3_k")
        xr = x.astype(np.float64) if exact else dequantized_activations(x)
        np.testing.assert_allclose(y, xr @ w.T, rtol=0, atol=1e-5 * (np.abs(xr) @ np.abs(w).T).max(), err_msg=qtype)


def rope_reference(x, pos, n_rot, mode, base, factors=None):
    """x: (tokens, heads, head_dim). Normal rotates pairs (2i, 2i+1); neox rotates (i, i + n_rot/2)."""
    out = x.astype(np.float64).copy()
    inv_freq = base ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot)
    if factors is not None:
        inv_freq = inv_freq / factors
    theta = pos[:, None].astype(np.float64) * inv_freq[None, :]  # (tokens, n_rot/2)
    cos, sin = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    if mode == "normal":
        a, b = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
        out[..., 0:n_rot:2] = a * cos - b * sin
        out[..., 1:n_rot:2] = a * sin + b * cos
    else:
        half = n_rot // 2
        a, b = x[..., :half], x[..., half:n_rot]
        out[..., :half] = a * cos - b * sin
        out[..., half:n_rot] = a * sin + b * cos
    return out


@pytest.mark.parametrize("mode", ["normal", "neox"])
@pytest.mark.parametrize("n_rot", [64, 32])
def test_rope(cpu_level, rng, mode, n_rot):
    x = rng.standard_normal((7, 3, 64), dtype=np.float32)
    pos = np.array([0, 1, 2, 5, 100, 4095, 77], dtype=np.int32)
    g = _core.Graph()
    (y,) = run(g, [g.rope(g.constant(x), g.constant(pos), n_rot, mode, 10000.0)])
    np.testing.assert_allclose(y, rope_reference(x, pos, n_rot, mode, 10000.0), rtol=1e-5, atol=1e-5)


def test_rope_frequency_factors(rng):
    # llama 3's rope_freqs.weight: each frequency divided by its factor.
    x = rng.standard_normal((5, 2, 32), dtype=np.float32)
    pos = np.array([0, 3, 9, 200, 8000], dtype=np.int32)
    factors = rng.uniform(1.0, 8.0, 16).astype(np.float32)
    g = _core.Graph()
    (y,) = run(g, [g.rope(g.constant(x), g.constant(pos), 32, "neox", 5e5, freq_factors=g.constant(factors))])
    np.testing.assert_allclose(y, rope_reference(x, pos, 32, "neox", 5e5, factors), rtol=1e-5, atol=1e-5)


def test_rope_neox_matches_hf_rotate_half(rng):
    # The transformers formulation: q * cos + rotate_half(q) * sin, cos/sin repeated over both halves.
    x = rng.standard_normal((4, 2, 16), dtype=np.float32)
    pos = np.arange(4, dtype=np.int32) * 3
    inv_freq = 1.0 / (1e6 ** (np.arange(0, 16, 2) / 16))
    emb = np.concatenate([pos[:, None] * inv_freq] * 2, axis=-1)[:, None, :]
    rotate_half = np.concatenate([-x[..., 8:], x[..., :8]], axis=-1)
    ref = x * np.cos(emb) + rotate_half * np.sin(emb)
    g = _core.Graph()
    (y,) = run(g, [g.rope(g.constant(x), g.constant(pos), 16, "neox", 1e6)])
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_softmax_with_mask_and_scale(cpu_level, rng):
    scores = rng.standard_normal((2, 5, 9), dtype=np.float32) * 3
    mask = np.triu(np.full((5, 9), -np.inf, dtype=np.float32), k=5)  # causal with 4 cached tokens
    mask[4, :] = -np.inf  # one fully masked row must give zeros, not NaN
    g = _core.Graph()
    (p,) = run(g, [g.softmax(g.constant(scores), g.constant(mask), 0.125)])
    z = scores * 0.125 + mask
    with np.errstate(invalid="ignore"):
        ref = np.exp(z - z.max(-1, keepdims=True))
        ref = ref / ref.sum(-1, keepdims=True)
    ref[:, 4, :] = 0
    np.testing.assert_allclose(p, ref, rtol=1e-5, atol=1e-6)
    (plain,) = run(g2 := _core.Graph(), [g2.softmax(g2.constant(scores), None, 1.0)])
    ref2 = np.exp(scores - scores.max(-1, keepdims=True))
    np.testing.assert_allclose(plain, ref2 / ref2.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ttype", ["f32", "f16", "q8_0", "q4_0"])
def test_get_rows(cpu_level, rng, ttype):
    table = rng.standard_normal((50, 64), dtype=np.float32)
    ids = np.array([0, 49, 7, 7, 23], dtype=np.int32)
    g = _core.Graph()
    t, ref = typed_constant(g, table, ttype)
    (rows,) = run(g, [g.get_rows(t, g.constant(ids))])
    np.testing.assert_array_equal(rows, ref[ids])


def test_get_rows_rejects_out_of_range_ids(rng):
    g = _core.Graph()
    t = g.constant(rng.standard_normal((4, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="out of range"):
        run(g, [g.get_rows(t, g.constant(np.array([1, 4], dtype=np.int32)))])


@pytest.mark.parametrize("dim", [0, 1, 2])
def test_concat(cpu_level, rng, dim):
    a = rng.standard_normal((2, 3, 4), dtype=np.float32)
    b_shape = list(a.shape)
    b_shape[2 - dim] = 5  # ggml dim 0 is numpy axis -1
    b = rng.standard_normal(b_shape, dtype=np.float32)
    g = _core.Graph()
    (y,) = run(g, [g.concat(g.constant(a), g.constant(b), dim)])
    np.testing.assert_array_equal(y, np.concatenate([a, b], axis=2 - dim))


def test_views_copy_and_types(cpu_level, rng):
    x = rng.standard_normal((3, 4, 6), dtype=np.float32)
    g = _core.Graph()
    t = g.constant(x)
    transposed = g.cont(g.transpose(t))                      # swaps the last two numpy axes
    permuted = g.cont(g.permute(t, 1, 2, 0, 3))              # ggml dim d -> axes[d]
    as_f16 = g.copy(t, "f16")
    back = g.copy(as_f16, "f32")
    as_bf16 = g.copy(g.copy(t, "bf16"), "f32")
    reshaped = g.cont(g.reshape(t, [12, 6]))
    sliced = g.cont(g.view(t, [3, 2, 6], [6 * 4, 4 * 6 * 4], 6 * 4))  # rows 1..2 of each matrix
    outs = run(g, [transposed, permuted, as_f16, back, as_bf16, reshaped, sliced])
    np.testing.assert_array_equal(outs[0], np.swapaxes(x, 1, 2))
    # ggml dims (0,1,2) are numpy axes (2,1,0); ggml dim d moves to axes[d], so the result's
    # ggml dims (0,1,2) come from source numpy axes (0,2,1): numpy order (1,2,0).
    np.testing.assert_array_equal(outs[1], np.transpose(x, (1, 2, 0)))
    np.testing.assert_array_equal(outs[2], x.astype(np.float16))
    np.testing.assert_array_equal(outs[3], x.astype(np.float16).astype(np.float32))
    bf16 = ((x.view(np.uint32) + 0x7FFF + ((x.view(np.uint32) >> 16) & 1)) >> 16 << 16).view(np.float32)
    np.testing.assert_array_equal(outs[4], bf16)
    np.testing.assert_array_equal(outs[5], x.reshape(12, 6))
    np.testing.assert_array_equal(outs[6], x[:, 1:3, :])


def test_copy_into_external_buffer(rng):
    cache = np.zeros((8, 16), dtype=np.float16)  # a KV-cache-like buffer the caller owns
    new_rows = rng.standard_normal((3, 16), dtype=np.float32)
    g = _core.Graph()
    tcache = g.constant(cache)
    dst = g.view(tcache, [3, 16], [16 * 2], 2 * 16 * 2)  # rows 2..4
    run(g, [g.copy_into(g.constant(new_rows), dst)])
    expected = np.zeros_like(cache)
    expected[2:5] = new_rows.astype(np.float16)
    np.testing.assert_array_equal(cache, expected)


def test_inputs_and_thread_counts(rng):
    w = rng.standard_normal((33, 64), dtype=np.float32)
    results = []
    for threads in [1, 2, 3, 5]:
        g = _core.Graph()
        x = g.input("f32", [4, 64], "x")
        y = g.silu(g.matmul(g.constant(w), x))
        xv = rng.standard_normal((4, 64), dtype=np.float32) if not results else xv  # noqa: F821
        (out,) = g.run([y], {x: xv}, "cpu", threads)
        results.append(out)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    ref = xv @ w.T
    np.testing.assert_allclose(results[0], ref / (1 + np.exp(-ref)), rtol=1e-4, atol=1e-5)


def test_planner_reuses_memory(rng):
    # A 12-layer MLP chain: liveness lets the arena hold ~2 activations, not 36.
    x = rng.standard_normal((8, 256), dtype=np.float32)
    ws = [rng.standard_normal((256, 256), dtype=np.float32) / 16 for _ in range(12)]
    g = _core.Graph()
    h = g.input("f32", [8, 256])
    inp = h
    for w in ws:
        h = g.rms_norm(g.silu(g.matmul(g.constant(w), h)), 1e-5)
    (out,) = g.run([h], {inp: x}, "cpu", 2)
    assert g.arena_bytes <= 4 * 8 * 256 * 4, (g.arena_bytes, g.naive_bytes)
    assert g.naive_bytes >= 36 * 8 * 256 * 4
    ref = x
    for w in ws:
        z = ref @ w.T
        z = z / (1 + np.exp(-z))
        ref = z / np.sqrt(np.mean(z.astype(np.float64) ** 2, -1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-4)


def test_simd_levels_match_scalar(rng):
    """Every level against the scalar level on graphs that touch every kernel, with
    odd row counts and row lengths that are not multiples of the vector width."""
    x = rng.standard_normal((5, 512), dtype=np.float32)
    w16 = rng.standard_normal((41, 512), dtype=np.float32).astype(np.float16)
    wq = {t: quanta.quantize(rng.standard_normal((37, 512), dtype=np.float32), t) for t in QUANT_TYPES}
    outs = {}
    for level in _core.cpu_levels():
        _core.set_cpu_level(level)
        g = _core.Graph()
        t = g.constant(x)
        mm = g.matmul(g.constant(w16), g.rms_norm(t, 1e-6))
        y = g.softmax(g.gelu(g.add(mm, g.silu(mm))), None, 0.5)
        quantized = [g.matmul(g.constant(b, name), t) for name, b in wq.items()]
        outs[level] = run(g, [y, g.copy(g.copy(t, "f16"), "f32"), *quantized])
    _core.set_cpu_level(_core.cpu_levels()[-1])
    for level, results in outs.items():
        # softmax(gelu(.)) amplifies summation-order differences of the 512-long dots
        np.testing.assert_allclose(results[0], outs["scalar"][0], rtol=1e-4, atol=1e-6, err_msg=level)
        np.testing.assert_array_equal(results[1], outs["scalar"][1], err_msg=level)
        for name, got, want in zip(wq, results[2:], outs["scalar"][2:]):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4, err_msg=f"{level} {name}")


def test_graph_shape_errors_are_value_errors(rng):
    g = _core.Graph()
    a = g.constant(rng.standard_normal((3, 4), dtype=np.float32))
    b = g.constant(rng.standard_normal((3, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="broadcast"):
        g.add(a, b)
    with pytest.raises(ValueError, match="inner sizes"):
        g.matmul(a, b)
    with pytest.raises(ValueError, match="cannot become"):
        g.reshape(a, [5, 3])
    with pytest.raises(ValueError, match="unknown CPU level"):
        _core.set_cpu_level("sse9")
    with pytest.raises(quanta.UnsupportedError):
        _core.set_cpu_level("neon")
