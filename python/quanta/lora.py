"""LoRA files for quanta.Diffusion: their modules found among a Stable Diffusion GGUF file's tensors, read as
float32 low-rank factors with their scales, and handed to the engine, which merges them into the weights at load
(csrc/models/sd_lora.h).

Formats (safetensors only):
- kohya (sd-scripts, A1111, ComfyUI): `lora_unet_<module>.lora_down.weight`, `.lora_up.weight` and `.alpha`, and
  `lora_te_text_model_<module>...` for the text encoder, where <module> is diffusers' module path with "_" for ".".
  LoCon's convolution LoRAs are the same keys on resnet and sampler convolutions (down a KxK convolution, up 1x1).
- diffusers (peft): `unet.<module>.lora_A.weight` / `.lora_B.weight` and `text_encoder.<module>...` (with or
  without `text_model.`, as transformers 5 and older name the text encoder), and diffusers' older
  `.lora.down.weight` / `.lora.up.weight` (`.lora_linear_layer.down.weight` / `.up.weight` in the text
  encoder). peft's lora_alpha, alpha_pattern and use_rslora come from the `lora_adapter_metadata` that
  diffusers' save_lora_weights writes; a module's own `.alpha` tensor wins.
- A quantized convolution that the file stores as kernel rows [Cout, Cin * KH * KW] takes LoCon's [rank, Cin,
  KH, KW] down factor: the rows hold the kernel in that order.

A module's update is weight * alpha / rank * up @ down (alpha / sqrt(rank) under rsLoRA); without an alpha,
alpha = rank. Module paths map to the file's LDM names through the converter's own diffusers -> LDM mapping
(converter/sd_convert.py), applied to every module path the file's UNet can have.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
from safetensors import safe_open

from .converter.safetensors_source import SafetensorsSource
from .converter.sd_convert import CLIP, UNET, unet_name
from .errors import FormatError, ModelError, UnsupportedError

__all__ = ["lora_patches"]

# Each format's suffix for the two factors and the alpha, longest first (".lora.down.weight" before ".weight").
_PARTS = (("lora_down.weight", "down"), ("lora_up.weight", "up"), ("alpha", "alpha"),  # kohya
          ("lora_A.weight", "down"), ("lora_B.weight", "up"),  # peft
          ("lora.down.weight", "down"), ("lora.up.weight", "up"),  # diffusers before peft: the UNet's,
          ("lora_linear_layer.down.weight", "down"), ("lora_linear_layer.up.weight", "up"))  # the text encoder's
# What other adapters' tensors are called, for the error that says which one a file is.
_OTHER_ADAPTERS = (("hada_", "LoHa"), ("lokr_", "LoKr"), ("lora_mid", "LoCon with a Tucker core"),
                   ("dora_scale", "DoRA"), ("lora_magnitude_vector", "DoRA"), ("diff", "a full weight difference"))
_RESNET = ("conv1", "conv2", "time_emb_proj", "conv_shortcut")
_TRANSFORMER = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k",
                "attn2.to_v", "attn2.to_out.0", "ff.net.0.proj", "ff.net.2")


def _indices(names: set, pattern: str) -> list:
    return sorted({int(m.group(1)) for m in (re.match(pattern, n) for n in names) if m})


def _unet_modules(names: set):
    """(diffusers module path, GGUF weight) for every UNet module of the file: the paths an SD 1.x/2.x UNet of
    the file's levels, layers and transformer depth can have, through the converter's unet_name."""
    blocks = _indices(names, re.escape(UNET) + r"input_blocks\.(\d+)\.")
    downsamplers = _indices(names, re.escape(UNET) + r"input_blocks\.(\d+)\.0\.op\.weight$")
    n = downsamplers[0] - 1 if downsamplers else len(blocks) - 1  # layers per level
    levels = len(blocks) // (n + 1)
    up_attention = {i for i in range(levels) if f"{UNET}output_blocks.{i * (n + 1)}.1.proj_in.weight" in names}
    depth = len(_indices(names, r".*\.transformer_blocks\.(\d+)\."))
    attention = ["proj_in", "proj_out"] + [f"transformer_blocks.{b}.{p}" for b in range(depth) for p in _TRANSFORMER]
    paths = ["time_embedding.linear_1", "time_embedding.linear_2", "conv_in", "conv_out"]
    for i in range(levels):
        for side, layers in (("down", n), ("up", n + 1)):
            for j in range(layers):
                paths += [f"{side}_blocks.{i}.resnets.{j}.{r}" for r in _RESNET]
                paths += [f"{side}_blocks.{i}.attentions.{j}.{a}" for a in attention]
        paths += [f"down_blocks.{i}.downsamplers.0.conv", f"up_blocks.{i}.upsamplers.0.conv"]
    paths += [f"mid_block.resnets.{j}.{r}" for j in (0, 1) for r in _RESNET]
    paths += [f"mid_block.attentions.0.{a}" for a in attention]
    for path in paths:
        ldm = unet_name(path + ".weight", n, up_attention)
        if ldm is not None and UNET + ldm in names:
            yield path, UNET + ldm


def _module_table(shapes: dict) -> dict:
    """Every module a LoRA may patch, under each name the formats give it -> the GGUF weight."""
    names = set(shapes)
    table = {}
    for path, weight in _unet_modules(names):
        table["unet." + path] = weight
        table["lora_unet_" + path.replace(".", "_")] = weight
    for weight in names:
        if weight.startswith(CLIP + "encoder.layers.") and weight.endswith(".weight") and len(shapes[weight]) == 2:
            path = weight[len(CLIP):-len(".weight")]
            table["text_encoder." + path] = weight
            table["text_encoder.text_model." + path] = weight
            table["lora_te_text_model_" + path.replace(".", "_")] = weight
    return table


def _modules(keys, path: Path) -> dict:
    """module -> {"down"/"up"/"alpha": key}."""
    modules: dict = {}
    for key in keys:
        part = next(((key[:-len(s) - 1], p) for s, p in _PARTS if key.endswith("." + s)), None)
        if part is None:
            other = next((kind for mark, kind in _OTHER_ADAPTERS if "." + mark in key), None)
            what = f"a {other} tensor" if other else "not a LoRA down, up or alpha tensor"
            raise UnsupportedError(f"{path}: tensor '{key}' is {what}; quanta merges LoRA and LoCon "
                                   "(lora_down/lora_up/alpha, lora_A/lora_B)")
        modules.setdefault(part[0], {})[part[1]] = key
    for module, parts in modules.items():
        for need in ("down", "up"):
            if need not in parts:
                raise FormatError(f"{path}: LoRA module '{module}' has no {need} tensor")
    return modules


def _peft_alphas(path: Path) -> dict:
    """Component ("unet", "text_encoder") -> function(module path) -> (alpha, rsLoRA), from diffusers'
    lora_adapter_metadata; components without it are left out."""
    with safe_open(str(path), framework="numpy") as f:
        text = (f.metadata() or {}).get("lora_adapter_metadata")
    if text is None:
        return {}
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}: lora_adapter_metadata is not JSON ({e})") from None
    result = {}
    for component in ("unet", "text_encoder"):
        config = {k[len(component) + 1:]: v for k, v in metadata.items() if k.startswith(component + ".")}
        if "lora_alpha" not in config:
            continue
        if config.get("use_dora"):
            raise UnsupportedError(f"{path}: a DoRA adapter (use_dora); quanta merges plain LoRA")
        patterns = config.get("alpha_pattern") or {}

        def alpha(module: str, config=config, patterns=patterns) -> tuple:
            # peft's rule: the first pattern that matches the end of the module's path, else lora_alpha
            found = next((v for p, v in patterns.items() if re.match(rf"(.*\.)?({p})$", module)), None)
            return float(config["lora_alpha"] if found is None else found), bool(config.get("use_rslora"))

        result[component] = alpha
    return result


def _squeezed(shape: tuple) -> tuple:
    """A shape with a 1x1 kernel's trailing ones dropped: a 1x1 convolution's factors equal a linear's."""
    return shape[:2] if len(shape) == 4 and shape[2:] == (1, 1) else shape


