"""A diffusers Stable Diffusion 1.x/2.x pipeline folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/,
scheduler/) to one GGUF file under stable-diffusion.cpp's tensor names (the original LDM layout), with quanta's
`sd.*` metadata and the CLIP tokenizer (README, "A Stable Diffusion GGUF file").

Names. diffusers' UNet becomes `model.diffusion_model.*` as LDM lays it out: with n = layers_per_block,
down level i's resnet j is `input_blocks.{1 + i(n+1) + j}.0` (its attention `.1`), its downsampler
`input_blocks.{(i+1)(n+1)}.0.op`; up level i's layer j (n+1 per level) is `output_blocks.{i(n+1) + j}.0`/`.1`, its
upsampler `output_blocks.{i(n+1) + n}.1.conv`, or `.2.conv` when that level has attention; the mid block is
`middle_block.0/.1/.2`. Resnets rename norm1/conv1/norm2/conv2/time_emb_proj/conv_shortcut to
in_layers.0/in_layers.2/out_layers.0/out_layers.3/emb_layers.1/skip_connection; transformer blocks keep their
names. The VAE becomes `first_stage_model.*`: `encoder.down.I.block.J`, `decoder.up.{N-1-I}` for diffusers' up
block I (so up.0 is the full-resolution level), `mid.block_{1,2}`, `mid.attn_1.{norm,q,k,v,proj_out}` with the
attention's linear weights stored as 1x1 convolutions [C, C, 1, 1], `norm_out`, `nin_shortcut`. The CLIP text
encoder becomes `cond_stage_model.transformer.text_model.*` under Hugging Face's names, from transformers 5 state
dicts (no `text_model.` prefix) and older ones (with it). This is the inverse of diffusers' own single-file
loaders (convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint), which the tests
run on our files.

sd.version: "sd1" when the text encoder is 768 wide, "sd2" when 1024 wide (as stable-diffusion.cpp decides);
any other width (tiny test pipelines) by its activation: quick-GELU is OpenAI's CLIP (SD1), GELU OpenCLIP (SD2).

Types. Attention and feed-forward linear weights are quantized at q8_0 and q4_k_m (q4_k, with mixtures.fit_row's
fallbacks for rows that do not fill a block: q4_k -> q5_0 -> f16, q8_0 -> f16): the UNet's transformer blocks'
to_q/to_k/to_v/to_out.0 and ff.net.0.proj/ff.net.2, linear proj_in/proj_out (SD2), time_embed.0/.2, and CLIP's
q/k/v/out_proj, fc1, fc2. Convolutions (also SD1's 1x1 proj_in/proj_out), the token embedding and the resnets'
emb_layers stay f16; 1-D tensors (biases, norms) and the position embedding are f32 at every type.

Safetensors only: a component with only pickle weights (.bin, .ckpt, .pt) is a FormatError and is never opened.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .json_file import read_json
from ..errors import FormatError, ModelError, UnsupportedError
from ..threads import threads
from .mixtures import FILE_TYPES, file_type_metadata, fit_row
from .progress import ProgressArg
from .safetensors_source import SafetensorsSource
from .stream import TensorJob, write_gguf

SD_FILE_TYPES = ("f32", "f16", "q8_0", "q4_k_m")
PREDICTION_TYPES = ("epsilon", "v_prediction")
_QUANT_BASE = {"q8_0": "q8_0", "q4_k_m": "q4_k"}
_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline")
_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
_PICKLE = (".bin", ".ckpt", ".pt", ".pth", ".pkl")

UNET = "model.diffusion_model."
VAE = "first_stage_model."
CLIP = "cond_stage_model.transformer.text_model."


def is_diffusers_folder(folder: "str | os.PathLike[str]") -> bool:
    return (Path(folder) / "model_index.json").is_file()


# ---- reading the folder ----------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    data = read_json(path)
    if data is None:
        raise FormatError(f"{path}: missing (a diffusers Stable Diffusion pipeline needs it)")
    return data


def _weight_files(component: Path) -> list:
    """The safetensors files of one component: its index's shards, else the plain file(s), else one variant."""
    for index in sorted(component.glob("*.safetensors.index.json")):
        try:
            files = sorted({component / f for f in _read_json(index)["weight_map"].values()})
        except (KeyError, TypeError, AttributeError) as e:
            raise FormatError(f"{index}: not a safetensors index ({e})") from None
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FormatError(f"{index}: lists shard(s) that are missing: {', '.join(missing)}")
        if files:
            return files
    files = sorted(component.glob("*.safetensors"))
    plain = [f for f in files if "." not in f.name[: -len(".safetensors")]]  # not model.fp16.safetensors
    if plain:
        return plain
    variants = sorted({f.name[: -len(".safetensors")].rsplit(".", 1)[1] for f in files})
    if len(variants) == 1:
        return files
    if len(variants) > 1:
        raise FormatError(f"{component}: weights in several variants ({', '.join(variants)}); keep one")
    pickled = sorted(f.name for f in component.iterdir() if f.suffix in _PICKLE)
    if pickled:
        raise FormatError(f"{component}: only pickle weights ({', '.join(pickled)}); quanta reads safetensors only "
                          "and never unpickles (save the pipeline with safe_serialization=True)")
    raise FormatError(f"{component}: no *.safetensors weights")


