"""The data sets the k-quant quantizers are judged on (shared by
tests/test_kquant_rmse.py and bench/kquant_rmse.py): synthetic rows from fixed
seeds and real weight rows from the Qwen model."""

import numpy as np

K_TYPES = ["q4_k", "q5_k", "q6_k"]


def datasets(qwen_path=None):
    if qwen_path is None:
        from quanta import fetch

        qwen_path = fetch.fetch("qwen2.5-coder-0.5b-instruct-q4_k_m", quiet=True)
    import quanta

    rng = np.random.default_rng(20261123)
    f = quanta.GGUF(qwen_path)
    return {
        "gaussian": rng.standard_normal((256, 1024)).astype(np.float32),
        "heavy_tailed": (rng.standard_t(3, (256, 1024)) * 0.02).astype(np.float32),
        "uniform": rng.uniform(-1, 1, (256, 1024)).astype(np.float32),
        "outliers": (rng.standard_normal((256, 1024)) * np.where(rng.random((256, 1024)) < 0.01, 30.0, 1.0))
        .astype(np.float32),
        "real_attn_q": np.ascontiguousarray(f.tensor("blk.2.attn_q.weight")[:256, :768]),
        "real_ffn_down": np.ascontiguousarray(f.tensor("blk.7.ffn_down.weight")[:, :4608]),
        "real_embedding": np.ascontiguousarray(f.tensor("token_embd.weight")[1000:1256, :768]),
    }
