"""Every op of the op table on the CPU backend, at every kernel level, against
the reference backend (the op table's scalar references, which test_ops.py
checks against numpy); the fused attention op against numpy; the registry's
errors. A new op fails test_every_op_is_covered until it has a case here."""

import numpy as np
import pytest

import quanta
from quanta import _core


def quantized(rng, shape, qtype):
    return quanta.quantize(rng.standard_normal(shape, dtype=np.float32), qtype)


def attention_arrays(rng, kv_type="f16", heads=4, kv_heads=2, hd=64, cells=40, tokens=3):
    """q, k, v (numpy order: [tokens, heads, hd], [kv_heads, cells, hd]) and per-token cell lists:
    token t sees a shuffled subset of the cells, in that order."""
    dtype = {"f16": np.float16, "f32": np.float32}[kv_type]
    q = rng.standard_normal((tokens, heads, hd), dtype=np.float32)
    k = rng.standard_normal((kv_heads, cells, hd)).astype(dtype)
    v = rng.standard_normal((kv_heads, cells, hd)).astype(dtype)
    lists = np.zeros((tokens, cells + 1), dtype=np.int32)
    for t in range(tokens):
        chosen = rng.permutation(cells)[: 5 + 7 * t]
        lists[t, 0] = len(chosen)
        lists[t, 1 : 1 + len(chosen)] = chosen
    return q, k, v, lists


def cases(g, rng):
    """One node of every op (name -> node), on shapes that are not multiples of the vector widths."""
    x = g.constant(rng.standard_normal((3, 5, 96), dtype=np.float32))
    row = g.constant(rng.standard_normal((1, 1, 96), dtype=np.float32))
    m = g.constant(rng.standard_normal((7, 256), dtype=np.float32))
    w16 = g.constant(rng.standard_normal((9, 256)).astype(np.float16))
    wq = g.constant(quantized(rng, (11, 256), "q4_k"), "q4_k")
    pos = g.constant(np.array([0, 3, 9, 27, 81], dtype=np.int32))
    mask = g.constant(np.where(rng.random((5, 96)) < 0.2, -np.inf, 0).astype(np.float32))
    cache = g.constant(np.zeros((10, 96), dtype=np.float16))
    image = g.constant(rng.standard_normal((2, 12, 5, 7), dtype=np.float32) + 3)  # N, C, H, W: ggml [7, 5, 12, 2]
    timesteps = g.constant(np.array([0, 1, 37.5, 999], dtype=np.float32))
    out = {
        "copy": g.copy(x, "f16"),
        "add": g.add(x, row),
        "mul": g.mul(x, row),
        "scale": g.scale(x, 0.3),
        "matmul": g.matmul(wq, m),
        "rms_norm": g.rms_norm(x, 1e-6),
        "rope": g.rope(g.reshape(x, [5, 3, 96]), pos, 64, "neox", 10000.0),
        "softmax": g.softmax(g.reshape(x, [3, 5, 96]), mask, 0.5),
        "silu": g.silu(x),
        "gelu": g.gelu(x),
        "glu": g.glu(x, g.scale(x, -0.7), "silu"),
        "get_rows": g.get_rows(w16, g.constant(np.array([8, 0, 3], dtype=np.int32))),
        "set_rows": g.set_rows(cache, g.view(g.scale(x, 2.0), [3, 96], [96 * 4], 0),
                               g.constant(np.array([7, 2, 4], dtype=np.int32))),
        "concat": g.concat(x, x, 1),
        "attention": g.attention(*map(g.constant, attention_arrays(rng)), 0.125),
        "group_norm": g.group_norm(image, 4, 1e-5),
        # the moments of a window of an image normalized by given moments ([N=2, groups=4, (mean, var)])
        "group_moments": g.group_moments(
            g.group_norm(image, 4, 1e-5, g.constant(np.abs(rng.standard_normal((2, 4, 2), dtype=np.float32)))),
            g.constant(np.array([1, 0, 3, 2], dtype=np.int32)), 4, 2),
        "layer_norm": g.layer_norm(x, 1e-5),
        "upsample": g.upsample(image, 2),
        "gelu_erf": g.gelu_erf(x),
        "quick_gelu": g.quick_gelu(x),
        "geglu": g.geglu(x),
        "timestep_embedding": g.timestep_embedding(timesteps, 37),
        # Images [N=2, Cin=5, H=7, W=9]: 3x3 stride 1 (f16 kernels, bias) into 3x3 stride 2 (f32).
        "conv2d": g.conv2d(g.conv2d(g.constant(rng.standard_normal((2, 5, 7, 9), dtype=np.float32)),
                                    g.constant(rng.standard_normal((6, 5, 3, 3)).astype(np.float16)),
                                    g.constant(rng.standard_normal(6, dtype=np.float32)), 1, 1),
                           g.constant(rng.standard_normal((4, 6, 3, 3), dtype=np.float32)), None, 2, 1),
        # q [N=2, H=3, Tq=11, d=40] over f16 keys and values [2, 3, 37, 40].
        "dense_attention": g.dense_attention(g.constant(rng.standard_normal((2, 3, 11, 40), dtype=np.float32)),
                                             *(g.constant(rng.standard_normal((2, 3, 37, 40)).astype(np.float16))
                                               for _ in range(2)), 0.16),
    }
    return out


