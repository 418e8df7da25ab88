"""Each op the CUDA backend has a kernel for, against the CPU backend on the same
random data (tests/test_ops.py holds the CPU backend to numpy), with the shapes
the LLM graphs give them and the edge cases the CPU tests have: broadcasts,
a fully masked softmax row, rope at positions in the thousands. Marked cuda:
skipped only where no GPU is present (`pytest -m cuda` on a GPU machine)."""

import numpy as np
import pytest

from quanta import _core

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
        return [g.add(g.mul(g.silu(h), g.constant(up)), g.constant(x))]

    assert_match(build)