def _kernel_rows(shape: tuple, down: tuple) -> bool:
    """Whether a convolution's down [rank, Cin, KH, KW] fits a quantized kernel the file stores as its rows
    [Cout, Cin * KH * KW] (converter/sd_convert.stored_shape): the rows' order is the kernel's."""
    return len(shape) == 2 and len(down) == 4 and math.prod(down[1:]) == shape[1]


def _tensor(source: SafetensorsSource, key: str, path: Path) -> np.ndarray:
    t = source.tensors[key]
    data = source.rows(key, 0, t.n_rows).reshape(t.shape)
    if not np.isfinite(data).all():
        raise ModelError(f"{path}: LoRA tensor '{key}' holds values that are not finite")
    return data


def lora_patches(path: "str | os.PathLike[str]", weight: float, gguf) -> list:
    """The (GGUF weight, module, down (rank, inputs), up (outputs, rank), scale) tuples of the LoRA file `path`
    at strength `weight`, for the Stable Diffusion file `gguf` (a quanta.GGUF). A module the file has no place
    for, or whose shapes do not fit its weight, is a ModelError naming them (a LoRA for another model)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LoRA file {path} does not exist")
    shapes = {t.name: tuple(t.shape) for t in gguf.tensors}
    table = _module_table(shapes)
    source = SafetensorsSource(path.parent, files=[path])
    try:
        peft = _peft_alphas(path)
        patches = []
        for module, parts in _modules(source.tensors, path).items():
            target = table.get(module)
            if target is None:
                raise ModelError(f"{path}: LoRA module '{module}' has no place in {gguf.path} (not a weight of "
                                 "this Stable Diffusion 1.x/2.x UNet or text encoder: a LoRA for another model?)")
            down, up = _tensor(source, parts["down"], path), _tensor(source, parts["up"], path)
            shape, rank = shapes[target], down.shape[0] if down.ndim else 0
            fits = (down.ndim >= 2 and _squeezed(up.shape) == (shape[0], rank)
                    and (_squeezed((rank,) + shape[1:]) == _squeezed(down.shape)
                         or _kernel_rows(shape, down.shape)))
            if not fits:
                raise ModelError(f"{path}: LoRA module '{module}' (down {list(down.shape)}, up {list(up.shape)}) "
                                 f"does not fit tensor '{target}' {list(shape)} of {gguf.path}: a LoRA for "
                                 "another model?")
            component = module.split(".")[0] if "." in module else None
            rslora = False
            if "alpha" in parts:
                alpha = float(_tensor(source, parts["alpha"], path).reshape(-1)[0])
            elif component in peft:
                alpha, rslora = peft[component](module[len(component) + 1:])
            else:
                alpha = float(rank)
            scale = weight * alpha / (math.sqrt(rank) if rslora else rank)
            patches.append((target, module, np.ascontiguousarray(down.reshape(rank, -1)),
                            np.ascontiguousarray(up.reshape(up.shape[0], rank)), scale))
        return patches
    finally:
        source.close()