def run_all(device, rng_seed):
    rng = np.random.default_rng(rng_seed)
    g = _core.Graph()
    nodes = cases(g, rng)
    return dict(zip(nodes, g.run(list(nodes.values()), {}, device, 2)))


def test_every_op_is_covered():
    with_kernels = [n for n in _core.op_names() if n not in ("none", "view")]
    assert sorted(with_kernels) == sorted(run_all("reference", 1))


def test_cpu_matches_reference_at_every_level(cpu_level):
    ref = run_all("reference", 1)
    got = run_all("cpu", 1)
    for name in ref:
        # matmul: the CPU quantizes activations to 8 bits (test_ops.py checks it exactly against that
        # arithmetic), the reference does not: errors of about 1% of the largest output.
        tol = dict(rtol=0, atol=0.02 * np.abs(ref[name]).max()) if name == "matmul" else dict(rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got[name].astype(np.float32), ref[name].astype(np.float32), err_msg=name, **tol)


def assert_attention_matches_numpy(out, q, k, v, lists, scale, **tol):
    """out ([tokens, heads, hd]) against softmax(q . k * scale) . v over each token's listed cells, in float64."""
    group = q.shape[1] // k.shape[0]
    for t in range(q.shape[0]):
        seen = lists[t, 1 : 1 + lists[t, 0]]
        for h in range(q.shape[1]):
            kv = k[h // group, seen].astype(np.float64), v[h // group, seen].astype(np.float64)
            s_ = kv[0] @ q[t, h] * scale
            p = np.exp(s_ - s_.max())
            np.testing.assert_allclose(out[t, h], p @ kv[1] / p.sum(), **tol)


@pytest.mark.parametrize("kv_type", ["f16", "f32"])
def test_attention_matches_numpy(rng, kv_type, cpu_level):
    q, k, v, lists = attention_arrays(rng, kv_type=kv_type)
    g = _core.Graph()
    (out,) = g.run([g.attention(*map(g.constant, (q, k, v, lists)), 0.125)], {}, "cpu", 2)
    assert_attention_matches_numpy(out, q, k, v, lists, 0.125, rtol=1e-5, atol=1e-6)


def test_attention_rejects_bad_cell_lists(rng):
    q, k, v, lists = attention_arrays(rng)
    lists[1, 3] = 99  # no such cell
    g = _core.Graph()
    with pytest.raises(ValueError, match="out of range"):
        g.run([g.attention(*map(g.constant, (q, k, v, lists)), 0.125)], {}, "cpu", 2)
    g = _core.Graph()
    with pytest.raises(ValueError, match="query heads are not a multiple"):
        g.attention(*map(g.constant, (q[:, :3], k, v, lists)), 0.125)


def test_registry_names_its_devices():
    assert _core.backends() == ["cpu", "cuda", "reference"]
    g = _core.Graph()
    y = g.silu(g.constant(np.ones((2, 4), dtype=np.float32)))
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        g.run([y], {}, "tpu")
