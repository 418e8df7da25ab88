"""dense_attention on the CPU backend against
torch.nn.functional.scaled_dot_product_attention, at every CPU kernel level:
the head sizes of Stable Diffusion (40, 64, 80, 160), self- and
cross-attention with odd query and key counts (partial query tiles and key
blocks), f16 keys and values, permuted views as inputs, and the shape rule."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from quanta import _core


def torch_attention(q, k, v, scale):
    """float64 torch for numpy q [N, H, Tq, d], k, v [N, H, Tk, d]; returned as quanta lays it out: [N, Tq, H, dv]."""
    t = [torch.from_numpy(a.astype(np.float64)) for a in (q, k, v)]
    return F.scaled_dot_product_attention(*t, scale=scale).transpose(1, 2).numpy()


def run_attention(q, k, v, scale, threads=2):
    g = _core.Graph()
    (out,) = g.run([g.dense_attention(g.constant(q), g.constant(k), g.constant(v), scale)], {}, "cpu", threads)
    return out


@pytest.mark.parametrize("d", [40, 64, 80, 160])
@pytest.mark.parametrize("tq,tk", [(37, 37), (9, 77), (70, 5)])  # self, cross (CLIP's 77 tokens), short
def test_matches_torch(cpu_level, rng, d, tq, tk):
    q = rng.standard_normal((2, 3, tq, d), dtype=np.float32)
    k = rng.standard_normal((2, 3, tk, d), dtype=np.float32)
    v = rng.standard_normal((2, 3, tk, d), dtype=np.float32)
    scale = 1 / np.sqrt(d)
    ref = torch_attention(q, k, v, scale)
    got = run_attention(q, k, v, scale)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("d", [40, 160])
def test_f16_keys_and_values_and_a_longer_sequence(cpu_level, rng, d):
    q = rng.standard_normal((1, 2, 150, d), dtype=np.float32) * 2  # sharper softmax: large scores
    k = rng.standard_normal((1, 2, 333, d)).astype(np.float16)
    v = rng.standard_normal((1, 2, 333, d)).astype(np.float16)
    ref = torch_attention(q, k, v, 1 / np.sqrt(d))
    np.testing.assert_allclose(run_attention(q, k, v, 1 / np.sqrt(d)), ref, rtol=1e-5, atol=1e-5)


def test_value_size_may_differ_and_views_are_read_in_place(rng):
    # q, k, v as projections lay them out: [N, T, H, d], permuted to [N, H, T, d] by views.
    q = rng.standard_normal((2, 45, 4, 40), dtype=np.float32)
    k = rng.standard_normal((2, 50, 4, 40), dtype=np.float32)
    v = rng.standard_normal((2, 50, 4, 24), dtype=np.float32)
    g = _core.Graph()
    views = [g.permute(g.constant(a), 0, 2, 1, 3) for a in (q, k, v)]
    assert not views[0].contiguous
    (got,) = g.run([g.dense_attention(*views, 0.2)], {}, "cpu", 3)
    ref = torch_attention(*(a.transpose(0, 2, 1, 3) for a in (q, k, v)), 0.2)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_shape_rule_names_the_problem(rng):
    g = _core.Graph()
    q = g.constant(rng.standard_normal((1, 2, 5, 40), dtype=np.float32))
    with pytest.raises(ValueError, match="key size"):
        g.dense_attention(q, g.constant(np.zeros((1, 2, 7, 32), np.float32)), g.constant(np.zeros((1, 2, 7, 40), np.float32)), 1.0)
    with pytest.raises(ValueError, match="differ in length"):
        g.dense_attention(q, g.constant(np.zeros((1, 2, 7, 40), np.float32)), g.constant(np.zeros((1, 2, 6, 40), np.float32)), 1.0)
    with pytest.raises(ValueError, match="heads or batch"):
        g.dense_attention(q, g.constant(np.zeros((1, 1, 7, 40), np.float32)), g.constant(np.zeros((1, 1, 7, 40), np.float32)), 1.0)
