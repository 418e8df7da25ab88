"""Original-layout (LDM) single-file checkpoints, the files A1111, ComfyUI and stable-diffusion.cpp read, made from a
diffusers pipeline for the tests. Written from the original CompVis/Stability module layout (the tables of diffusers'
scripts/convert_diffusers_to_original_stable_diffusion.py state it), not from quanta's converter; the tests check
every file made here by running diffusers' own LDM-to-diffusers converters on it (tests/test_ldm_checkpoint.py).

Text encoders: "hf" is SD1's `cond_stage_model.transformer.text_model.*`, "hf-legacy" the older SD1 files'
`cond_stage_model.transformer.*` without `text_model.`, and "openclip" SD2's OpenCLIP tower
`cond_stage_model.model.*` (fused in_proj q/k/v, ln_1/ln_2, mlp.c_fc/c_proj, token_embedding, positional_embedding,
ln_final, text_projection). An LDM file holds the whole OpenCLIP tower and SD2 conditions on its penultimate layer, so
"openclip" appends one more resblock (random: SD2 never runs it) after the pipeline's layers, as the real files have
24 where diffusers' SD2 text encoder has 23. The files also carry what real checkpoints carry beside the three models:
the training schedule's buffers, an EMA counter, the position-ids buffer and OpenCLIP's logit_scale.

    tensors = ldm_state_dict(pipe, text="openclip")              # {name: numpy array}
    write_ldm(path, pipe, text="hf", dtype="float16")
"""

from __future__ import annotations

import os

import numpy as np

TEXT_LAYOUTS = ("hf", "hf-legacy", "openclip")


def _unet_names(config: dict) -> dict:
    """diffusers UNet prefix -> LDM prefix, for every block of a UNet with this config."""
    n = config["layers_per_block"]
    levels = len(config["block_out_channels"])
    names = {"time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
             "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
             "mid_block.attentions.0.": "middle_block.1."}
    for j in range(2):
        names[f"mid_block.resnets.{j}."] = f"middle_block.{2 * j}."
    for i in range(levels):
        for j in range(n):
            block = 1 + i * (n + 1) + j
            names[f"down_blocks.{i}.resnets.{j}."] = f"input_blocks.{block}.0."
            names[f"down_blocks.{i}.attentions.{j}."] = f"input_blocks.{block}.1."
        if i < levels - 1:
            names[f"down_blocks.{i}.downsamplers.0.conv."] = f"input_blocks.{(i + 1) * (n + 1)}.0.op."
        for j in range(n + 1):
            names[f"up_blocks.{i}.resnets.{j}."] = f"output_blocks.{i * (n + 1) + j}.0."
            names[f"up_blocks.{i}.attentions.{j}."] = f"output_blocks.{i * (n + 1) + j}.1."
        if i < levels - 1:
            has_attention = config["up_block_types"][i].startswith("CrossAttn")
            names[f"up_blocks.{i}.upsamplers.0."] = f"output_blocks.{i * (n + 1) + n}.{2 if has_attention else 1}."
    return names


