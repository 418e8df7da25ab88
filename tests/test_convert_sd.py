"""quanta.convert on diffusers Stable Diffusion pipeline folders (python/quanta/converter/sd_convert.py).

The tiny "sd1" and "sd2" pipelines (tests/sd_pipelines.py) are converted and read back with gguf-py, an
independent reader: the f32 file's tensors, reshaped to numpy order and passed through diffusers' own
LDM-to-diffusers converters (diffusers.loaders.single_file_utils), give back every key and every value of the
pipeline's state dicts exactly; the metadata equals the pipeline's configs and tokenizer; the quantized files
store the types the README's contract gives each tensor. Bad folders raise typed errors, and the CLI prints one line.
"""

import json
import pickle
import re
import shutil
import subprocess
import sys

import gguf
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

import quanta
from clip_vocab import merges
from sd_pipelines import CONFIGS, KINDS

T = gguf.GGMLQuantizationType


def cli(*args):
    return subprocess.run([sys.executable, "-m", "quanta", *map(str, args)], capture_output=True, text=True)


def read_tensors(path):
    """{name: (numpy-order array as torch, ggml type)} of a GGUF file, read by gguf-py (f32/f16 data only)."""
    out = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        data = np.array(t.data).reshape(shape) if t.tensor_type in (T.F32, T.F16) else None
        out[t.name] = (data, t.tensor_type, shape)
    return out


def fields(path):
    return {f.name: f for f in gguf.GGUFReader(str(path)).fields.values()}


# ---- names and values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_f32_tensors_map_back_to_the_diffusers_state_dicts_exactly(kind, sd_diffusers, sd_gguf):
    from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint,
                                                     convert_ldm_vae_checkpoint)

    pipe = sd_diffusers(kind)
    tensors = read_tensors(sd_gguf(kind, "f32"))
    assert {t for _, t, _ in tensors.values()} == {T.F32}
    prefixes = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer.text_model.")
    assert all(name.startswith(prefixes) for name in tensors)
    checkpoint = {name: torch.from_numpy(data) for name, (data, _, _) in tensors.items()}
    unet = convert_ldm_unet_checkpoint(checkpoint, dict(pipe.unet.config))
    vae = convert_ldm_vae_checkpoint(checkpoint, dict(pipe.vae.config))
    clip = {k.removeprefix("text_model."): v for k, v in convert_ldm_clip_checkpoint(checkpoint).items()}
    total = 0
    for converted, model in ((unet, pipe.unet), (vae, pipe.vae), (clip, pipe.text_encoder)):
        state = model.state_dict()
        assert sorted(converted) == sorted(state)
        for key, value in state.items():
            assert converted[key].shape == value.shape, key
            assert torch.equal(converted[key], value), key
        total += len(state)
    assert total == len(tensors)  # no tensor of the file was left unread by diffusers' converters


@pytest.mark.parametrize("kind", KINDS)
def test_layouts_are_stable_diffusion_cpp_s(kind, sd_gguf):
    tensors = read_tensors(sd_gguf(kind, "f32"))
    # GGUF dims are PyTorch's shape reversed: [KW, KH, Cin, Cout] for a convolution.
    reader = {t.name: t for t in gguf.GGUFReader(str(sd_gguf(kind, "f32"))).tensors}
    c0 = CONFIGS[kind]["unet"]["block_out_channels"][0]
    assert reader["model.diffusion_model.input_blocks.0.0.weight"].shape.tolist() == [3, 3, 4, c0]
    vae_c = CONFIGS[kind]["vae"]["block_out_channels"][-1]
    for side in ("encoder", "decoder"):
        for p in ("q", "k", "v", "proj_out"):
            assert tensors[f"first_stage_model.{side}.mid.attn_1.{p}.weight"][2] == (vae_c, vae_c, 1, 1)
    # decoder.up.0 is the full-resolution level: the VAE's first channel count
    vae_c0 = CONFIGS[kind]["vae"]["block_out_channels"][0]
    assert tensors["first_stage_model.decoder.up.0.block.0.conv1.weight"][2][0] == vae_c0
    proj_in = tensors["model.diffusion_model.input_blocks.1.1.proj_in.weight"][2]
    assert proj_in == ((c0, c0) if kind == "sd2" else (c0, c0, 1, 1))  # SD2 linear, SD1 a 1x1 conv
    assert "cond_stage_model.transformer.text_model.embeddings.position_ids" not in tensors


