"""Each op the CUDA backend has a kernel for, against the CPU backend on the same
random data (tests/test_ops.py holds the CPU backend to numpy), with the shapes
the LLM graphs give them and the edge cases the CPU tests have: broadcasts,
a fully masked softmax row, rope at positions in the thousands. Marked cuda:
skipped only where no GPU is present (`pytest -m cuda` on a GPU machine)."""

import numpy as np
import pytest

import quanta
from quanta import _core
from test_backends import assert_attention_matches_numpy, attention_arrays
from test_ops import dequantized_activations

HAVE_GPU = _core.cuda_status()["available"]
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not HAVE_GPU, reason="needs a CUDA device")]

TOL = dict(rtol=1e-5, atol=1e-6)


def on_both(build):
    """The outputs of the graph that build(graph) makes, run on the CPU and on the GPU."""
    results = []
    for device in ("cpu", "cuda"):
        g = _core.Graph()
        results.append(g.run(build(g), {}, device))
    return results


def assert_match(build, **tol):
    cpu, cuda = on_both(build)
    assert len(cpu) == len(cuda)
    for c, d in zip(cpu, cuda):
        assert c.shape == d.shape
        np.testing.assert_allclose(d, c, **(tol or TOL))


@pytest.mark.parametrize("b_shape", [(3, 5, 37), (1, 1, 37), (3, 1, 37), (1, 5, 1)])
def test_add_mul_broadcast(rng, b_shape):
    a = rng.standard_normal((3, 5, 37), dtype=np.float32)
    b = rng.standard_normal(b_shape, dtype=np.float32)
    assert_match(lambda g: [g.add(g.constant(a), g.constant(b)), g.mul(g.constant(a), g.constant(b))])


def test_unary_ops(rng):
    x = rng.standard_normal((7, 129), dtype=np.float32) * 4
    assert_match(lambda g: [g.silu(g.constant(x)), g.gelu(g.constant(x)), g.gelu_erf(g.constant(x)),
                            g.quick_gelu(g.constant(x)), g.scale(g.constant(x), -0.25)])


def test_glu(rng):
    gate = rng.standard_normal((7, 129), dtype=np.float32) * 4
    up = rng.standard_normal((7, 129), dtype=np.float32)
    assert_match(lambda g: [g.glu(g.constant(gate), g.constant(up), act) for act in ("silu", "gelu")])


@pytest.mark.parametrize("shape", [(4, 6, 896), (3, 1, 5), (2, 2000)])  # rows shorter and longer than a block
def test_rms_norm(rng, shape):
    x = rng.standard_normal(shape, dtype=np.float32)
    assert_match(lambda g: [g.rms_norm(g.constant(x), 1e-6)])


def test_softmax_with_mask_and_scale(rng):
    scores = rng.standard_normal((2, 5, 9), dtype=np.float32) * 3
    mask = np.triu(np.full((5, 9), -np.inf, dtype=np.float32), k=5)
    mask[4, :] = -np.inf  # a fully masked row: zeros on both
    assert_match(lambda g: [g.softmax(g.constant(scores), g.constant(mask), 0.125), g.softmax(g.constant(scores), None, 1.0)])
    wide = rng.standard_normal((3, 1500), dtype=np.float32)
    assert_match(lambda g: [g.softmax(g.constant(wide), None, 0.5)])


@pytest.mark.parametrize("mode", ["normal", "neox"])
@pytest.mark.parametrize("n_rot", [64, 32])
def test_rope(rng, mode, n_rot):
    x = rng.standard_normal((7, 3, 64), dtype=np.float32)
    pos = np.array([0, 1, 2, 5, 100, 4095, 77], dtype=np.int32)
    assert_match(lambda g: [g.rope(g.constant(x), g.constant(pos), n_rot, mode, 10000.0)], rtol=1e-5, atol=1e-5)


def test_rope_frequency_factors(rng):
    x = rng.standard_normal((5, 2, 32), dtype=np.float32)
    pos = np.array([0, 3, 9, 200, 8000], dtype=np.int32)
    factors = rng.uniform(1.0, 8.0, 16).astype(np.float32)
    assert_match(lambda g: [g.rope(g.constant(x), g.constant(pos), 32, "neox", 5e5, freq_factors=g.constant(factors))],
                 rtol=1e-5, atol=1e-5)


def test_chain_stays_on_the_device(rng):
    # A decoder block's norm and gated activation: intermediates live in device buffers between kernels.
    x = rng.standard_normal((6, 256), dtype=np.float32)
    w = rng.standard_normal((256,), dtype=np.float32)
    up = rng.standard_normal((6, 256), dtype=np.float32)

    def build(g):
        h = g.mul(g.rms_norm(g.constant(x), 1e-6), g.constant(w))
        return [g.add(g.glu(h, g.constant(up)), g.constant(x))]

    assert_match(build)


def cuda_run(build):
    g = _core.Graph()
    return g.run(build(g), {}, "cuda")


WEIGHT_TYPES = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_k", "q5_k", "q6_k"]