_UNET_RESNET = (("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("norm2.", "out_layers.0."),
                ("conv2.", "out_layers.3."), ("time_emb_proj.", "emb_layers.1."),
                ("conv_shortcut.", "skip_connection."))
_VAE_RESNET = (("conv_shortcut.", "nin_shortcut."),)
_VAE_ATTENTION = (("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."),
                  ("to_out.0.", "proj_out."))


def _rename(name: str, prefixes: dict, inner=()) -> str:
    for old, new in sorted(prefixes.items(), key=lambda kv: -len(kv[0])):
        if name.startswith(old):
            rest = name[len(old):]
            for a, b in inner:
                if rest.startswith(a):
                    rest = b + rest[len(a):]
            return new + rest
    raise KeyError(f"no LDM place for {name}")


def unet_tensors(state: dict, config: dict) -> dict:
    names = _unet_names(config)
    out = {}
    for name, value in state.items():
        inner = _UNET_RESNET if ".resnets." in name else ()
        out["model.diffusion_model." + _rename(name, names, inner)] = value
    return out


def vae_tensors(state: dict, config: dict) -> dict:
    levels = len(config["block_out_channels"])
    names = {"encoder.conv_norm_out.": "encoder.norm_out.", "decoder.conv_norm_out.": "decoder.norm_out."}
    for side in ("encoder", "decoder"):
        for p in ("conv_in.", "conv_out."):
            names[f"{side}.{p}"] = f"{side}.{p}"
        names[f"{side}.mid_block.attentions.0."] = f"{side}.mid.attn_1."
        for j in range(2):
            names[f"{side}.mid_block.resnets.{j}."] = f"{side}.mid.block_{j + 1}."
    for p in ("quant_conv.", "post_quant_conv."):
        names[p] = p
    for i in range(levels):
        names[f"encoder.down_blocks.{i}.downsamplers.0."] = f"encoder.down.{i}.downsample."
        names[f"decoder.up_blocks.{i}.upsamplers.0."] = f"decoder.up.{levels - 1 - i}.upsample."
        for j in range(config["layers_per_block"] + 1):
            names[f"encoder.down_blocks.{i}.resnets.{j}."] = f"encoder.down.{i}.block.{j}."
            names[f"decoder.up_blocks.{i}.resnets.{j}."] = f"decoder.up.{levels - 1 - i}.block.{j}."
    out = {}
    for name, value in state.items():
        attention = ".attentions." in name
        ldm = _rename(name, names, _VAE_ATTENTION if attention else _VAE_RESNET)
        if attention and value.ndim == 2:
            value = value.reshape(*value.shape, 1, 1)  # LDM's attention projections are 1x1 convolutions
        out["first_stage_model." + ldm] = value
    return out


def _openclip_tensors(state: dict, rng: np.random.Generator) -> dict:
    state = {k.removeprefix("text_model."): v for k, v in state.items()}
    p = "cond_stage_model.model."
    width = state["embeddings.token_embedding.weight"].shape[1]
    out = {p + "token_embedding.weight": state["embeddings.token_embedding.weight"],
           p + "positional_embedding": state["embeddings.position_embedding.weight"],
           p + "ln_final.weight": state["final_layer_norm.weight"], p + "ln_final.bias": state["final_layer_norm.bias"],
           # OpenCLIP multiplies by text_projection ([width, projection]); SD conditions on hidden states, not on it.
           p + "text_projection": rng.standard_normal((width, width)).astype(np.float32) * width ** -0.5,
           p + "logit_scale": np.array(np.log(1 / 0.07), dtype=np.float32)}
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layers."))
    for i in range(layers + 1):  # the tower's last layer, which SD2 skips
        src, dst = f"encoder.layers.{i}.", f"{p}transformer.resblocks.{i}."
        if i == layers:
            layer = {k.removeprefix("encoder.layers.0."): rng.standard_normal(v.shape).astype(np.float32) * 0.1
                     for k, v in state.items() if k.startswith("encoder.layers.0.")}
        else:
            layer = {k[len(src):]: v for k, v in state.items() if k.startswith(src)}
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = np.concatenate(
                [layer[f"self_attn.{q}_proj.{kind}"] for q in ("q", "k", "v")])
            for a, b in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                         ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                out[dst + f"{b}.{kind}"] = layer[f"{a}.{kind}"]
    return out


def text_tensors(state: dict, layout: str, rng: np.random.Generator) -> dict:
    if layout == "openclip":
        return _openclip_tensors(state, rng)
    state = {k.removeprefix("text_model."): v for k, v in state.items() if not k.endswith("position_ids")}
    prefix = "cond_stage_model.transformer." + ("" if layout == "hf-legacy" else "text_model.")
    out = {prefix + k: v for k, v in state.items()}
    n = state["embeddings.position_embedding.weight"].shape[0]
    out[prefix + "embeddings.position_ids"] = np.arange(n, dtype=np.int64).reshape(1, n)  # older files have it
    return out


def _schedule_buffers() -> dict:
    """The LatentDiffusion buffers original checkpoints carry (SD's scaled-linear schedule)."""
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    alphas_cumprod = np.cumprod(1 - betas)
    return {"betas": betas, "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": np.append(1.0, alphas_cumprod[:-1]),
            "sqrt_alphas_cumprod": np.sqrt(alphas_cumprod), "model_ema.num_updates": np.array(1000)}


def ldm_state_dict(pipe, text: str = "hf", seed: int = 0) -> dict:
    """{LDM name: float32 numpy array} of a diffusers StableDiffusionPipeline (plus int buffers)."""
    if text not in TEXT_LAYOUTS:
        raise ValueError(f"text layout {text!r}; choose one of {', '.join(TEXT_LAYOUTS)}")

    def numpy_state(model):
        return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}

    rng = np.random.default_rng(seed)
    out = unet_tensors(numpy_state(pipe.unet), dict(pipe.unet.config))
    out.update(vae_tensors(numpy_state(pipe.vae), dict(pipe.vae.config)))
    out.update(text_tensors(numpy_state(pipe.text_encoder), text, rng))
    out.update({k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in _schedule_buffers().items()})
    return out