# ---- metadata --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_metadata_follows_the_pipeline_configs(kind, sd_diffusers, sd_pipeline, sd_gguf):
    pipe = sd_diffusers(kind)
    f = quanta.GGUF(sd_gguf(kind, "f32"))
    md, types = f.metadata, f.metadata_types
    cfg = CONFIGS[kind]
    heads = cfg["unet"]["attention_head_dim"]
    expected = {
        "general.architecture": ("stable-diffusion", "string"),
        "general.name": (kind, "string"),
        "general.file_type": (0, "u32"),
        "sd.version": (kind, "string"),
        "sd.prediction_type": (pipe.scheduler.config.prediction_type, "string"),
        "sd.scheduler.steps_offset": (1, "u32"),
        "sd.unet.head_count": (list(heads) if isinstance(heads, tuple) else [heads] * 3, "array[i32]"),
        "sd.unet.norm_groups": (pipe.unet.config.norm_num_groups, "u32"),
        "sd.vae.norm_groups": (pipe.vae.config.norm_num_groups, "u32"),
        "sd.clip.head_count": (pipe.text_encoder.config.num_attention_heads, "u32"),
        "sd.clip.hidden_act": (pipe.text_encoder.config.hidden_act, "string"),
        "tokenizer.ggml.model": ("clip", "string"),
        "tokenizer.ggml.bos_token_id": (pipe.tokenizer.bos_token_id, "u32"),
        "tokenizer.ggml.eos_token_id": (pipe.tokenizer.eos_token_id, "u32"),
        "tokenizer.ggml.padding_token_id": (pipe.tokenizer.pad_token_id, "u32"),
    }
    for key, (value, type) in expected.items():
        assert (md[key], types[key]) == (value, type), key
    assert md["sd.prediction_type"] == ("epsilon" if kind == "sd1" else "v_prediction")
    assert md["tokenizer.ggml.padding_token_id"] == (49407 if kind == "sd1" else 0)  # <|endoftext|> or "!"
    assert types["sd.latent_scale"] == types["sd.clip.layer_norm_eps"] == "f32"
    assert md["sd.latent_scale"] == np.float32(pipe.vae.config.scaling_factor)
    assert md["sd.clip.layer_norm_eps"] == np.float32(pipe.text_encoder.config.layer_norm_eps)
    # betas: diffusers' own (torch's float32 linspace may differ from the correctly rounded value by an ulp)
    assert types["sd.scheduler.betas"] == "array[f32]"
    np.testing.assert_allclose(np.array(md["sd.scheduler.betas"], np.float32), pipe.scheduler.betas.numpy(),
                               rtol=1e-6, atol=0)
    # the tokenizer: ids in vocab order, the merges without merges.txt's #version line
    vocab = pipe.tokenizer.get_vocab()
    assert md["tokenizer.ggml.tokens"] == sorted(vocab, key=vocab.get)
    assert md["tokenizer.ggml.merges"] == [" ".join(m) for m in merges()]
    # sd1's tokenizer is vocab.json + merges.txt, sd2's tokenizer.json (transformers 5)
    files = sorted(p.name for p in (sd_pipeline(kind) / "tokenizer").iterdir())
    assert ("merges.txt" in files) == (kind == "sd1") and ("tokenizer.json" in files) == (kind == "sd2")
    # gguf-py reads the same
    g = fields(sd_gguf(kind, "f32"))
    assert g["general.architecture"].contents() == "stable-diffusion"
    assert g["sd.unet.head_count"].contents() == md["sd.unet.head_count"]
    assert g["sd.unet.head_count"].types == [gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32]


