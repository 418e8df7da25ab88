"""An original-layout (LDM) Stable Diffusion 1.x/2.x single file, the `.safetensors` that A1111, ComfyUI and
stable-diffusion.cpp read, to one quanta GGUF file (README, "Files people already have").

Names. quanta's GGUF names are the LDM names, so the UNet (`model.diffusion_model.*`) and the VAE
(`first_stage_model.*`) keep theirs; the VAE's attention projections become 1x1 convolutions [C, C, 1, 1] when a
file stores them as [C, C]. The text encoder becomes `cond_stage_model.transformer.text_model.*`:
- SD1 files hold OpenAI's CLIP under Hugging Face's names, `cond_stage_model.transformer.text_model.*`, or in older
  files `cond_stage_model.transformer.*` without `text_model.`.
- SD2 files hold OpenCLIP's tower, `cond_stage_model.model.*`: token_embedding, positional_embedding, ln_final,
  and `transformer.resblocks.N` with ln_1/ln_2, mlp.c_fc/mlp.c_proj, attn.out_proj, and attn.in_proj_weight/bias,
  q, k and v stacked (rows 0..C, C..2C, 2C..3C), which are split into q_proj/k_proj/v_proj. SD2 conditions on the
  tower's penultimate layer (LDM's FrozenOpenCLIPEmbedder(layer="penultimate"); diffusers keeps 23 of the 24 layers,
  stable-diffusion.cpp runs clip skip 2), so the last resblock is left out and the file's own last layer is that one.
Left out, as diffusers and stable-diffusion.cpp leave them: everything outside the three models (the training
schedule's buffers, model_ema.*), position-id buffers, and OpenCLIP's logit_scale and text_projection.

Config. The file has none. From the weights: SD1 or SD2 (the text encoder's layout, OpenCLIP's being SD2), the
UNet's levels and channels. The rest is what SD 1.x/2.x are: 8 UNet heads per level in SD1, 64-wide heads in SD2
and in CLIP, 32 groups in every norm, latent scale 0.18215, the scaled-linear schedule 0.00085..0.012 with steps
offset 1, quick-GELU (SD1) or GELU (SD2), and the CLIP vocabulary bundled with quanta (clip_vocab.py). The
prediction type cannot be read from weights: `prediction_type` gives it; without it an SD1 file is epsilon, as
every SD1 model is, and an SD2 file leaves the key out, so that loading guesses as stable-diffusion.cpp does.

Pickles (.ckpt, .pt, .pth, .bin) are refused unopened: unpickling a checkpoint can run code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import FormatError, ModelError, UnsupportedError
from ..threads import threads
from .clip_vocab import N_VOCAB, tokenizer_metadata
from .progress import ProgressArg
from .safetensors_source import SafetensorsSource
from .sd_convert import (CLIP, UNET, VAE, SdFacts, betas, check_prediction_argument, check_sd_type, clip_name,
                         file_metadata, in_file_order, refuse_unknown, require_tensors, reshaped_reader,
                         set_types)
from .stream import TensorJob, write_gguf

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
_HF_CLIP = "cond_stage_model.transformer."
_OPENCLIP = "cond_stage_model.model."
_PARTS = (UNET, VAE, _HF_CLIP, _OPENCLIP)
_LEFT_OUT = re.compile(r"(^|\.)position_ids$|^cond_stage_model\.model\.(logit_scale|text_projection)$")
# SD's own schedule, which diffusers' and stable-diffusion.cpp's single-file loaders also assume.
_SD_SCHEDULE = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                "num_train_timesteps": 1000}

_W = r"\.(weight|bias)$"
_RESNET = r"(in_layers\.[02]|out_layers\.[03]|emb_layers\.1|skip_connection)"
_TRANSFORMER = (r"1\.(norm|proj_in|proj_out|transformer_blocks\.\d+\.(norm[123]|attn[12]\.(to_q|to_k|to_v|to_out\.0)|"
                r"ff\.net\.0\.proj|ff\.net\.2))")
UNET_NAME = re.compile(
    r"^(time_embed\.[02]|input_blocks\.0\.0|out\.[02]|input_blocks\.\d+\.0\.(" + _RESNET + r"|op)|"
    r"(input_blocks\.\d+|output_blocks\.\d+|middle_block)\." + _TRANSFORMER + r"|middle_block\.[02]\." + _RESNET +
    r"|output_blocks\.\d+\.0\." + _RESNET + r"|output_blocks\.\d+\.[12]\.conv)" + _W)
_VAE_RESNET = r"block(_[12]|\.\d+)\.(norm1|conv1|norm2|conv2|nin_shortcut)"
VAE_NAME = re.compile(
    r"^((encoder|decoder)\.(conv_in|conv_out|norm_out|mid\." + _VAE_RESNET + r"|mid\.attn_1\.(norm|q|k|v|proj_out))|"
    r"encoder\.down\.\d+\.(" + _VAE_RESNET + r"|downsample\.conv)|decoder\.up\.\d+\.(" + _VAE_RESNET +
    r"|upsample\.conv)|quant_conv|post_quant_conv)" + _W)
_OPENCLIP_NAMES = {"token_embedding.weight": "embeddings.token_embedding.weight",
                   "positional_embedding": "embeddings.position_embedding.weight",
                   "ln_final.weight": "final_layer_norm.weight", "ln_final.bias": "final_layer_norm.bias"}
_OPENCLIP_LAYER = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
                   "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
_OPENCLIP_BLOCK = re.compile(r"^transformer\.resblocks\.(\d+)\.(ln_1|ln_2|attn\.out_proj|mlp\.c_fc|mlp\.c_proj|"
                             r"attn\.in_proj)[._](weight|bias)$")


def is_single_file(path: "str | os.PathLike[str]") -> bool:
    return Path(path).suffix.lower() in (".safetensors",) + PICKLE_SUFFIXES


def refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise FormatError(f"{path}: a pickle checkpoint ({path.suffix}); quanta reads safetensors only and never "
                          "unpickles, since loading a pickle can run code. Use the model's .safetensors release, "
                          "or re-save it as .safetensors where you trust the file")


class _Source:
    """The file's tensors, and the names of those left out unread (to recognise other model families)."""

    def __init__(self, path: Path):
        self.left_out: list = []
        self.st = SafetensorsSource(path.parent, files=[path], ignore=self._ignore)

    def _ignore(self, name: str) -> bool:
        if not name.startswith(_PARTS) or _LEFT_OUT.search(name):
            self.left_out.append(name)
            return True
        return False


