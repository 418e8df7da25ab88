"""quanta.convert / quanta.requantize and the `quanta convert` / `quanta quantize` commands.

Tiny random checkpoints of each architecture (tests/hf_checkpoints.py) are converted and run: at f32 the logits
equal transformers' fp32 logits, at q8_0 they stay within a small KL divergence, and the tokenizer read back
from the file encodes as the source folder's own tokenizer does. The type mixtures are checked against the
choices llama.cpp made in the real model files, and gguf-py reads what we write.
"""

import copy
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

import quanta
from quanta import _core
from quanta.converter.mixtures import FILE_TYPES, tensor_types

from conftest import sigint_default
from divergence import kld
from hf_checkpoints import ARCHS
from test_tokenizer import CORPUS


def run_ids(path, ids, kv_type="f32"):
    model = _core.LlmModel(quanta.GGUF(path)._file, n_threads=2)
    return _core.LlmContext(model, n_ctx=64, kv_type=kv_type).eval(ids, all_logits=True)


def hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "quanta", *map(str, args)], capture_output=True, text=True, **kw)


# ---- the four architectures against transformers -----------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_f32_logits_equal_transformers(arch, tiny_checkpoint, tiny_gguf, rng):
    hf, _ = tiny_checkpoint(arch)
    ids = rng.integers(0, hf.config.vocab_size, 24).tolist()  # longer than gemma3's 6-position window
    ref, ours = hf_logits(hf, ids), run_ids(tiny_gguf(arch, "f32"), ids)
    assert ref.std() > 1.0  # peaked enough that agreement means something
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize("rope", [
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 64, "rope_theta": 10000.0},
    {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
])
def test_rope_scaling_converts(rope, tmp_path, rng):
    # Llama 3's scaling becomes llama.cpp's rope_freqs tensor, linear scaling two metadata keys.
    from hf_checkpoints import write_checkpoint

    hf = write_checkpoint(tmp_path / "hf", "llama", max_position_embeddings=128, rope_parameters=rope)
    _assert_f32_conversion_matches(hf, tmp_path, rng)
    names = {t.name for t in quanta.GGUF(tmp_path / "m.gguf").tensors}
    assert ("rope_freqs.weight" in names) == (rope["rope_type"] == "llama3")


def test_gemma3_scales_rope_on_global_layers_only(tmp_path, rng):
    # Gemma 3 4B and up: linear scaling on the global layers, none on the sliding ones (base 10000).
    from hf_checkpoints import write_checkpoint

    rope = {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6}}
    hf = write_checkpoint(tmp_path / "hf", "gemma3", rope_parameters=rope)
    _assert_f32_conversion_matches(hf, tmp_path, rng)


def test_gemma3_multimodal_checkpoint_converts_its_language_model(tiny_checkpoint, tmp_path, rng):
    # Gemma 3 4B and up ship as Gemma3ForConditionalGeneration: the text model under language_model.*, a
    # vision tower and projector beside it, which the converter leaves out.
    import transformers as tf

    text = tiny_checkpoint("gemma3")[0].config
    vision = tf.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                   image_size=28, patch_size=14)
    torch.manual_seed(0)
    hf = tf.Gemma3ForConditionalGeneration(tf.Gemma3Config(text_config=text.to_dict(), vision_config=vision,
                                                           mm_tokens_per_image=1)).eval()
    with torch.no_grad():
        for p in hf.model.language_model.parameters():
            p.normal_(0, 0.15 if p.dim() == 2 else 0.3)
    hf.save_pretrained(str(tmp_path / "hf"))
    for f in tiny_checkpoint("gemma3")[1].glob("tokenizer*"):
        (tmp_path / "hf" / f.name).write_bytes(f.read_bytes())
    _assert_f32_conversion_matches(hf, tmp_path, rng)
    assert not any("vision" in t.name for t in quanta.GGUF(tmp_path / "m.gguf").tensors)