@pytest.mark.parametrize("ttype", ["f32", "f16", "bf16"] + WEIGHT_TYPES)
def test_get_rows_has_the_references_bits(rng, ttype):
    # Every block dequantized by the code the CPU's reference runs, unfused: the same bits.
    table = rng.standard_normal((50, 512), dtype=np.float32)
    ids = np.array([0, 49, 7, 7, 23], dtype=np.int32)
    blocks = table if ttype == "f32" else quanta.quantize(table, ttype)
    held = table if ttype == "f32" else quanta.dequantize(blocks, ttype, table.shape)
    (rows,) = cuda_run(lambda g: [g.get_rows(g.constant(blocks, ttype) if ttype != "f32" else g.constant(blocks),
                                             g.constant(ids))])
    np.testing.assert_array_equal(rows, held[ids])


def test_get_rows_rejects_out_of_range_ids(rng):
    table = rng.standard_normal((4, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="out of range"):
        cuda_run(lambda g: [g.get_rows(g.constant(table), g.constant(np.array([1, 4], dtype=np.int32)))])
    # and the next graph is not blamed for it
    (rows,) = cuda_run(lambda g: [g.get_rows(g.constant(table), g.constant(np.array([3], dtype=np.int32)))])
    np.testing.assert_array_equal(rows, table[[3]])


@pytest.mark.parametrize("wtype", ["f32", "f16", "bf16"] + WEIGHT_TYPES)
@pytest.mark.parametrize("m", [1, 5, 8, 9, 33])  # 8 activation rows a warp: one chunk, two, five
@pytest.mark.parametrize("k", [512, 4864])  # 4864: Qwen2.5-0.5B's ffn_down, 304 groups of 16 over 32 lanes
def test_matmul_against_float64(rng, wtype, m, k):
    # The GPU dots exactly dequantized float weights with float activations, and quantized weights with the
    # activations' 8-bit levels (test_ops.dequantized_activations, the CPU's); either way it is held to the
    # float64 product of what it reads, up to float summation.
    n = 19
    w = rng.standard_normal((n, k), dtype=np.float32)
    x = rng.standard_normal((m, k), dtype=np.float32)
    x[0, 3] = 30.0  # an outlier: its block's levels are coarse
    blocks = w if wtype == "f32" else quanta.quantize(w, wtype)
    w_deq = (w if wtype == "f32" else quanta.dequantize(blocks, wtype, w.shape)).astype(np.float64)
    (y,) = cuda_run(lambda g: [g.matmul(g.constant(blocks, wtype) if wtype != "f32" else g.constant(blocks),
                                        g.constant(x))])
    x_read = dequantized_activations(x) if wtype in WEIGHT_TYPES else x.astype(np.float64)
    scale = np.abs(x_read) @ np.abs(w_deq).T
    np.testing.assert_allclose(y, x_read @ w_deq.T, rtol=0, atol=1e-5 * scale.max())


def test_matmul_batched_broadcast(rng):
    # Grouped-query attention's shape: 2 KV heads shared by 6 query heads.
    k_cache = rng.standard_normal((2, 11, 64), dtype=np.float32)
    q = rng.standard_normal((6, 5, 64), dtype=np.float32)
    (scores,) = cuda_run(lambda g: [g.matmul(g.constant(k_cache), g.constant(q))])
    ref = np.einsum("hqd,hkd->hqk", q, np.repeat(k_cache, 3, axis=0))
    np.testing.assert_allclose(scores, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("to", ["f32", "f16", "bf16"])
def test_copy_between_float_types_and_through_strides(rng, to):
    x = rng.standard_normal((3, 5, 96), dtype=np.float32)
    x16 = rng.standard_normal((4, 40)).astype(np.float16)

    def build(g):
        out = [g.copy(g.constant(x), to), g.copy(g.constant(x16), to), g.copy(g.transpose(g.constant(x)), to)]
        return [g.copy(t, "f32") for t in out] if to == "bf16" else out  # bf16 cannot be an output

    assert_match(build, rtol=0, atol=0)


def test_set_rows_into_an_f16_cache(rng):
    x = rng.standard_normal((3, 96), dtype=np.float32) * 3
    ids = np.array([7, 2, 4], dtype=np.int32)
    assert_match(lambda g: [g.set_rows(g.constant(np.zeros((10, 96), dtype=np.float16)), g.scale(g.constant(x), 2.0),
                                       g.constant(ids))], rtol=0, atol=0)


@pytest.mark.parametrize("kv_type", ["f16", "f32"])
def test_attention_matches_numpy(rng, kv_type):
    q, k, v, lists = attention_arrays(rng, kv_type=kv_type)
    (out,) = cuda_run(lambda g: [g.attention(*map(g.constant, (q, k, v, lists)), 0.125)])
    assert_attention_matches_numpy(out, q, k, v, lists, 0.125, rtol=1e-4, atol=1e-5)


def test_attention_rejects_bad_cell_lists(rng):
    q, k, v, lists = attention_arrays(rng)
    lists[1, 3] = 99  # no such cell
    with pytest.raises(ValueError, match="out of range"):
        cuda_run(lambda g: [g.attention(*map(g.constant, (q, k, v, lists)), 0.125)])