def _scalar(config: dict, key: str, default, kind):
    value = config.get(key, default)
    if value is None:
        value = default
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise FormatError(f"config key '{key}' is {value!r}, expected {kind.__name__}")
    return value


# UNet and VAE config keys whose value other than SD 1.x/2.x's changes the graph in ways the file cannot show.
_UNET_FIXED = {
    "act_fn": "silu", "addition_embed_type": None, "class_embed_type": None, "time_cond_proj_dim": None,
    "encoder_hid_dim": None, "encoder_hid_dim_type": None, "dual_cross_attention": False,
    "resnet_time_scale_shift": "default", "time_embedding_type": "positional", "mid_block_type":
    "UNetMidBlock2DCrossAttn", "attention_type": "default", "conv_in_kernel": 3, "conv_out_kernel": 3,
    "flip_sin_to_cos": True, "freq_shift": 0, "center_input_sample": False, "cross_attention_norm": None,
    "timestep_post_act": None, "time_embedding_act_fn": None, "class_embeddings_concat": False,
    "resnet_skip_time_act": False, "resnet_out_scale_factor": 1.0, "mid_block_scale_factor": 1,
    "norm_eps": 1e-5, "downsample_padding": 1, "time_embedding_dim": None, "mid_block_only_cross_attention": None,
    "num_class_embeds": None,
}
_VAE_FIXED = {"act_fn": "silu", "mid_block_add_attention": True, "use_quant_conv": True,
              "use_post_quant_conv": True, "latents_mean": None, "latents_std": None, "shift_factor": None}


def _check_fixed(path: Path, config: dict, fixed: dict) -> None:
    for key, want in fixed.items():
        if key in config and config[key] != want:
            raise UnsupportedError(f"{path}: {key} = {config[key]!r}; quanta runs Stable Diffusion 1.x/2.x, "
                                   f"which have {want!r}")


def _all_equal(value, want, levels: int) -> bool:
    if isinstance(value, (list, tuple)):
        return len(value) == levels and all(v == want for v in value)
    return value == want


@dataclass
class Pipeline:
    folder: Path
    unet: dict
    vae: dict
    text: dict
    scheduler: dict
    tokenizer: Path


def read_pipeline(folder: Path) -> Pipeline:
    index = _read_json(folder / "model_index.json")
    cls = index.get("_class_name")
    if cls not in _PIPELINES:
        raise UnsupportedError(f"{folder}: pipeline class {cls!r}; quanta converts Stable Diffusion 1.x/2.x "
                               f"pipelines ({', '.join(_PIPELINES)})")
    for name in _COMPONENTS:
        if not (folder / name).is_dir():
            raise FormatError(f"{folder}: no {name}/ folder (a diffusers Stable Diffusion pipeline has "
                              f"{', '.join(c + '/' for c in _COMPONENTS)})")
    unet = _read_json(folder / "unet" / "config.json")
    vae = _read_json(folder / "vae" / "config.json")
    text = _read_json(folder / "text_encoder" / "config.json")
    scheduler = _read_json(folder / "scheduler" / "scheduler_config.json")
    _check_fixed(folder / "unet" / "config.json", unet, _UNET_FIXED)
    _check_fixed(folder / "vae" / "config.json", vae, _VAE_FIXED)
    levels = len(unet.get("block_out_channels") or ())
    if not levels:
        raise FormatError(f"{folder / 'unet' / 'config.json'}: no block_out_channels")
    for key, want in (("transformer_layers_per_block", 1), ("only_cross_attention", False)):
        if key in unet and not _all_equal(unet[key], want, levels):
            raise UnsupportedError(f"{folder / 'unet' / 'config.json'}: {key} = {unet[key]!r}; "
                                   f"Stable Diffusion 1.x/2.x have {want!r}")
    for key, allowed in (("down_block_types", ("CrossAttnDownBlock2D", "DownBlock2D")),
                         ("up_block_types", ("CrossAttnUpBlock2D", "UpBlock2D"))):
        bad = [t for t in unet.get(key, ()) if t not in allowed]
        if bad:
            raise UnsupportedError(f"{folder / 'unet' / 'config.json'}: {key} has {bad[0]!r}; "
                                   f"quanta runs {' and '.join(allowed)}")
    if not isinstance(unet.get("layers_per_block", 2), int):
        raise UnsupportedError(f"{folder / 'unet' / 'config.json'}: layers_per_block "
                               f"{unet['layers_per_block']!r} differs per level; SD 1.x/2.x have one count")
    arch = text.get("architectures") or ["CLIPTextModel"]
    if text.get("model_type", "clip_text_model") != "clip_text_model" or arch[0] not in (
            "CLIPTextModel", "CLIPTextModelWithProjection"):
        raise UnsupportedError(f"{folder / 'text_encoder' / 'config.json'}: text encoder {arch[0]} "
                               f"({text.get('model_type')}); quanta runs CLIPTextModel")
    return Pipeline(folder, unet, vae, text, scheduler, folder / "tokenizer")