def _job(st: SafetensorsSource, name: str, gguf_name: str, shape: tuple = None, third: int = -1) -> TensorJob:
    """A job reading tensor `name` (seen with numpy shape `shape`), or one third of its rows (a stacked q/k/v)."""
    t = st.tensors[name]
    release = lambda: st.release(name)  # noqa: E731
    if third < 0:
        shape = tuple(t.shape) if shape is None else shape
        return TensorJob(gguf_name, shape, None, reshaped_reader(st, name, shape), release=release)
    n = t.shape[0] // 3
    if len(t.shape) == 1:
        return TensorJob(gguf_name, (n,), None, lambda a, b: st.rows(name, 0, 1)[:, third * n:(third + 1) * n],
                         release=release)
    return TensorJob(gguf_name, (n,) + tuple(t.shape[1:]), None,
                     lambda a, b: st.rows(name, a + third * n, b + third * n), release=release)


def _openclip_jobs(st: SafetensorsSource, path: Path) -> list:
    names = [n[len(_OPENCLIP):] for n in st.tensors if n.startswith(_OPENCLIP)]
    blocks = [int(m.group(1)) for m in map(_OPENCLIP_BLOCK.match, names) if m]
    if not blocks:
        raise ModelError(f"{path}: the OpenCLIP text encoder (cond_stage_model.model.*) has no transformer.resblocks")
    skipped = max(blocks)  # the tower's last layer, which SD2 does not run
    jobs, unknown = [], []
    for rest in names:
        name = _OPENCLIP + rest
        if rest in _OPENCLIP_NAMES:
            jobs.append(_job(st, name, CLIP + _OPENCLIP_NAMES[rest]))
            continue
        m = _OPENCLIP_BLOCK.match(rest)
        if not m:
            unknown.append(name)
            continue
        layer, part, kind = int(m.group(1)), m.group(2), m.group(3)
        if layer == skipped:
            continue
        prefix = f"{CLIP}encoder.layers.{layer}."
        if part == "attn.in_proj":
            t = st.tensors[name]
            if t.shape[0] % 3 or (len(t.shape) == 2 and t.shape[0] != 3 * t.shape[1]):
                raise ModelError(f"{path}: tensor '{name}' has shape {list(t.shape)}; a stacked q/k/v projection "
                                 "has 3 x width rows")
            jobs += [_job(st, name, f"{prefix}self_attn.{q}_proj.{kind}", third=i) for i, q in enumerate("qkv")]
        else:
            jobs.append(_job(st, name, f"{prefix}{_OPENCLIP_LAYER[part]}.{kind}"))
    refuse_unknown(unknown, path, "OpenCLIP text encoder")
    return jobs