def _assert_f32_conversion_matches(hf, tmp_path, rng):
    quanta.convert(tmp_path / "hf", tmp_path / "m.gguf", type="f32", progress=False)
    ids = rng.integers(0, hf.config.get_text_config().vocab_size, 40).tolist()
    ref, ours = hf_logits(hf, ids), run_ids(tmp_path / "m.gguf", ids)
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize("arch", ARCHS)
def test_q8_0_stays_close_to_transformers(arch, tiny_checkpoint, tiny_gguf, rng):
    hf, _ = tiny_checkpoint(arch)
    ids = rng.integers(0, hf.config.vocab_size, 24).tolist()
    path = tiny_gguf(arch, "q8_0")
    assert {t.type for t in quanta.GGUF(path).tensors} == {"q8_0", "f32"}
    divergence = kld(hf_logits(hf, ids), run_ids(path, ids, kv_type="f16")).mean()
    print(f"{arch} q8_0 mean KLD {divergence:.2e}")
    assert divergence <= 2e-3


def _starts_like_a_space(text):
    return text[:1].isspace() or text.startswith("\u2581")


@pytest.mark.parametrize("arch", ARCHS)
def test_tokenizer_read_back_equals_the_source_tokenizer(arch, tiny_checkpoint, tiny_gguf):
    # llama and gemma3 have only a tokenizer.model, mistral a SentencePiece-style tokenizer.json, qwen2 a
    # byte-level tokenizer.json. A tokenizer.model's own tokenizer is SentencePiece, which puts its "▁" before
    # text that starts with a space too; transformers' LlamaTokenizer (Metaspace) does not, so for those texts
    # SentencePiece is the reference (test_tokenizer_model_checkpoints_encode_as_sentencepiece).
    from transformers import AutoTokenizer

    _, folder = tiny_checkpoint(arch)
    ref = AutoTokenizer.from_pretrained(str(folder))
    llm = quanta.LLM(tiny_gguf(arch, "f32"), n_ctx=64)
    from_model = (folder / "tokenizer.model").exists()
    assert from_model == (arch in ("llama", "gemma3"))
    for text in CORPUS:
        if from_model and _starts_like_a_space(text):
            continue
        ids = ref(text).input_ids
        assert llm.tokenize(text) == ids, text
        assert llm.detokenize(ids, special=True) == ref.decode(ids), text
        assert llm.detokenize(ids) == ref.decode(ids, skip_special_tokens=True), text
    template = quanta.GGUF(tiny_gguf(arch, "f32")).metadata.get("tokenizer.chat_template")
    assert template == ref.chat_template


LEADING_WHITESPACE = [" leading space", "  two leading spaces", "     five", " ", "   ", "\nleading newline",
                      "\n\ntwo newlines", "\tleading tab", "\t\ttwo tabs", " \t\n mixed", "\n leading", "\t x",
                      "several   spaces    inside", "trailing  ", " \u2581x", "\u2581\u2581x"]


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_tokenizer_model_checkpoints_encode_as_sentencepiece(arch, tiny_checkpoint, tiny_gguf):
    # The whole pipeline (quanta.convert, then the C++ tokenizer) against the tokenizer.model it came from,
    # on text starting with whitespace, where SentencePiece and transformers' LlamaTokenizer disagree.
    import sentencepiece

    _, folder = tiny_checkpoint(arch)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    path = tiny_gguf(arch, "f32")
    md = quanta.GGUF(path).metadata
    assert md["tokenizer.quanta.space_prefix"] == "sentencepiece"
    bos = [md["tokenizer.ggml.bos_token_id"]] if md.get("tokenizer.ggml.add_bos_token", True) else []
    assert bos == [sp.bos_id()]
    llm = quanta.LLM(path, n_ctx=64)
    for text in LEADING_WHITESPACE + [s for s in CORPUS if _starts_like_a_space(s)]:
        want = sp.encode(text)
        assert llm.tokenize(text, special=False) == bos + want, text
        assert llm.tokenize(text, add_bos=False) == want, text
        assert llm.detokenize(bos + want) == sp.decode(want), text