# ---- names -----------------------------------------------------------------------------------------------------

_W = r"(weight|bias)"
_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
                "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_UNET_ATTENTION = re.compile(
    r"^(norm|proj_in|proj_out|transformer_blocks\.\d+\.(norm[123]|attn[12]\.(to_q|to_k|to_v|to_out\.0)|"
    r"ff\.net\.0\.proj|ff\.net\.2))\." + _W + "$")
_UNET_FIXED_NAMES = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
                     "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
_VAE_RESNET = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2",
               "conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out",
                  # diffusers' deprecated names, still in older checkpoints
                  "query": "q", "key": "k", "value": "v", "proj_attn": "proj_out"}
_CLIP_NAME = re.compile(
    r"^(embeddings\.(token_embedding|position_embedding)\.weight|final_layer_norm\." + _W + "|"
    r"encoder\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|layer_norm1|layer_norm2|mlp\.fc1|mlp\.fc2)\."
    + _W + ")$")
# Tensors a text encoder checkpoint may hold that SD does not use: (pattern, why they are left out).
_CLIP_IGNORED = ((re.compile(r"^(text_model\.)?embeddings\.position_ids$"),
                  "the position ids buffer (always 0..n-1)"),
                 (re.compile(r"^text_projection\.weight$"),
                  "CLIPTextModelWithProjection's projection (SD conditions on hidden states)"))


def _resnet(rest: str, table: dict) -> "str | None":
    m = re.match(r"^([a-z_0-9]+)\." + _W + "$", rest)
    if m and m.group(1) in table:
        return f"{table[m.group(1)]}.{m.group(2)}"
    return None


def unet_name(name: str, n: int, up_attention: set) -> "str | None":
    """The LDM name (without the prefix) of diffusers UNet tensor `name`; None if it has none. n: layers_per_block;
    up_attention: the up levels that have attention."""
    m = re.match(r"^(time_embedding\.linear_[12]|conv_in|conv_norm_out|conv_out)\." + _W + "$", name)
    if m:
        return f"{_UNET_FIXED_NAMES[m.group(1)]}.{m.group(2)}"
    m = re.match(r"^(down|up)_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$", name)
    if m:
        side, i, kind, j, rest = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
        if j >= n + (side == "up"):
            return None
        block = f"input_blocks.{1 + i * (n + 1) + j}" if side == "down" else f"output_blocks.{i * (n + 1) + j}"
        if kind == "resnets":
            r = _resnet(rest, _UNET_RESNET)
            return f"{block}.0.{r}" if r else None
        return f"{block}.1.{rest}" if _UNET_ATTENTION.match(rest) else None
    m = re.match(r"^down_blocks\.(\d+)\.downsamplers\.0\.conv\." + _W + "$", name)
    if m:
        return f"input_blocks.{(int(m.group(1)) + 1) * (n + 1)}.0.op.{m.group(2)}"
    m = re.match(r"^up_blocks\.(\d+)\.upsamplers\.0\.conv\." + _W + "$", name)
    if m:
        i = int(m.group(1))
        return f"output_blocks.{i * (n + 1) + n}.{2 if i in up_attention else 1}.conv.{m.group(2)}"
    m = re.match(r"^mid_block\.resnets\.([01])\.(.+)$", name)
    if m:
        r = _resnet(m.group(2), _UNET_RESNET)
        return f"middle_block.{2 * int(m.group(1))}.{r}" if r else None
    m = re.match(r"^mid_block\.attentions\.0\.(.+)$", name)
    if m and _UNET_ATTENTION.match(m.group(1)):
        return f"middle_block.1.{m.group(1)}"
    return None


