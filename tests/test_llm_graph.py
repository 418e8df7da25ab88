"""The transformer graphs against transformers on tiny random checkpoints of
each architecture, converted to f32 GGUF by quanta.convert (f32 weights and
f32 KV cache, so only float rounding separates them), and the model loader's
errors."""

import numpy as np
import pytest
import torch

import quanta
from quanta import _core

from divergence import kld
from hf_checkpoints import ARCHS


@pytest.fixture(scope="module", params=ARCHS)
def tiny(request, tiny_checkpoint, tiny_gguf):
    arch = request.param
    return arch, tiny_checkpoint(arch)[0], tiny_gguf(arch)


def vocab(hf):
    return hf.config.vocab_size


def load(path, **ctx):
    model = _core.LlmModel(quanta.GGUF(path)._file, n_threads=2)
    return model, _core.LlmContext(model, **{"n_ctx": 64, "kv_type": "f32", **ctx})


def hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def test_logits_match_transformers(tiny, rng):
    arch, hf, path = tiny
    ids = rng.integers(0, vocab(hf), 24).tolist()  # longer than gemma3's 6-position window
    ref = hf_logits(hf, ids)
    _, ctx = load(path)
    ours = ctx.eval(ids, all_logits=True)
    assert ref.std() > 1.0  # peaked enough that agreement means something
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-3 * np.abs(ref).max())
    assert kld(ref, ours).max() < 1e-6
    assert (ours.argmax(-1) == ref.argmax(-1)).all()
    _, last_only = load(path)  # the graph that computes the last layer's feed-forward and logits for one row
    np.testing.assert_allclose(last_only.eval(ids)[0], ours[-1], rtol=0, atol=1e-5 * np.abs(ref).max())


def test_incremental_decode_matches_one_batch(tiny, rng):
    # Prefill in chunks (n_batch = 5) then one token at a time: the same logits as one batch.
    _, hf, path = tiny
    ids = rng.integers(0, vocab(hf), 20).tolist()
    _, whole = load(path)
    ref = whole.eval(ids, all_logits=True)
    _, ctx = load(path, n_batch=5)
    parts = [ctx.eval(ids[:12], all_logits=True)] + [ctx.eval([t]) for t in ids[12:]]
    np.testing.assert_allclose(np.concatenate(parts), ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_prefix_reuse_matches_fresh_evaluation(tiny, rng):
    _, hf, path = tiny
    a = rng.integers(0, vocab(hf), 16).tolist()
    b = a[:10] + rng.integers(0, vocab(hf), 4).tolist()
    _, ctx = load(path)
    ctx.eval_prompt(a)
    got = ctx.eval_prompt(b)  # keeps a's first 10 positions, evaluates 4
    assert ctx.tokens == b
    _, fresh = load(path)
    np.testing.assert_allclose(got, fresh.eval(b)[0], rtol=0, atol=1e-4 * np.abs(got).max())


def test_context_overflow_raises_and_leaves_the_cache_intact(tiny, rng):
    _, hf, path = tiny
    _, ctx = load(path, n_ctx=16)
    ids = rng.integers(0, vocab(hf), 12).tolist()
    before = ctx.eval(ids)
    with pytest.raises(quanta.ContextOverflowError, match="n_ctx = 16"):
        ctx.eval(rng.integers(0, vocab(hf), 5).tolist())
    assert ctx.tokens == ids
    ctx.truncate(11)
    np.testing.assert_allclose(ctx.eval(ids[11:]), before, rtol=0, atol=1e-4 * np.abs(before).max())


@pytest.mark.parametrize("bad", [-1, "n_vocab", 2**31 - 1])
def test_token_ids_out_of_range_raise(tiny, bad):
    _, hf, path = tiny
    _, ctx = load(path)
    with pytest.raises(ValueError, match="out of range"):
        ctx.eval([1, vocab(hf) if bad == "n_vocab" else bad])
    assert ctx.tokens == []


def test_config_comes_from_metadata(tiny):
    arch, hf, path = tiny
    model, _ = load(path)
    c = model.config
    gguf_arch = "llama" if arch == "mistral" else arch  # llama.cpp runs mistral as llama
    assert (c["arch"], c["n_vocab"], c["n_layer"], c["n_embd"]) == (gguf_arch, vocab(hf), hf.config.num_hidden_layers,
                                                                    64)
    assert (c["n_head"], c["n_head_kv"]) == (hf.config.num_attention_heads, hf.config.num_key_value_heads)
    if arch == "gemma3":
        assert (c["sliding_window"], c["swa_pattern"], c["rope_base_swa"]) == (6, 6, 10000.0)


# ---- errors --------------------------------------------------------------------------------------


def _rewrite(src, dst, drop=(), replace=None):
    """A copy of GGUF `src` without the tensors in `drop` and with `replace`'s f32 arrays swapped in."""
    f = quanta.GGUF(src)
    replace = replace or {}
    with quanta.GGUFWriter(dst) as w:
        for key, value in f.metadata.items():
            w.add_metadata(key, value, type=f.metadata_types[key])
        for t in f.tensors:
            if t.name in replace:
                w.add_tensor(t.name, replace[t.name])
            elif t.name not in drop:
                w.add_tensor(t.name, f.tensor_bytes(t.name), type=t.type, shape=t.shape)
    return dst


def test_missing_tensor_is_named(tiny_gguf, tmp_path):
    path = _rewrite(tiny_gguf("llama"), tmp_path / "m.gguf", drop=("blk.1.ffn_up.weight",))
    with pytest.raises(quanta.ModelError, match="missing tensor 'blk.1.ffn_up.weight'"):
        quanta.LLM(path)


def test_wrong_shape_is_named(tiny_gguf, tmp_path):
    path = _rewrite(tiny_gguf("llama"), tmp_path / "m.gguf",
                    replace={"blk.0.attn_k.weight": np.zeros((64, 64), np.float32)})
    with pytest.raises(quanta.ModelError, match="'blk.0.attn_k.weight' has shape"):
        quanta.LLM(path)


def test_unknown_architecture_is_named(tmp_path):
    path = tmp_path / "m.gguf"
    with quanta.GGUFWriter(path) as w:
        w.add_metadata("general.architecture", "mamba9")
        w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    with pytest.raises(quanta.ModelError, match="unsupported architecture 'mamba9'"):
        quanta.LLM(path)


def test_missing_hyperparameter_is_named(tmp_path):
    path = tmp_path / "m.gguf"
    with quanta.GGUFWriter(path) as w:
        w.add_metadata("general.architecture", "qwen2")
        w.add_metadata("qwen2.embedding_length", 64, type="u32")
    with pytest.raises(quanta.ModelError, match="qwen2.block_count"):
        quanta.LLM(path)