@pytest.mark.parametrize("arch", ARCHS)
def test_gguf_py_reads_the_file(arch, tiny_gguf):
    import gguf

    path = tiny_gguf(arch, "q8_0")
    ours = quanta.GGUF(path)
    reader = gguf.GGUFReader(str(path))
    field = reader.fields["general.architecture"]
    assert bytes(field.parts[field.data[0]]).decode() == ("llama" if arch == "mistral" else arch)
    assert [t.name for t in reader.tensors] == [t.name for t in ours.tensors]
    for t in reader.tensors:
        theirs = gguf.quants.dequantize(t.data, t.tensor_type).reshape(ours.tensor(t.name).shape)
        np.testing.assert_array_equal(theirs, ours.tensor(t.name))


# ---- type mixtures --------------------------------------------------------------------------------------------


def test_mixture_is_the_one_llama_cpp_chose_for_the_real_models(real_model_path):
    # Qwen's file lists its blocks in text order (blk.0, blk.1, blk.10, ...), Gemma's in numeric order: the
    # "more bits" layers follow the file order in both.
    f = quanta.GGUF(real_model_path)
    ours = tensor_types("q4_k_m", [(t.name, t.shape) for t in f.tensors])
    assert dict(zip([t.name for t in f.tensors], ours)) == {t.name: t.type for t in f.tensors}


@pytest.fixture(scope="module")
def wide_llama(tmp_path_factory):
    """A llama with 256-wide rows (so k-quants apply) and 4 layers (layers 2 and 3 get more bits in q4_k_m)."""
    from hf_checkpoints import write_checkpoint

    folder = tmp_path_factory.mktemp("wide") / "llama"
    return write_checkpoint(folder, "llama", hidden=256, ff=512, layers=4), folder


def test_every_file_type(wide_llama, tmp_path, rng):
    hf, folder = wide_llama
    ids = rng.integers(0, hf.config.vocab_size, 24).tolist()
    ref = hf_logits(hf, ids)
    divergence = {}
    for file_type in FILE_TYPES:
        path = tmp_path / f"{file_type}.gguf"
        quanta.convert(folder, path, type=file_type, progress=False)
        f = quanta.GGUF(path)
        types = {t.name: t.type for t in f.tensors}
        base = FILE_TYPES[file_type][0]
        assert f.metadata["general.file_type"] == FILE_TYPES[file_type][1]
        assert types["blk.0.attn_norm.weight"] == "f32" and types["blk.0.ffn_up.weight"] == base
        if base not in ("f32", "f16", "bf16"):
            assert types["output.weight"] == ("q8_0" if base == "q8_0" else "q6_k")
        if file_type == "q4_k_m":
            more = {n for n, t in types.items() if t == "q6_k"}
            assert more == {"output.weight", "blk.2.attn_v.weight", "blk.3.attn_v.weight",
                            "blk.2.ffn_down.weight", "blk.3.ffn_down.weight"}
        divergence[file_type] = kld(ref, run_ids(path, ids)).mean()
    print({k: f"{v:.1e}" for k, v in divergence.items()})
    # Fewer bits, more divergence; at equal bits the k-quants and the offset formats do better.
    d = divergence
    assert d["f32"] < 1e-9
    assert d["f16"] < d["bf16"] < d["q8_0"] < d["q6_k"] < d["q5_k_m"] < d["q4_k_m"] < d["q4_0"] < 0.5
    assert d["q5_k_m"] < d["q5_1"] < d["q5_0"] < d["q4_1"] < d["q4_0"]


def test_rows_that_do_not_fit_a_block_fall_back(tiny_gguf):
    # 64-wide rows: q4_k -> q5_0, q6_k (the output) -> q8_0; 96-wide ffn_down rows -> q5_0 as well.
    types = {t.name: t.type for t in quanta.GGUF(tiny_gguf("qwen2", "q4_k_m")).tensors}
    assert types["blk.0.ffn_up.weight"] == "q5_0" and types["output.weight"] == "q8_0"
    assert types["blk.1.attn_v.weight"] == "q8_0"  # a more-bits layer: q6_k -> q8_0