def _jobs(src: _Source, path: Path) -> tuple:
    """(version, jobs) for every tensor the GGUF file will hold."""
    st = src.st
    if not any(n.startswith(UNET) for n in st.tensors):
        if any(n.startswith("conditioner.embedders.") for n in src.left_out):
            raise UnsupportedError(f"{path}: an SDXL checkpoint (conditioner.embedders.*); quanta runs Stable "
                                   "Diffusion 1.x/2.x")
        raise ModelError(f"{path}: not a Stable Diffusion checkpoint in the original layout (no "
                         "model.diffusion_model.* UNet tensors)")
    openclip = any(n.startswith(_OPENCLIP) for n in st.tensors)
    hf = any(n.startswith(_HF_CLIP) for n in st.tensors)
    if openclip == hf:
        raise ModelError(f"{path}: " + ("two text encoders (cond_stage_model.transformer.* and "
                                        "cond_stage_model.model.*)" if hf else
                                        "no text encoder (cond_stage_model.transformer.* or cond_stage_model.model.*)"))
    jobs, unknown = [], {"UNet": [], "VAE": [], "CLIP text encoder": []}
    for name, t in st.tensors.items():
        if name.startswith(UNET):
            rest = name[len(UNET):]
            if UNET_NAME.match(rest):
                jobs.append(_job(st, name, name))
            else:
                unknown["UNet"].append(name)
        elif name.startswith(VAE):
            rest = name[len(VAE):]
            if not VAE_NAME.match(rest):
                unknown["VAE"].append(name)
            elif re.search(r"attn_1\.(q|k|v|proj_out)\.weight$", rest) and len(t.shape) == 2:
                jobs.append(_job(st, name, name, tuple(t.shape) + (1, 1)))  # LDM's 1x1 convolution
            else:
                jobs.append(_job(st, name, name))
        elif name.startswith(_HF_CLIP):
            rest = clip_name(name[len(_HF_CLIP):])
            if rest is None:
                unknown["CLIP text encoder"].append(name)
            else:
                jobs.append(_job(st, name, CLIP + rest))
    for part, names in unknown.items():
        refuse_unknown(names, path, part)
    if openclip:
        jobs += _openclip_jobs(st, path)
    return ("sd2" if openclip else "sd1"), jobs


def require_parts(by_name: dict, path: Path) -> None:
    """The tensors of the GGUF file to be (by_name: GGUF name -> job) include each part's ends."""
    names = [UNET + n for n in ("input_blocks.0.0.weight", "time_embed.0.weight", "out.2.weight")]
    names += [VAE + n for n in ("encoder.conv_in.weight", "decoder.conv_out.weight", "quant_conv.weight",
                                "post_quant_conv.weight")]
    names += [CLIP + n for n in ("embeddings.token_embedding.weight", "embeddings.position_embedding.weight",
                                 "final_layer_norm.weight", "encoder.layers.0.self_attn.q_proj.weight")]
    require_tensors(by_name, path, names)