def write_ldm(path: "str | os.PathLike[str]", pipe, text: str = "hf", dtype: str = "float32") -> dict:
    """Writes the pipeline as one LDM safetensors file with float tensors in `dtype`; returns the tensors written."""
    from safetensors.numpy import save_file

    tensors = {k: np.ascontiguousarray(v.astype(dtype) if v.dtype.kind == "f" else v)
               for k, v in ldm_state_dict(pipe, text).items()}
    save_file(tensors, str(path), metadata={"format": "pt"})
    return tensors


# ---- stable-diffusion.cpp's GGUF files --------------------------------------------------------------------------

_HF = "cond_stage_model.transformer.text_model."


def _sdcpp_name(name: str) -> "str | None":
    """The name stable-diffusion.cpp's convert gives LDM tensor `name` (None: not written), as measured on
    stable-diffusion-cpp-python 0.4.7: OpenCLIP's tower under Hugging Face's names with q/k/v kept stacked."""
    import re

    if name.startswith(("model.diffusion_model.", "first_stage_model.", _HF)) or name == "alphas_cumprod":
        return None if name.endswith("position_ids") else name
    if name.startswith("cond_stage_model.transformer."):  # older SD1 files: without text_model.
        return None if name.endswith("position_ids") else _HF + name[len("cond_stage_model.transformer."):]
    p = "cond_stage_model.model."
    fixed = {"token_embedding.weight": "embeddings.token_embedding.weight",
             "positional_embedding": "embeddings.position_embedding.weight", "text_projection": "text_projection",
             "ln_final.weight": "final_layer_norm.weight", "ln_final.bias": "final_layer_norm.bias"}
    if name.startswith(p) and name[len(p):] in fixed:
        return _HF + fixed[name[len(p):]]
    m = re.match(re.escape(p) + r"transformer\.resblocks\.(\d+)\.(.+)$", name)
    if not m:
        return None
    rest = m.group(2)
    for a, b in (("attn.in_proj_", "self_attn.in_proj."), ("attn.out_proj.", "self_attn.out_proj."),
                 ("ln_1.", "layer_norm1."), ("ln_2.", "layer_norm2."), ("mlp.c_fc.", "mlp.fc1."),
                 ("mlp.c_proj.", "mlp.fc2.")):
        if rest.startswith(a):
            return f"{_HF}encoder.layers.{m.group(1)}.{b}{rest[len(a):]}"
    return None


def _sdcpp_type(name: str, value: np.ndarray, file_type: str):
    """stable-diffusion.cpp 0.4.7's stored type, as measured from f32 and f16 sources: biases become f32; the CLIP
    embeddings and the UNet's time embedding keep the source's type; at f16 everything else is f16; at q8_0
    matrices and norm scales whose rows fill 32-blocks are q8_0 and convolutions keep the source's type."""
    from gguf import GGMLQuantizationType as T

    source = T.F16 if value.dtype == np.float16 else T.F32
    if name.endswith(".bias"):
        return T.F32
    if "embedding" in name or ".time_embed." in name:
        return source
    if file_type == "f16":
        return T.F16
    return T.Q8_0 if value.ndim <= 2 and value.shape[-1] % 32 == 0 else source


def write_sdcpp_gguf(path: "str | os.PathLike[str]", tensors: dict, file_type: str = "f16") -> list:
    """Writes LDM `tensors` ({name: array}) the way stable-diffusion.cpp's convert writes them: no metadata, its
    names and types (see _sdcpp_name, _sdcpp_type). Returns the names written."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch="unused")
    writer.kv_data[0].clear()  # no key/value metadata at all, as stable-diffusion.cpp writes
    names = []
    for name, value in tensors.items():
        out = _sdcpp_name(name)
        if out is None:
            continue
        kind = _sdcpp_type(out, value, file_type)
        value = np.asarray(value, dtype=np.float32)
        if kind == gguf.GGMLQuantizationType.Q8_0:
            writer.add_tensor(out, gguf.quants.quantize(value, kind), raw_dtype=kind)
        else:
            writer.add_tensor(out, value.astype(np.float16 if kind == gguf.GGMLQuantizationType.F16 else np.float32))
        names.append(out)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return names
