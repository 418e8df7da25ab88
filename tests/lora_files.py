"""Random LoRA files in kohya's format for a diffusers Stable Diffusion pipeline, written by kohya's documented
naming (sd-scripts' networks/lora.py): `lora_unet_<diffusers module path with "_" for ".">` and
`lora_te_text_model_<text encoder module path>`, each with `.lora_down.weight`, `.lora_up.weight` (f16, as kohya
saves them) and a scalar `.alpha`. For tests/test_lora.py and bench/lora_bench.py.

    kohya_lora(pipe, "x.safetensors", LOCON, rank=4)        # UNet modules matching LOCON, and the text encoder
"""

from __future__ import annotations

import re

import numpy as np

# kohya's LoRA modules: the linears and 1x1 convolutions of Transformer2DModel.
LORA = re.compile(r"attentions\.\d+\.(proj_in|proj_out|transformer_blocks\.\d+\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)|"
                  r"ff\.net\.(0\.proj|2)))$")
# LoCon's: those, and the resnets' and samplers' convolutions (3x3: down a 3x3 convolution, up 1x1).
LOCON = re.compile("(" + LORA.pattern[:-1] + r"|resnets\.\d+\.(conv1|conv2|time_emb_proj|conv_shortcut)|"
                   r"(down|up)samplers\.0\.conv)$")
# The transformer blocks' linears alone (no 1x1 convolutions).
LINEARS = re.compile(r"transformer_blocks\.\d+\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.(0\.proj|2))$")


def factors(rng, module, rank):
    """Random (down, up) for a torch Linear or Conv2d, as LoRA shapes them (a convolution's down is a KxK
    convolution, its up 1x1), sized so the update is a fair fraction of the weight's effect."""
    import torch

    if isinstance(module, torch.nn.Conv2d):
        down_shape, up_shape = (rank, module.in_channels, *module.kernel_size), (module.out_channels, rank, 1, 1)
    else:
        down_shape, up_shape = (rank, module.in_features), (module.out_features, rank)
    fan_in = int(np.prod(down_shape[1:]))
    down = rng.standard_normal(down_shape) / np.sqrt(fan_in)
    up = rng.standard_normal(up_shape) * 0.5 / np.sqrt(rank)
    return down.astype(np.float16), up.astype(np.float16)


def kohya_lora(pipe, path, unet_modules, rank, alpha=None, seed=0):
    """Writes a kohya LoRA for `pipe` (a diffusers StableDiffusionPipeline) to `path`: the UNet modules whose
    path `unet_modules` (a compiled pattern) finds, and every linear of the text encoder's layers. alpha:
    default rank / 2, so the scale alpha / rank is not 1. Returns `path`."""
    import torch
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    alpha = rank / 2 if alpha is None else alpha
    modules = [("lora_unet_", n, m) for n, m in pipe.unet.named_modules() if unet_modules.search(n)]
    modules += [("lora_te_text_model_", n.removeprefix("text_model."), m)
                for n, m in pipe.text_encoder.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n]
    tensors = {}
    for prefix, name, module in modules:
        key = prefix + name.replace(".", "_")
        tensors[key + ".lora_down.weight"], tensors[key + ".lora_up.weight"] = factors(rng, module, rank)
        tensors[key + ".alpha"] = np.array(alpha, dtype=np.float32)
    save_file(tensors, str(path))
    return path