def unet_level_channels(by_name: dict, path: Path) -> list:
    """Each UNet level's channels: the output of its first resnet. Levels end at the downsamplers
    (input_blocks.{(i + 1)(n + 1)}.0.op), so n, the resnets per level, is the first downsampler's index - 1."""
    downsamplers = sorted(int(m.group(1)) for m in (re.match(re.escape(UNET) + r"input_blocks\.(\d+)\.0\.op\.weight$",
                                                            k) for k in by_name) if m)
    per_level = downsamplers[0] if downsamplers else 1
    levels = len(downsamplers) + 1
    first = [f"{UNET}input_blocks.{1 + i * per_level}.0.out_layers.3.weight" for i in range(levels)]
    require_tensors(by_name, path, first)
    return [int(by_name[n].shape[0]) for n in first]


def sd_facts(version: str, by_name: dict, path: Path, prediction: "str | None") -> SdFacts:
    """The sd.* facts of a file with no config (see the module's notes); by_name: GGUF name -> job."""
    width = int(by_name[CLIP + "embeddings.token_embedding.weight"].shape[-1])
    n_vocab = int(by_name[CLIP + "embeddings.token_embedding.weight"].shape[0])
    if n_vocab != N_VOCAB:
        raise ModelError(f"{path}: the text encoder embeds {n_vocab} tokens; Stable Diffusion's CLIP has {N_VOCAB}")
    c_in = by_name[UNET + "input_blocks.0.0.weight"].shape
    if len(c_in) != 4 or c_in[1] != 4:
        raise UnsupportedError(f"{path}: the UNet takes {c_in[1] if len(c_in) > 1 else '?'} input channels (9 is an "
                               "inpainting model, 8 pix2pix); quanta runs the 4-channel text-to-image UNet")
    channels = unet_level_channels(by_name, path)
    if version == "sd1":
        heads = [8] * len(channels)
    elif any(c % 64 for c in channels):
        raise ModelError(f"{path}: UNet level channels {channels} do not split into SD2's 64-wide heads")
    else:
        heads = [c // 64 for c in channels]
    if width % 64:
        raise ModelError(f"{path}: CLIP width {width} does not split into 64-wide heads")
    if prediction is None and version == "sd1":
        prediction = "epsilon"
    return SdFacts(version=version, prediction_type=prediction, betas=betas(_SD_SCHEDULE, path), unet_heads=heads,
                   clip_heads=width // 64, clip_act="quick_gelu" if version == "sd1" else "gelu")


def convert_ldm(src: "str | os.PathLike[str]", out: "str | os.PathLike[str]", type: str = "q4_k_m",
                progress: ProgressArg = True, n_threads: int = 0, prediction_type: "str | None" = None) -> None:
    """Converts the original-layout Stable Diffusion 1.x/2.x file `src` (.safetensors) into one GGUF file `out`
    (type f32, f16, q8_0 or q4_k_m). prediction_type: "epsilon" or "v_prediction" (see the module's notes)."""
    path = Path(src)
    refuse_pickle(path)
    check_sd_type(type)
    check_prediction_argument(prediction_type)
    n_threads = threads(n_threads)
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    src_ = _Source(path)
    try:
        version, jobs = _jobs(src_, path)
        try:
            jobs = set_types(in_file_order(jobs), type)
        except ModelError as e:
            raise ModelError(f"{path}: {e}") from None
        by_name = {j.name: j for j in jobs}
        require_parts(by_name, path)
        facts = sd_facts(version, by_name, path, prediction_type)
        metadata = file_metadata(path.stem, type, [j.type for j in jobs], facts, tokenizer_metadata(version))
        write_gguf(out, metadata, jobs, progress, n_threads)
    finally:
        src_.st.close()


def file_float_type(path: "str | os.PathLike[str]") -> str:
    """"f16" when most of the weight bytes of LDM file `path` are f16, else "f32" (what it converts to losslessly)."""
    path = Path(path)
    refuse_pickle(path)
    src = _Source(path)
    try:
        sizes = {}
        for t in src.st.tensors.values():
            sizes[t.dtype] = sizes.get(t.dtype, 0) + t.nbytes
    finally:
        src.st.close()
    return "f16" if sizes and max(sizes, key=sizes.get) == "F16" else "f32"