def vae_name(name: str, n_up: int) -> "str | None":
    """The LDM name (without the prefix) of diffusers VAE tensor `name`; n_up: the decoder's number of up blocks."""
    m = re.match(r"^(encoder|decoder)\.(conv_in|conv_out|conv_norm_out)\." + _W + "$", name)
    if m:
        return f"{m.group(1)}.{'norm_out' if m.group(2) == 'conv_norm_out' else m.group(2)}.{m.group(3)}"
    m = re.match(r"^(quant_conv|post_quant_conv)\." + _W + "$", name)
    if m:
        return name
    m = re.match(r"^encoder\.down_blocks\.(\d+)\.(resnets\.(\d+)\.(.+)|downsamplers\.0\.conv\." + _W + ")$", name)
    if m:
        if m.group(3) is not None:
            r = _resnet(m.group(4), _VAE_RESNET)
            return f"encoder.down.{m.group(1)}.block.{m.group(3)}.{r}" if r else None
        return f"encoder.down.{m.group(1)}.downsample.conv.{m.group(5)}"
    m = re.match(r"^decoder\.up_blocks\.(\d+)\.(resnets\.(\d+)\.(.+)|upsamplers\.0\.conv\." + _W + ")$", name)
    if m:
        level = n_up - 1 - int(m.group(1))
        if level < 0:
            return None
        if m.group(3) is not None:
            r = _resnet(m.group(4), _VAE_RESNET)
            return f"decoder.up.{level}.block.{m.group(3)}.{r}" if r else None
        return f"decoder.up.{level}.upsample.conv.{m.group(5)}"
    m = re.match(r"^(encoder|decoder)\.mid_block\.resnets\.([01])\.(.+)$", name)
    if m:
        r = _resnet(m.group(3), _VAE_RESNET)
        return f"{m.group(1)}.mid.block_{int(m.group(2)) + 1}.{r}" if r else None
    m = re.match(r"^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0|query|key|"
                 r"value|proj_attn)\." + _W + "$", name)
    if m:
        return f"{m.group(1)}.mid.attn_1.{_VAE_ATTENTION[m.group(2)]}.{m.group(3)}"
    return None


def clip_name(name: str) -> "str | None":
    rest = name[len("text_model."):] if name.startswith("text_model.") else name
    return rest if _CLIP_NAME.match(rest) else None


def _clip_ignored(name: str) -> bool:
    return any(p.match(name) for p, _ in _CLIP_IGNORED)


# ---- types -----------------------------------------------------------------------------------------------------

_QUANTIZED = re.compile(
    r"^(model\.diffusion_model\.(time_embed\.[02]\.weight|.*\.transformer_blocks\.\d+\."
    r"(attn[12]\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.0\.proj|ff\.net\.2)\.weight|.*\.(proj_in|proj_out)\.weight)|"
    r"cond_stage_model\.transformer\.text_model\.encoder\.layers\.\d+\."
    r"(self_attn\.(q_proj|k_proj|v_proj|out_proj)|mlp\.fc1|mlp\.fc2)\.weight)$")


def sd_tensor_type(file_type: str, name: str, shape: tuple) -> str:
    """The stored type of tensor `name` (GGUF name, numpy shape) in a `file_type` Stable Diffusion file. In the
    quantized types the UNet's convolutions are quantized too, as rows of Cin * KH * KW (see stored_shape), each
    to the type whose block fits its row (q4_k's fallback for SD1.5's 320- and 640-channel rows is q5_0); the
    rest (the VAE, whose convolutions make the pixels, conv_in's 36-long rows, norms and biases) stays f16/f32."""
    if len(shape) < 2 or file_type == "f32" or name.endswith("embeddings.position_embedding.weight"):
        return "f32"
    if file_type == "f16":
        return "f16"
    if len(shape) == 2 and _QUANTIZED.match(name):
        return fit_row(_QUANT_BASE[file_type], int(shape[-1]))
    if len(shape) == 4 and name.startswith(UNET):
        return fit_row(_QUANT_BASE[file_type], int(np.prod(shape[1:])))
    return "f16"


def stored_shape(stored_type: str, shape: tuple) -> tuple:
    """A quantized convolution [Cout, Cin, KH, KW] is stored as its kernel rows [Cout, Cin * KH * KW]: GGUF's
    blocks run along the first dimension, which is KW for a 4-D kernel. (ggml and so stable-diffusion.cpp read
    only float convolutions; quanta's conv2d takes either form.)"""
    if len(shape) == 4 and stored_type not in ("f32", "f16", "bf16"):
        return (shape[0], int(np.prod(shape[1:])))
    return shape


# ---- metadata --------------------------------------------------------------------------------------------------