# ---- requantize -----------------------------------------------------------------------------------------------


def test_requantize_real_model(gemma_path, tmp_path):
    import gguf

    out = tmp_path / "gemma-q8_0.gguf"
    quanta.requantize(gemma_path, out, type="q8_0", progress=False)
    src, dst = quanta.GGUF(gemma_path), quanta.GGUF(out)
    changed = {"general.file_type"}
    assert {k: v for k, v in dst.metadata.items() if k not in changed} == \
        {k: v for k, v in src.metadata.items() if k not in changed}
    assert dst.metadata["general.file_type"] == FILE_TYPES["q8_0"][1]
    for t in src.tensors:
        new = next(d for d in dst.tensors if d.name == t.name)
        assert new.type == ("f32" if len(t.shape) == 1 else "q8_0")
        if new.type == t.type:
            assert np.array_equal(dst.tensor_bytes(t.name), src.tensor_bytes(t.name))
        else:  # decoded, then encoded as ggml does (gguf-py's q8_0 is bit-exact with it)
            expected = gguf.quants.quantize(src.tensor(t.name), gguf.GGMLQuantizationType.Q8_0)
            assert np.array_equal(dst.tensor_bytes(t.name), expected.reshape(dst.tensor_bytes(t.name).shape))
    ids = quanta.LLM(gemma_path).tokenize("The capital of France is Paris, and the capital of Italy is")
    before, after = run_ids(gemma_path, ids, "f16"), run_ids(out, ids, "f16")
    assert kld(before, after).mean() < 1e-2


def test_quantize_command(tiny_gguf, tmp_path):
    out = tmp_path / "q4_0.gguf"
    r = cli("quantize", tiny_gguf("llama"), out, "--type", "Q4_0", "--quiet")
    assert r.returncode == 0, r.stderr
    assert {t.type for t in quanta.GGUF(out).tensors} == {"f32", "q4_0", "q8_0"}  # output.weight: q6_k -> q8_0
    r = cli("quantize", out, out, "--type", "q8_0")
    assert r.returncode == 1 and "its own input" in r.stderr


# ---- checkpoint layouts ---------------------------------------------------------------------------------------


def test_sharded_and_bf16_checkpoints(tiny_checkpoint, tiny_gguf, tmp_path):
    hf, folder = tiny_checkpoint("llama")
    sharded = tmp_path / "sharded"
    hf.save_pretrained(str(sharded), max_shard_size="100KB")
    for f in folder.glob("tokenizer*"):
        (sharded / f.name).write_bytes(f.read_bytes())
    assert (sharded / "model.safetensors.index.json").exists() and len(list(sharded.glob("*.safetensors"))) > 2
    quanta.convert(sharded, tmp_path / "sharded.gguf", type="f32", progress=False)
    single, split = quanta.GGUF(tiny_gguf("llama")), quanta.GGUF(tmp_path / "sharded.gguf")
    assert [t.name for t in split.tensors] == [t.name for t in single.tensors]
    for t in single.tensors:
        assert np.array_equal(split.tensor_bytes(t.name), single.tensor_bytes(t.name))

    bf16 = tmp_path / "bf16"
    copy.deepcopy(hf).to(torch.bfloat16).save_pretrained(str(bf16))  # the session's model stays f32
    for f in folder.glob("tokenizer*"):
        (bf16 / f.name).write_bytes(f.read_bytes())
    quanta.convert(bf16, tmp_path / "bf16.gguf", type="bf16", progress=False)
    embed = hf.model.embed_tokens.weight.detach().to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(quanta.GGUF(tmp_path / "bf16.gguf").tensor("token_embd.weight"), embed)


# ---- errors, interruption, memory -----------------------------------------------------------------------------