# ---- types -----------------------------------------------------------------------------------------------------

_QUANTIZED = re.compile(r"(transformer_blocks\.\d+\.(attn[12]\.to_(q|k|v|out\.0)|ff\.net\.(0\.proj|2))|"
                        r"time_embed\.[02]|proj_in|proj_out|self_attn\.(q|k|v|out)_proj|mlp\.fc[12])\.weight$")


def expected_type(file_type, name, shape):
    """The README's contract for tensor `name` of numpy shape `shape` (as diffusers has it)."""
    if len(shape) == 1 or name.endswith("position_embedding.weight") or file_type == "f32":
        return T.F32
    unet_conv = len(shape) == 4 and name.startswith("model.diffusion_model.")
    if file_type == "f16" or not (unet_conv or (len(shape) == 2 and _QUANTIZED.search(name))):
        return T.F16
    row = int(np.prod(shape[1:]))
    if file_type == "q8_0":
        return T.Q8_0 if row % 32 == 0 else T.F16
    return T.Q4_K if row % 256 == 0 else T.Q5_0 if row % 32 == 0 else T.F16


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("file_type", ["f16", "q8_0", "q4_k_m"])
def test_types_follow_the_contract(kind, file_type, sd_gguf):
    ref = read_tensors(sd_gguf(kind, "f32"))
    path = sd_gguf(kind, file_type)
    got = read_tensors(path)
    assert sorted(got) == sorted(ref)
    for name, (_, t, shape) in got.items():
        ref_shape = ref[name][2]
        assert t == expected_type(file_type, name, ref_shape), (name, ref_shape, t)
        # quantized convolutions are stored as their kernel rows [Cout, Cin * KH * KW]
        flat = len(ref_shape) == 4 and t not in (T.F32, T.F16)
        assert tuple(shape) == ((ref_shape[0], int(np.prod(ref_shape[1:]))) if flat else tuple(ref_shape)), name
    kinds = {t for _, t, _ in got.values()}
    if file_type != "f16":
        quantized = T.Q8_0 if file_type == "q8_0" else T.Q5_0  # tiny rows: q4_k falls back to q5_0
        assert quantized in kinds
        # CLIP's fc2 reads 37 values per row: no q8_0/q5_0 block fits, f16 instead
        assert got["cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc2.weight"][1] == T.F16
        # SD1's proj_in is a 1x1 convolution, SD2's a linear: both quantized
        assert got["model.diffusion_model.input_blocks.1.1.proj_in.weight"][1] == quantized
        # conv_in's rows (4 channels x 3 x 3 = 36) fit no block; the VAE stays f16
        assert got["model.diffusion_model.input_blocks.0.0.weight"][1] == T.F16
        assert got["first_stage_model.decoder.conv_in.weight"][1] == T.F16
    md = quanta.GGUF(path).metadata
    assert md["general.file_type"] == {"f16": 1, "q8_0": 7, "q4_k_m": 15}[file_type]
    assert ("general.quantization_version" in md) == (file_type != "f16")
    # values: what quanta reads back stays close to the f32 file
    f = quanta.GGUF(path)
    tol = {"f16": 1e-3, "q8_0": 1e-2, "q4_k_m": 8e-2}[file_type]
    for name in ("model.diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q.weight",
                 "model.diffusion_model.input_blocks.0.0.weight", "model.diffusion_model.out.2.weight",
                 "model.diffusion_model.input_blocks.1.0.in_layers.2.weight",
                 "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight"):
        a, b = f.tensor(name), ref[name][0]
        assert a.size == b.size
        a = a.reshape(b.shape)
        assert np.abs(a - b).max() <= tol * np.abs(b).max(), name