def betas(config: dict, path: Path) -> np.ndarray:
    """One beta per training timestep, as diffusers' schedulers compute them from their config (float64 math,
    rounded once to float32; torch's float32 linspace can differ from that by an ulp)."""
    n = _scalar(config, "num_train_timesteps", 1000, int)
    trained = config.get("trained_betas")
    if trained is not None:
        b = np.asarray(trained, dtype=np.float64)
        if b.ndim != 1 or len(b) == 0:
            raise FormatError(f"{path}: trained_betas is not a list of numbers")
        return b.astype(np.float32)
    start = _scalar(config, "beta_start", 0.0001, float)
    end = _scalar(config, "beta_end", 0.02, float)
    schedule = config.get("beta_schedule", "linear")
    if schedule == "linear":
        b = np.linspace(start, end, n, dtype=np.float64)
    elif schedule == "scaled_linear":
        b = np.linspace(start ** 0.5, end ** 0.5, n, dtype=np.float64) ** 2
    elif schedule == "squaredcos_cap_v2":  # diffusers' betas_for_alpha_bar, cosine
        def alpha_bar(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        b = np.array([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)])
    else:
        raise UnsupportedError(f"{path}: beta_schedule {schedule!r}; quanta knows linear, scaled_linear and "
                               "squaredcos_cap_v2 (or trained_betas)")
    if n < 1:
        raise FormatError(f"{path}: num_train_timesteps is {n}")
    return b.astype(np.float32)


def unet_head_counts(unet: dict, path: Path) -> list:
    """Heads per level: diffusers' num_attention_heads, else its misnamed attention_head_dim (which SD 1.x/2.x
    configs use for the head count)."""
    levels = len(unet["block_out_channels"])
    heads = unet.get("num_attention_heads") or unet.get("attention_head_dim", 8)
    if isinstance(heads, int) and not isinstance(heads, bool):
        heads = [heads] * levels
    if not (isinstance(heads, list) and len(heads) == levels and all(isinstance(h, int) and h > 0 for h in heads)):
        raise FormatError(f"{path}: attention heads {heads!r} are not one positive count per level ({levels})")
    for h, c in zip(heads, unet["block_out_channels"]):
        if c % h:
            raise ModelError(f"{path}: {c} channels do not split into {h} heads")
    return heads


def sd_version(text: dict, path: Path) -> str:
    width = text.get("hidden_size")
    if width == 768:
        return "sd1"
    if width == 1024:
        return "sd2"
    act = text.get("hidden_act", "quick_gelu")
    return "sd1" if act == "quick_gelu" else "sd2"


def _special(tokenizer: Path, key: str, default: str) -> str:
    """A special token's text: special_tokens_map.json first (transformers lets it override tokenizer_config.json;
    SD 2's folders pad with "!" there and with <|endoftext|> in tokenizer_config.json), then tokenizer_config."""
    for file in ("special_tokens_map.json", "tokenizer_config.json"):
        path = tokenizer / file
        if path.is_file():
            value = _read_json(path).get(key)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                return value
    return default


def tokenizer_vocab(tokenizer: Path) -> tuple:
    """(tokens in id order, merges "a b" in rank order) from vocab.json + merges.txt, else tokenizer.json."""
    vocab_file, merges_file, fast = tokenizer / "vocab.json", tokenizer / "merges.txt", tokenizer / "tokenizer.json"
    if vocab_file.is_file() and merges_file.is_file():
        vocab = _read_json(vocab_file)
        try:
            lines = merges_file.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError as e:
            raise FormatError(f"{merges_file}: not UTF-8 ({e})") from None
        merges = [line for i, line in enumerate(lines) if line.strip() and not (i == 0 and line.startswith("#version"))]
        added = []
        where = vocab_file
    elif fast.is_file():
        data = _read_json(fast)
        model = data.get("model") or {}
        if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
            raise FormatError(f"{fast}: not a BPE tokenizer (CLIP's is)")
        vocab = model["vocab"]
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
        added = [(t.get("id"), t.get("content")) for t in data.get("added_tokens", [])]
        where = fast
    else:
        raise FormatError(f"{tokenizer}: no vocab.json and merges.txt, nor tokenizer.json")
    by_id = {}
    for text, i in list(vocab.items()) + [(c, i) for i, c in added]:
        if not isinstance(i, int) or not isinstance(text, str) or i < 0 or by_id.get(i, text) != text:
            raise FormatError(f"{where}: token {text!r} has id {i!r}")
        by_id[i] = text
    if sorted(by_id) != list(range(len(by_id))):
        raise FormatError(f"{where}: token ids are not 0..{len(by_id) - 1} without gaps")
    for m in merges:
        if len(m.split(" ")) != 2:
            raise FormatError(f"{where}: merge {m!r} is not two symbols")
    return [by_id[i] for i in range(len(by_id))], merges