def _copy_checkpoint(folder, dst, edit_config=None, edit_tensors=None):
    dst.mkdir()
    for f in folder.iterdir():
        if f.name != "model.safetensors":
            (dst / f.name).write_bytes(f.read_bytes())
    tensors = load_file(str(folder / "model.safetensors"))
    if edit_tensors:
        edit_tensors(tensors)
    save_file(tensors, str(dst / "model.safetensors"))
    if edit_config:
        config = json.loads((dst / "config.json").read_text())
        edit_config(config)
        (dst / "config.json").write_text(json.dumps(config))
    return dst


@pytest.mark.parametrize("name, edit_config, edit_tensors, error, match", [
    ("arch", lambda c: c.update(architectures=["BertModel"]), None, quanta.UnsupportedError,
     "unsupported architecture BertModel"),
    ("missing", None, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"), quanta.ModelError,
     "lacks tensor 'model.layers.1.mlp.up_proj.weight'"),
    ("dtype", None, lambda t: t.update({"model.norm.weight": t["model.norm.weight"].astype(np.int32)}),
     quanta.UnsupportedError, "'model.norm.weight' has dtype I32"),
    ("shape", None, lambda t: t.update({"model.norm.weight": np.ones(63, np.float32)}), quanta.ModelError,
     r"'model.norm.weight' has shape \[63\]"),
    ("extra", None, lambda t: t.update({"model.layers.0.mlp.experts.weight": np.ones((2, 2), np.float32)}),
     quanta.ModelError, "unknown to the converter"),
])
def test_bad_checkpoints_raise_one_clear_error(tiny_checkpoint, tmp_path, name, edit_config, edit_tensors, error,
                                              match):
    _, folder = tiny_checkpoint("llama")
    bad = _copy_checkpoint(folder, tmp_path / name, edit_config, edit_tensors)
    out = tmp_path / "out.gguf"
    with pytest.raises(error, match=match):
        quanta.convert(bad, out, type="q8_0", progress=False)
    r = cli("convert", bad, out)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("quanta: error:"), r.stderr
    assert not out.exists()


def test_threads_are_capped_and_checked(tiny_checkpoint, tmp_path):
    _, folder = tiny_checkpoint("llama")
    quanta.convert(folder, tmp_path / "one.gguf", type="q8_0", progress=False, n_threads=1)
    with pytest.warns(RuntimeWarning, match="999 threads asked for"):
        quanta.convert(folder, tmp_path / "many.gguf", type="q8_0", progress=False, n_threads=999)
    assert (tmp_path / "many.gguf").read_bytes() == (tmp_path / "one.gguf").read_bytes()
    with pytest.raises(ValueError, match="not -1"):
        quanta.convert(folder, tmp_path / "x.gguf", n_threads=-1)
    r = cli("quantize", tmp_path / "one.gguf", tmp_path / "q.gguf", "--type", "q4_0", "--threads", "999", "-q")
    assert r.returncode == 0 and r.stderr.startswith("quanta: warning: 999 threads asked for"), r.stderr
    assert not (tmp_path / "x.gguf").exists()


