"""KL divergence of logits from a reference's, shared by the model tests and bench/llm_fidelity.py."""

import numpy as np


def log_softmax(x):
    x = x.astype(np.float64) - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def kld(ref_logits, logits):
    """Per-position KL(ref || ours) over the last axis."""
    lp, lq = log_softmax(ref_logits), log_softmax(logits)
    return (np.exp(lp) * (lp - lq)).sum(-1)