@dataclass
class SdFacts:
    """What a Stable Diffusion GGUF file's sd.* metadata records (README, "A Stable Diffusion GGUF file")."""
    version: str  # "sd1" or "sd2"
    prediction_type: "str | None"  # "epsilon" or "v_prediction"; None: unknown, left out (the loader guesses)
    betas: np.ndarray
    unet_heads: list
    latent_scale: float = 0.18215
    steps_offset: int = 1
    unet_groups: int = 32
    vae_groups: int = 32
    clip_heads: int = 12
    clip_act: str = "quick_gelu"
    clip_eps: float = 1e-5

    def metadata(self) -> list:
        prediction = [] if self.prediction_type is None else [("sd.prediction_type", self.prediction_type, "string")]
        return [
            ("sd.version", self.version, "string"),
            *prediction,
            ("sd.latent_scale", self.latent_scale, "f32"),
            ("sd.scheduler.betas", self.betas.tolist(), "array[f32]"),
            ("sd.scheduler.steps_offset", self.steps_offset, "u32"),
            ("sd.unet.head_count", self.unet_heads, "array[i32]"),
            ("sd.unet.norm_groups", self.unet_groups, "u32"),
            ("sd.vae.norm_groups", self.vae_groups, "u32"),
            ("sd.clip.head_count", self.clip_heads, "u32"),
            ("sd.clip.hidden_act", self.clip_act, "string"),
            ("sd.clip.layer_norm_eps", self.clip_eps, "f32"),
        ]


def check_prediction_type(prediction: str, where: str) -> str:
    if prediction not in PREDICTION_TYPES:
        raise UnsupportedError(f"{where}: prediction_type {prediction!r}; quanta runs {' and '.join(PREDICTION_TYPES)}")
    return prediction


def check_prediction_argument(prediction: "str | None") -> "str | None":
    if prediction is not None and prediction not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}, not {prediction!r}")
    return prediction


def file_metadata(name: str, file_type: str, stored: list, facts: SdFacts, tokenizer: list) -> list:
    """Every key of a Stable Diffusion GGUF file: general.*, sd.*, tokenizer.ggml.*."""
    return [("general.architecture", "stable-diffusion", "string"), ("general.name", name, "string"),
            *file_type_metadata(file_type, stored), *facts.metadata(), *tokenizer]


def _tokenizer_metadata(pipe: Pipeline, n_vocab: int) -> list:
    tokens, merges = tokenizer_vocab(pipe.tokenizer)
    if len(tokens) != n_vocab:
        raise ModelError(f"{pipe.tokenizer}: {len(tokens)} tokens, but the text encoder embeds {n_vocab}")
    ids = {t: i for i, t in enumerate(tokens)}
    special = []
    for key, name, default in (("bos_token", "bos_token_id", "<|startoftext|>"),
                               ("eos_token", "eos_token_id", "<|endoftext|>"),
                               ("pad_token", "padding_token_id", "<|endoftext|>")):
        token = _special(pipe.tokenizer, key, default)
        if token not in ids:
            raise FormatError(f"{pipe.tokenizer}: {key} {token!r} is not in the vocabulary")
        special.append((f"tokenizer.ggml.{name}", ids[token], "u32"))
    return [("tokenizer.ggml.model", "clip", "string"), ("tokenizer.ggml.tokens", tokens, "array[string]"),
            ("tokenizer.ggml.merges", merges, "array[string]"), *special]


def _metadata(pipe: Pipeline, file_type: str, stored: list, n_vocab: int, prediction: "str | None") -> list:
    root = pipe.folder
    unet, vae, text, sched = pipe.unet, pipe.vae, pipe.text, pipe.scheduler
    sched_path = root / "scheduler" / "scheduler_config.json"
    if prediction is None:
        prediction = check_prediction_type(sched.get("prediction_type", "epsilon") or "epsilon", str(sched_path))
    act = text.get("hidden_act", "quick_gelu")
    if act not in ("quick_gelu", "gelu"):
        raise UnsupportedError(f"{root / 'text_encoder' / 'config.json'}: hidden_act {act!r}; CLIP uses "
                               "quick_gelu (SD1) or gelu (SD2)")
    facts = SdFacts(
        version=sd_version(text, root / "text_encoder" / "config.json"), prediction_type=prediction,
        betas=betas(sched, sched_path), unet_heads=unet_head_counts(unet, root / "unet" / "config.json"),
        latent_scale=_scalar(vae, "scaling_factor", 0.18215, float),
        steps_offset=_scalar(sched, "steps_offset", 0, int),
        unet_groups=_scalar(unet, "norm_num_groups", 32, int), vae_groups=_scalar(vae, "norm_num_groups", 32, int),
        clip_heads=_scalar(text, "num_attention_heads", 12, int), clip_act=act,
        clip_eps=_scalar(text, "layer_norm_eps", 1e-5, float))
    return file_metadata(root.resolve().name, file_type, stored, facts, _tokenizer_metadata(pipe, n_vocab))


# ---- tensors ---------------------------------------------------------------------------------------------------