def test_q4_k_is_used_where_rows_fill_a_block():
    from quanta.converter.sd_convert import sd_tensor_type

    name = "model.diffusion_model.input_blocks.7.1.transformer_blocks.0.attn1.to_q.weight"
    assert sd_tensor_type("q4_k_m", name, (1280, 1280)) == "q4_k"
    assert sd_tensor_type("q4_k_m", name, (320, 320)) == "q5_0"
    assert sd_tensor_type("q8_0", name, (320, 320)) == "q8_0"
    assert sd_tensor_type("q4_k_m", "model.diffusion_model.input_blocks.1.0.emb_layers.1.weight", (320, 1280)) \
        == "f16"
    assert sd_tensor_type("q4_k_m", "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
                          (49408, 768)) == "f16"
    # SD1.5's convolutions: rows of 1280 x 9 fill q4_k's blocks, 320 x 9 and 640 x 9 take q5_0, conv_in stays f16
    conv = "model.diffusion_model.input_blocks.8.0.in_layers.2.weight"
    assert sd_tensor_type("q4_k_m", conv, (1280, 1280, 3, 3)) == "q4_k"
    assert sd_tensor_type("q4_k_m", conv, (320, 320, 3, 3)) == "q5_0"
    assert sd_tensor_type("q8_0", conv, (640, 640, 3, 3)) == "q8_0"
    assert sd_tensor_type("q8_0", "model.diffusion_model.input_blocks.0.0.weight", (320, 4, 3, 3)) == "f16"
    assert sd_tensor_type("q8_0", "first_stage_model.decoder.up.0.block.0.conv1.weight", (128, 128, 3, 3)) == "f16"


# ---- errors ----------------------------------------------------------------------------------------------------


