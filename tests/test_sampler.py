"""The sampler against a numpy model of llama.cpp's chain: penalties, top-k,
top-p (renormalised after top-k), min-p, temperature."""

import numpy as np
import pytest

from quanta import _core


def reference(logits, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, history=(), repeat_penalty=1.0,
              presence_penalty=0.0, frequency_penalty=0.0):
    """{token: probability} the chain should leave."""
    x = logits.astype(np.float64).copy()
    ids, counts = np.unique(np.asarray(history, dtype=np.int64), return_counts=True)
    for t, n in zip(ids, counts):
        x[t] = x[t] / repeat_penalty if x[t] > 0 else x[t] * repeat_penalty
        x[t] -= n * frequency_penalty + presence_penalty
    if temperature <= 0:
        return {int(np.argmax(x)): 1.0}
    order = np.argsort(-x, kind="stable")
    if 0 < top_k < len(x):
        order = order[:top_k]
    if top_p < 1:
        p = np.exp(x[order] - x[order].max())
        cum = np.cumsum(p / p.sum())
        order = order[: int(np.searchsorted(cum, top_p) + 1)]
    if min_p > 0:
        order = order[x[order] >= x[order].max() + np.log(min_p)]
    w = np.exp((x[order] - x[order].max()) / temperature)
    return dict(zip(order.tolist(), (w / w.sum()).tolist()))


def distribution(sampler, logits):
    ids, probs = sampler.distribution(logits)
    return dict(zip(ids.tolist(), probs.tolist()))


def assert_same_distribution(got, want):
    assert set(got) == set(want)
    for t in want:
        assert got[t] == pytest.approx(want[t], rel=1e-6, abs=1e-9)  # logits are float32 in the chain


@pytest.mark.parametrize("params", [
    dict(),
    dict(top_k=0, top_p=0.9, min_p=0.0),
    dict(top_k=5, top_p=1.0, min_p=0.0, temperature=1.5),
    dict(top_k=0, top_p=1.0, min_p=0.2, temperature=0.5),
    dict(top_k=1000, top_p=0.5, min_p=0.01),
    dict(top_k=0, top_p=0.999, min_p=0.0),  # a long tail: the growing partial sort must reach it
])
def test_chain_matches_reference(rng, params):
    logits = (rng.standard_normal(5000) * 3).astype(np.float32)
    s = _core.Sampler(**params)
    assert_same_distribution(distribution(s, logits), reference(logits, **params))


def test_penalties_match_reference(rng):
    logits = (rng.standard_normal(300) * 2).astype(np.float32)
    history = [3, 3, 7, 10, 10, 10, 299]
    params = dict(repeat_penalty=1.3, presence_penalty=0.4, frequency_penalty=0.25, top_k=0, top_p=1.0, min_p=0.0)
    s = _core.Sampler(**params)
    for t in history:
        s.accept(t)
    assert_same_distribution(distribution(s, logits), reference(logits, history=history, **params))


def test_penalty_window_forgets_old_tokens(rng):
    logits = np.ones(50, dtype=np.float32)
    logits[5] = 3.0  # 0.3 once penalised
    s = _core.Sampler(temperature=0, repeat_penalty=10.0, penalty_last_n=2)
    s.accept(5)
    assert s.sample(logits) != 5
    s.accept(1)
    s.accept(2)  # 5 has left the window of the last 2 tokens
    assert s.sample(logits) == 5


def test_greedy_is_argmax_and_ignores_seed(rng):
    logits = rng.standard_normal(1000).astype(np.float32)
    for seed in (0, 1, 99):
        assert _core.Sampler(temperature=0, seed=seed).sample(logits) == int(np.argmax(logits))


def test_seed_reproducibility(rng):
    logits = rng.standard_normal(2000).astype(np.float32)
    draws = lambda seed: [_sample_n(_core.Sampler(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=seed),  # noqa: E731
                                    logits, 50)]
    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


def _sample_n(s, logits, n):
    return [s.sample(logits) for _ in range(n)]


def test_draws_follow_the_distribution(rng):
    # 20000 draws over 6 tokens: every frequency within 5 standard errors of its probability.
    logits = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0], dtype=np.float32)
    s = _core.Sampler(temperature=0.9, top_k=0, top_p=1.0, min_p=0.0, seed=123)
    want = reference(logits, temperature=0.9, top_k=0, top_p=1.0, min_p=0.0)
    n = 20000
    counts = np.bincount(_sample_n(s, logits, n), minlength=6) / n
    for t, p in want.items():
        assert abs(counts[t] - p) < 5 * np.sqrt(p * (1 - p) / n) + 1e-9, (t, counts[t], p)


def test_nan_logits_are_never_drawn(rng):
    logits = rng.standard_normal(100).astype(np.float32)
    logits[::2] = np.nan
    s = _core.Sampler(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=1)
    assert all(t % 2 == 1 for t in _sample_n(s, logits, 200))


@pytest.mark.parametrize("bad", [dict(top_p=0.0), dict(min_p=1.5), dict(repeat_penalty=0.0),
                                 dict(temperature=float("nan")), dict(penalty_last_n=-1)])
def test_bad_parameters_raise(bad):
    with pytest.raises(ValueError):
        _core.Sampler(**bad)


def test_empty_logits_raise():
    with pytest.raises(ValueError):
        _core.Sampler().sample(np.zeros(0, dtype=np.float32))