def reshaped_reader(source: SafetensorsSource, name: str, shape: tuple):
    """Rows [a, b) of the tensor seen with numpy shape `shape` (same elements as the source, another row length)."""
    t = source.tensors[name]
    src_len, dst_len = t.row_length, int(shape[-1])
    if len(t.shape) > 1 and src_len == dst_len:
        return lambda a, b: source.rows(name, a, b)

    def read(a, b):
        e0, e1 = a * dst_len, b * dst_len
        r0, r1 = e0 // src_len, -(-e1 // src_len)
        flat = source.rows(name, r0, r1).reshape(-1)
        return flat[e0 - r0 * src_len: e1 - r0 * src_len].reshape(b - a, dst_len)

    return read


def _natural(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _component_jobs(pipe: Pipeline, component: str, source: SafetensorsSource) -> list:
    folder = pipe.folder / component
    unknown, jobs = [], []
    n = pipe.unet.get("layers_per_block", 2)
    up_attention = {int(m.group(1)) for m in (re.match(r"^up_blocks\.(\d+)\.attentions\.", k) for k in source.tensors)
                    if m}
    n_up = len(pipe.vae.get("up_block_types") or ())
    n_up = n_up or 1 + max([int(m.group(1)) for m in (re.match(r"^decoder\.up_blocks\.(\d+)\.", k)
                                                       for k in source.tensors) if m], default=-1)
    for name, t in source.tensors.items():
        shape = tuple(t.shape)
        if component == "unet":
            ldm = unet_name(name, n, up_attention)
            prefix = UNET
        elif component == "vae":
            ldm = vae_name(name, n_up)
            prefix = VAE
            if ldm is not None and re.search(r"mid\.attn_1\.(q|k|v|proj_out)\.weight$", ldm):
                if not (len(shape) == 2 and shape[0] == shape[1]) and not (
                        len(shape) == 4 and shape[0] == shape[1] and shape[2:] == (1, 1)):
                    raise ModelError(f"{folder}: tensor '{name}' has shape {list(shape)}; an attention "
                                     "projection is [C, C] (or [C, C, 1, 1])")
                shape = (shape[0], shape[1], 1, 1)  # LDM's 1x1 convolution
        else:
            ldm = clip_name(name)
            prefix = CLIP
        if ldm is None:
            unknown.append(name)
            continue
        jobs.append(TensorJob(prefix + ldm, shape, None, reshaped_reader(source, name, shape),
                              release=lambda name=name: source.release(name)))
    refuse_unknown(unknown, folder, component)
    return jobs


def refuse_unknown(unknown: list, where: Path, part: str) -> None:
    """A ModelError naming the tensors of `part` that have no place in an SD 1.x/2.x model, if any."""
    if unknown:
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        raise ModelError(f"{where}: tensor '{unknown[0]}'{more} has no place in a Stable Diffusion 1.x/2.x "
                         f"{part} ({', '.join(unknown[:8])})")


def require_tensors(jobs: dict, where: Path, names: list) -> None:
    """A ModelError naming the first of `names` (GGUF names) that `jobs` lacks."""
    missing = [n for n in names if n not in jobs]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise ModelError(f"{where}: the checkpoint lacks tensor '{missing[0]}'{more} (as named in the GGUF file)")


def _check_tensors(pipe: Pipeline, jobs: dict) -> int:
    """The tensors every level needs are there, and the shapes agree with the configs. Returns the vocabulary size."""
    unet, vae, text = pipe.unet, pipe.vae, pipe.text
    n = unet.get("layers_per_block", 2)
    levels = len(unet["block_out_channels"])
    need = [UNET + s for s in ("time_embed.0.weight", "time_embed.2.weight", "input_blocks.0.0.weight",
                               "out.0.weight", "out.2.weight", "middle_block.0.in_layers.2.weight",
                               "middle_block.1.proj_in.weight", "middle_block.2.in_layers.2.weight")]
    for i in range(levels):
        need += [f"{UNET}input_blocks.{1 + i * (n + 1) + j}.0.in_layers.2.weight" for j in range(n)]
        need += [f"{UNET}output_blocks.{i * (n + 1) + j}.0.in_layers.2.weight" for j in range(n + 1)]
    require_tensors(jobs, pipe.folder / "unet", need)
    n_vae = len(vae.get("block_out_channels") or ()) or 1
    v_layers = vae.get("layers_per_block", 1)
    need = [VAE + s for s in ("encoder.conv_in.weight", "encoder.conv_out.weight", "decoder.conv_in.weight",
                              "decoder.conv_out.weight", "quant_conv.weight", "post_quant_conv.weight",
                              "decoder.mid.attn_1.q.weight", "encoder.mid.attn_1.q.weight")]
    for i in range(n_vae):
        need += [f"{VAE}encoder.down.{i}.block.{j}.conv1.weight" for j in range(v_layers)]
        need += [f"{VAE}decoder.up.{i}.block.{j}.conv1.weight" for j in range(v_layers + 1)]
    require_tensors(jobs, pipe.folder / "vae", need)
    layers = _scalar(text, "num_hidden_layers", 12, int)
    need = [CLIP + s for s in ("embeddings.token_embedding.weight", "embeddings.position_embedding.weight",
                               "final_layer_norm.weight")]
    need += [f"{CLIP}encoder.layers.{i}.self_attn.q_proj.weight" for i in range(layers)]
    require_tensors(jobs, pipe.folder / "text_encoder", need)
    extra = sorted({int(m.group(1)) for m in (re.match(re.escape(CLIP) + r"encoder\.layers\.(\d+)\.", k)
                                              for k in jobs) if m} - set(range(layers)))
    if extra:
        raise ModelError(f"{pipe.folder / 'text_encoder'}: layer {extra[0]} beyond num_hidden_layers = {layers}")
    width = _scalar(text, "hidden_size", 768, int)
    embd = jobs[CLIP + "embeddings.token_embedding.weight"].shape
    heads = _scalar(text, "num_attention_heads", 12, int)
    if embd[-1] != width or width % heads:
        raise ModelError(f"{pipe.folder / 'text_encoder'}: token embedding {list(embd)} with hidden_size {width} "
                         f"and {heads} heads")
    context = jobs[UNET + "middle_block.1.transformer_blocks.0.attn2.to_k.weight"].shape \
        if UNET + "middle_block.1.transformer_blocks.0.attn2.to_k.weight" in jobs else None
    if context is not None and context[-1] != width:
        raise ModelError(f"{pipe.folder / 'unet'}: cross-attention reads {context[-1]} channels, but the text "
                         f"encoder gives {width}")
    return int(embd[0])


def check_sd_type(type: str) -> str:
    if type not in SD_FILE_TYPES:
        if type in FILE_TYPES:
            raise ValueError(f"type '{type}' is for LLMs; Stable Diffusion files are {', '.join(SD_FILE_TYPES)}")
        raise ValueError(f"unknown type '{type}'; choose one of {', '.join(SD_FILE_TYPES)}")
    return type


def in_file_order(jobs: list) -> list:
    """The jobs in file order: UNet, VAE, text encoder, numbers in names compared as numbers. Two jobs with one
    name are a ModelError."""
    names = set()
    for job in jobs:
        if job.name in names:
            raise ModelError(f"two tensors become '{job.name}'")
        names.add(job.name)
    order = {UNET: 0, VAE: 1, CLIP: 2}
    return sorted(jobs, key=lambda j: (next(v for k, v in order.items() if j.name.startswith(k)), _natural(j.name)))


def set_types(jobs: list, file_type: str) -> list:
    """Each job's stored type, and a quantized convolution's stored shape (its kernel rows, stored_shape)."""
    for job in jobs:
        job.type = sd_tensor_type(file_type, job.name, job.shape)
        flat = stored_shape(job.type, job.shape)
        if flat != job.shape:
            # A kernel row is Cin * KH of the source's rows (of KW): read those and join them.
            per_row = int(np.prod(job.shape[1:-1]))
            job.read = (lambda read, m, k: lambda a, b: read(a * m, b * m).reshape(b - a, k))(job.read, per_row,
                                                                                               flat[1])
            job.raw, job.shape = None, flat
    return jobs


def convert_sd(src: "str | os.PathLike[str]", out: "str | os.PathLike[str]", type: str = "q4_k_m",
               progress: ProgressArg = True, n_threads: int = 0, prediction_type: "str | None" = None) -> None:
    """Converts the diffusers Stable Diffusion 1.x/2.x pipeline folder `src` into one GGUF file `out`
    (type f32, f16, q8_0 or q4_k_m). Streams like quanta.convert: one chunk of one tensor in memory at a time,
    `out` appearing only once complete. prediction_type ("epsilon" or "v_prediction") overrides the scheduler's."""
    folder = Path(src)
    check_sd_type(type)
    check_prediction_argument(prediction_type)
    n_threads = threads(n_threads)
    pipe = read_pipeline(folder)
    sources = []
    try:
        jobs = []
        for component in ("unet", "vae", "text_encoder"):
            path = folder / component
            ignore = _clip_ignored if component == "text_encoder" else None
            source = SafetensorsSource(path, files=_weight_files(path), ignore=ignore)
            sources.append(source)
            jobs += _component_jobs(pipe, component, source)
        try:
            jobs = set_types(in_file_order(jobs), type)
        except ModelError as e:
            raise ModelError(f"{folder}: {e}") from None
        n_vocab = _check_tensors(pipe, {j.name: j for j in jobs})
        metadata = _metadata(pipe, type, [j.type for j in jobs], n_vocab, prediction_type)
        write_gguf(out, metadata, jobs, progress, n_threads)
    finally:
        for source in sources:
            source.close()