class _Trap:
    """Unpickling this would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _copy(folder, dst):
    shutil.copytree(folder, dst)
    return dst


def _edit_unet(folder, edit):
    path = folder / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))


def _pickle_only(folder, tmp_path):
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(_Trap(tmp_path / "unpickled")))


def _truncate(folder, tmp_path):
    path = folder / "vae" / "diffusion_pytorch_model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])


CASES = [
    ("pickle", _pickle_only, quanta.FormatError, "only pickle weights"),
    ("no-unet", lambda f, t: shutil.rmtree(f / "unet"), quanta.FormatError, "no unet/ folder"),
    ("corrupt", _truncate, quanta.FormatError, "corrupt or truncated safetensors"),
    ("garbage", lambda f, t: (f / "text_encoder" / "model.safetensors").write_bytes(b"\x10" + b"\0" * 7 + b"{}x"),
     quanta.FormatError, "safetensors"),
    ("unknown", lambda f, t: _edit_unet(f, lambda d: d.update({"down_blocks.0.lora.weight": np.ones((2, 2),
                                                                                                np.float32)})),
     quanta.ModelError, "'down_blocks.0.lora.weight'"),
    ("missing", lambda f, t: _edit_unet(f, lambda d: d.pop("mid_block.resnets.1.conv1.weight")),
     quanta.ModelError, "lacks tensor 'model.diffusion_model.middle_block.2.in_layers.2.weight'"),
    ("xl", lambda f, t: (f / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"})),
     quanta.UnsupportedError, "StableDiffusionXLPipeline"),
    ("index", lambda f, t: (f / "model_index.json").write_text("{"), quanta.FormatError, "not valid JSON"),
]


@pytest.mark.parametrize("name, edit, error, match", CASES, ids=[c[0] for c in CASES])
def test_bad_pipelines_raise_one_clear_error(sd_pipeline, tmp_path, name, edit, error, match):
    bad = _copy(sd_pipeline("sd1"), tmp_path / "bad")
    edit(bad, tmp_path)
    out = tmp_path / "out.gguf"
    with pytest.raises(error, match=match):
        quanta.convert(bad, out, type="q8_0", progress=False)
    r = cli("convert", bad, out)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("quanta: error:"), r.stderr
    assert not out.exists() and not (tmp_path / "unpickled").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]


def test_types_other_than_sd_s_are_refused(sd_pipeline, tmp_path):
    with pytest.raises(ValueError, match="for LLMs; Stable Diffusion files are f32, f16, q8_0, q4_k_m"):
        quanta.convert(sd_pipeline("sd2"), tmp_path / "x.gguf", type="bf16", progress=False)
    with pytest.raises(ValueError, match="unknown type 'q3'"):
        quanta.convert(sd_pipeline("sd2"), tmp_path / "x.gguf", type="q3", progress=False)
    assert not list(tmp_path.iterdir())


def test_cli_converts_a_pipeline_folder(sd_pipeline, sd_gguf, tmp_path):
    out = tmp_path / "cli.gguf"
    r = cli("convert", sd_pipeline("sd2"), out, "--type", "q8_0")
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("converting:")
    assert out.read_bytes() == sd_gguf("sd2", "q8_0").read_bytes()  # the same bytes as quanta.convert's


# ---- source layouts ----------------------------------------------------------------------------------------------


def test_weight_variants_and_legacy_vae_names_convert_the_same(sd_pipeline, sd_gguf, tmp_path):
    reference = sd_gguf("sd2", "f32").read_bytes()
    folder = _copy(sd_pipeline("sd2"), tmp_path / "v" / "sd2")  # the same general.name
    unet = folder / "unet"
    out = tmp_path / "out.gguf"
    # only an fp16 variant file (diffusers' variant="fp16" naming): used
    (unet / "diffusion_pytorch_model.safetensors").rename(unet / "diffusion_pytorch_model.fp16.safetensors")
    quanta.convert(folder, out, type="f32", progress=False)
    assert out.read_bytes() == reference
    # two variants and no plain file: which one is meant is unclear
    shutil.copy(unet / "diffusion_pytorch_model.fp16.safetensors", unet / "diffusion_pytorch_model.non_ema.safetensors")
    with pytest.raises(quanta.FormatError, match="several variants"):
        quanta.convert(folder, out, type="f32", progress=False)
    # the plain file beside variants (as SD 1.5's repositories ship): the plain one
    tensors = load_file(str(unet / "diffusion_pytorch_model.fp16.safetensors"))
    save_file({k: v.astype(np.float16) for k, v in tensors.items()}, str(unet / "diffusion_pytorch_model.non_ema.safetensors"))
    (unet / "diffusion_pytorch_model.fp16.safetensors").rename(unet / "diffusion_pytorch_model.safetensors")
    quanta.convert(folder, out, type="f32", progress=False)
    assert out.read_bytes() == reference
    # diffusers' deprecated VAE attention names (query, key, value, proj_attn) and 1x1-conv-shaped weights
    path = folder / "vae" / "diffusion_pytorch_model.safetensors"
    renames = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    old = {}
    for k, v in load_file(str(path)).items():
        m = re.match(r"(.*mid_block\.attentions\.0\.)(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$", k)
        if m:
            k = m.group(1) + renames[m.group(2)] + "." + m.group(3)
            v = v.reshape(v.shape + (1, 1)) if m.group(3) == "weight" and m.group(2) != "to_out.0" else v
        old[k] = v
    save_file(old, str(path))
    quanta.convert(folder, out, type="f32", progress=False)
    assert out.read_bytes() == reference


@pytest.mark.parametrize("kind", KINDS)
def test_tiny_pipelines_make_images_that_are_not_flat_or_saturated(kind, sd_diffusers):
    pipe = sd_diffusers(kind)
    size = 16 if kind == "sd1" else 32  # latents of 8 x 8 (VAE downscale 2 and 4)
    image = pipe("a photo of a cat", negative_prompt="blurry", num_inference_steps=3, guidance_scale=7.5,
                 height=size, width=size, generator=torch.Generator().manual_seed(0), output_type="np",
                 ).images[0]
    assert image.shape == (size, size, 3)
    assert image.std() > 0.1
    assert ((image <= 0) | (image >= 1)).mean() < 0.25