def test_corrupt_folders_and_types(tiny_checkpoint, tmp_path):
    _, folder = tiny_checkpoint("llama")
    with pytest.raises(quanta.FormatError, match="not a folder"):
        quanta.convert(tmp_path / "nothing", tmp_path / "o.gguf")
    with pytest.raises(ValueError, match="unknown type 'q3_k'"):
        quanta.convert(folder, tmp_path / "o.gguf", type="q3_k")
    with pytest.raises(ValueError, match="is a folder"):
        quanta.convert(folder, tmp_path, type="q8_0")
    truncated = _copy_checkpoint(folder, tmp_path / "truncated")
    data = (truncated / "model.safetensors").read_bytes()
    shard = truncated / "model.safetensors"
    for broken in (data[: len(data) // 2], data[:100], b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......", b""):
        shard.write_bytes(broken)
        with pytest.raises(quanta.FormatError, match="corrupt or truncated safetensors file") as e:
            quanta.convert(truncated, tmp_path / "o.gguf")
        assert str(shard) in str(e.value)
        r = cli("convert", truncated, tmp_path / "o.gguf")
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("quanta: error:"), r.stderr
    assert not (tmp_path / "o.gguf").exists()


def test_interrupted_conversion_leaves_no_file(tiny_checkpoint, tmp_path):
    _, folder = tiny_checkpoint("gemma3")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    calls = []

    def stop_midway(tensors_done, tensors, bytes_done, total):
        calls.append(tensors_done)
        if tensors_done == tensors // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        quanta.convert(folder, out_dir / "m.gguf", type="q8_0", progress=stop_midway)
    assert calls and list(out_dir.iterdir()) == []


@pytest.fixture(scope="module")
def big_checkpoint(tiny_checkpoint, tmp_path_factory):
    """A 200 MB f16 llama checkpoint of random weights (8 layers, 1024 wide), written without transformers."""
    _, tiny = tiny_checkpoint("llama")
    folder = tmp_path_factory.mktemp("big")
    config = json.loads((tiny / "config.json").read_text())
    config.update(hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=8,
                  num_key_value_heads=8, head_dim=128)
    (folder / "config.json").write_text(json.dumps(config))
    for f in tiny.glob("tokenizer*"):
        (folder / f.name).write_bytes(f.read_bytes())
    rng = np.random.default_rng(0)
    w = lambda *shape: rng.standard_normal(shape, np.float32).astype(np.float16)  # noqa: E731
    tensors = {"model.embed_tokens.weight": w(config["vocab_size"], 1024), "model.norm.weight": w(1024),
               "lm_head.weight": w(config["vocab_size"], 1024)}
    for i in range(8):
        p = f"model.layers.{i}."
        tensors.update({p + "input_layernorm.weight": w(1024), p + "post_attention_layernorm.weight": w(1024),
                        p + "mlp.gate_proj.weight": w(2816, 1024), p + "mlp.up_proj.weight": w(2816, 1024),
                        p + "mlp.down_proj.weight": w(1024, 2816)})
        tensors.update({p + f"self_attn.{x}_proj.weight": w(1024, 1024) for x in "qkvo"})
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


@pytest.fixture(scope="module")
def big_bf16_checkpoint(big_checkpoint, tmp_path_factory):
    """big_checkpoint stored as bfloat16, the dtype the safetensors package cannot hand to numpy."""
    from safetensors import safe_open
    from safetensors.torch import save_file as save_torch

    folder = tmp_path_factory.mktemp("big_bf16")
    for f in big_checkpoint.iterdir():
        if f.suffix != ".safetensors":
            (folder / f.name).write_bytes(f.read_bytes())
    with safe_open(str(big_checkpoint / "model.safetensors"), framework="pt") as f:
        save_torch({k: f.get_tensor(k).to(torch.bfloat16) for k in f.keys()}, str(folder / "model.safetensors"))
    return folder


def _peak_rss_mb(code):
    # VmHWM belongs to the new process image; ru_maxrss would also count the pytest process it was forked from.
    r = subprocess.run([sys.executable, "-c", code + "\nprint(open('/proc/self/status').read())"],
                       capture_output=True, text=True, check=True)
    return int(next(line.split()[1] for line in r.stdout.splitlines() if line.startswith("VmHWM:"))) / 1024


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_peak_memory_does_not_grow_with_the_model(dtype, request, tmp_path):
    # f16 rows come through the safetensors package (its handle closed per tensor), bf16 rows through quanta's
    # own mapping (madvise per tensor): either way, about one chunk of the model is in memory at a time.
    checkpoint = request.getfixturevalue("big_checkpoint" if dtype == "f16" else "big_bf16_checkpoint")
    size_mb = (checkpoint / "model.safetensors").stat().st_size / 2**20
    baseline = _peak_rss_mb("import quanta")
    peak = _peak_rss_mb(f"import quanta; quanta.convert({str(checkpoint)!r}, {str(tmp_path / 'o.gguf')!r}, "
                        "type='q8_0', progress=False)")
    print(f"{dtype} checkpoint {size_mb:.0f} MB: peak RSS {peak:.0f} MB, of which {peak - baseline:.0f} MB above "
          f"import")
    assert size_mb > 190
    assert peak - baseline < 0.3 * size_mb


def test_cli_progress_and_signals_leave_no_partial_file(big_checkpoint, tmp_path):
    out = tmp_path / "m.gguf"
    for sig in (signal.SIGINT, signal.SIGTERM):
        proc = subprocess.Popen([sys.executable, "-m", "quanta", "convert", str(big_checkpoint), str(out),
                                 "--type", "q4_k_m", "--threads", "1"], stderr=subprocess.PIPE, text=True,
                                preexec_fn=sigint_default)
        deadline = time.monotonic() + 60
        while not any(tmp_path.iterdir()) and time.monotonic() < deadline:  # the temporary file appears
            time.sleep(0.01)
        time.sleep(0.3)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert err.strip().endswith("quanta: interrupted")
        assert list(tmp_path.iterdir()) == []
    r = cli("convert", big_checkpoint, out, "--type", "q8_0")
    assert r.returncode == 0, r.stderr
    assert "tensors" in r.stderr and "MB" in r.stderr and r.stderr.strip().splitlines()[-1].startswith("converting:")
    assert sorted(os.listdir(tmp_path)) == ["m.gguf"]


def test_corrupt_safetensors_headers_raise_typed_errors(tiny_checkpoint, tmp_path):
    # Truncations and byte flips in the header and its length: a typed error or a consistent read, never a crash.
    from quanta.converter.safetensors_source import SafetensorsSource

    _, folder = tiny_checkpoint("qwen2")
    data = (folder / "model.safetensors").read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    rng = np.random.default_rng(7)
    cases = [data[:n] for n in (0, 5, 8, 100, header_end - 1, header_end + 10)]
    for _ in range(150):
        b = bytearray(data[: header_end + 4096])
        for i in rng.integers(0, header_end, rng.integers(1, 4)):
            b[i] = rng.integers(0, 256)
        cases.append(bytes(b) + data[header_end + 4096:])
    outcomes = {"error": 0, "read": 0}
    for i, case in enumerate(cases):
        d = tmp_path / str(i)
        d.mkdir()
        (d / "model.safetensors").write_bytes(case)
        try:
            source = SafetensorsSource(d)
            for name, t in source.tensors.items():
                assert source.rows(name, 0, t.n_rows).shape == (t.n_rows, t.row_length)
            source.close()
            outcomes["read"] += 1
        except (quanta.FormatError, quanta.UnsupportedError):
            outcomes["error"] += 1
    assert outcomes["error"] > 50, outcomes


def test_row_ranges_of_every_dtype_and_rank(tmp_path, rng):
    # SafetensorsSource.rows against the whole tensors read by the safetensors package (torch for bf16): row
    # ranges of the 2-D view that start and stop inside the first dimension, of 0- to 3-D tensors.
    from safetensors.torch import load_file as load_torch, save_file as save_torch

    from quanta.converter.safetensors_source import SafetensorsSource

    tensors = {}
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        for shape in ((), (7,), (5, 6), (3, 5, 4)):
            tensors[f"{dtype}-{len(shape)}"] = torch.from_numpy(rng.standard_normal(shape)).to(dtype)
    save_torch(tensors, str(tmp_path / "model.safetensors"))
    want = {k: v.float().numpy().reshape(-1, v.shape[-1] if v.dim() else 1)
            for k, v in load_torch(str(tmp_path / "model.safetensors")).items()}
    source = SafetensorsSource(tmp_path)
    assert sorted(source.tensors) == sorted(tensors)
    for name, t in source.tensors.items():
        assert (t.n_rows, t.row_length) == want[name].shape
        for a in range(t.n_rows):
            for b in range(a + 1, t.n_rows + 1):
                got = source.rows(name, a, b)
                assert got.dtype == np.float32 and got.flags.writeable
                np.testing.assert_array_equal(got, want[name][a:b])
        source.release(name)
        np.testing.assert_array_equal(source.rows(name, 0, t.n_rows), want[name])  # readable after a release
    source.close()
