"""Tiny random Stable Diffusion pipelines built with diffusers and saved as diffusers folders (safetensors), with
the real CLIP vocabulary (tests/clip_vocab.py), for the converter and the diffusion tests.

- "sd1": SD 1.x-like. eps-prediction, PNDM scheduler, quick-GELU CLIP, conv (1x1) proj_in/proj_out, heads
  given as an int (attention_head_dim=8: 8 heads at every level, head dims 4 and 8), three UNet levels with
  2 resnets each (up level 0 without attention, so its upsampler is output_blocks.N.1.conv; levels 1 and 2 with
  attention: .2.conv), 16 groups in the norms, a 2-block VAE (downscale 2), pads with <|endoftext|>.
- "sd2": SD 2.x-like. v-prediction, DDIM scheduler, GELU CLIP of another width (48), linear proj_in/proj_out,
  upcast_attention, heads per level (2, 4) with channels (32, 64): head dims 16, one resnet per level, attention
  at both levels, 32 groups, a 3-block VAE (downscale 4), pads with "!".
- "sd1-ldm", "sd2-ldm" (LDM_KINDS): the same kinds made to follow what SD 1.x/2.x are where an original-layout
  single file cannot say (see _variant below), for tests/test_ldm_checkpoint.py.
- "sd1_inpaint": "sd1" with a 9-channel UNet (latents, mask, masked-image latents), saved as a
  StableDiffusionInpaintPipeline, as SD 1.5 inpainting is.

Weights are diffusers' and transformers' own random init under torch.manual_seed(seed), with the UNet's and the
VAE's weights redrawn at a scale that keeps them away from both zero and saturation (see _redraw).

    folder = write_pipeline(tmp_path / "sd1", "sd1")      # -> Path of the saved folder
    pipe = load_pipeline(folder)                          # diffusers StableDiffusionPipeline, fp32, CPU
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from clip_vocab import clip_tokenizer

KINDS = ("sd1", "sd2")  # the text-to-image kinds; CONFIGS also has "sd1_inpaint"
LDM_KINDS = ("sd1-ldm", "sd2-ldm")

# What each kind is built from (also what the tests compare metadata against).
CONFIGS = {
    "sd1": dict(
        unet=dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64, 64), layers_per_block=2,
                  down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                  up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                  cross_attention_dim=32, attention_head_dim=8, norm_num_groups=16),
        vae=dict(in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
                 down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                 latent_channels=4, norm_num_groups=16, sample_size=16, scaling_factor=0.18215),
        clip=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=3, num_attention_heads=4,
                  hidden_act="quick_gelu", layer_norm_eps=1e-5, vocab_size=49408, max_position_embeddings=77,
                  projection_dim=32, bos_token_id=49406, eos_token_id=49407, pad_token_id=1),
        scheduler=("PNDMScheduler", dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                         num_train_timesteps=1000, steps_offset=1, skip_prk_steps=True,
                                         set_alpha_to_one=False, prediction_type="epsilon")),
        pad_token="<|endoftext|>",
    ),
    "sd2": dict(
        unet=dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                  down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                  cross_attention_dim=48, attention_head_dim=(2, 4), use_linear_projection=True,
                  upcast_attention=True, norm_num_groups=32),
        vae=dict(in_channels=3, out_channels=3, block_out_channels=(32, 64, 64), layers_per_block=1,
                 down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                 latent_channels=4, norm_num_groups=32, sample_size=32, scaling_factor=0.18215),
        clip=dict(hidden_size=48, intermediate_size=37, num_hidden_layers=4, num_attention_heads=4,
                  hidden_act="gelu", layer_norm_eps=1e-5, vocab_size=49408, max_position_embeddings=77,
                  projection_dim=48, bos_token_id=49406, eos_token_id=49407, pad_token_id=1),
        scheduler=("DDIMScheduler", dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                         num_train_timesteps=1000, steps_offset=1, clip_sample=False,
                                         set_alpha_to_one=False, prediction_type="v_prediction")),
        pad_token="!",
    ),
}
CONFIGS["sd1_inpaint"] = dict(CONFIGS["sd1"], unet=dict(CONFIGS["sd1"]["unet"], in_channels=9), inpainting=True)


def _variant(base: dict, **changes) -> dict:
    """`base` with some keys of its unet/vae/clip/scheduler configs (or its pad token) replaced."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = {**base[key], **value} if isinstance(value, dict) else value
    return out


# What an original-layout (LDM) file must be to convert without a config: the facts its weights cannot show follow
# SD 1.x/2.x (8 UNet heads at every level in SD1, 64-wide heads in SD2 and in CLIP, 32 groups in every norm, SD's
# schedule and latent scale). tests/ldm_checkpoints.py writes them as single files.
_LDM_CLIP = dict(hidden_size=64, intermediate_size=96, num_attention_heads=1, projection_dim=64)
CONFIGS["sd1-ldm"] = _variant(
    CONFIGS["sd1"],
    unet=dict(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=64, norm_num_groups=32,
              down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
              up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")),
    vae=dict(norm_num_groups=32), clip=dict(_LDM_CLIP, num_hidden_layers=2))
CONFIGS["sd2-ldm"] = _variant(
    CONFIGS["sd2"],
    unet=dict(block_out_channels=(64, 128), cross_attention_dim=64, attention_head_dim=(1, 2)),
    vae=dict(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
             up_block_types=("UpDecoderBlock2D",) * 2, sample_size=16),
    clip=dict(_LDM_CLIP, num_hidden_layers=3))


def _redraw(model, std: float) -> None:
    """Redraws every weight of `model`: matrices and convolutions N(0, std^2 / fan_in) times a gain, so each layer
    keeps the variance of its input; norms' scales N(1, 0.1^2); biases N(0, 0.05^2)."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                fan_in = p[0].numel()
                p.normal_(0, std / fan_in ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.normal_(1, 0.1)
            else:
                p.normal_(0, 0.05)


def build_pipeline(kind: str, tokenizer_folder: "str | os.PathLike[str]", seed: int = 0):
    """The `kind` pipeline in memory (fp32, CPU); its tokenizer reads vocab.json/merges.txt from `tokenizer_folder`."""
    import diffusers
    import torch
    from diffusers import AutoencoderKL, StableDiffusionInpaintPipeline, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if kind not in CONFIGS:
        raise ValueError(f"unknown pipeline kind {kind!r}; choose one of {', '.join(CONFIGS)}")
    cfg = CONFIGS[kind]
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**cfg["unet"]).eval()
    _redraw(unet, 1.0)
    vae = AutoencoderKL(**cfg["vae"]).eval()
    _redraw(vae, 1.0)
    text_encoder = CLIPTextModel(CLIPTextConfig(**cfg["clip"])).eval()
    scheduler_class, scheduler_config = cfg["scheduler"]
    scheduler = getattr(diffusers, scheduler_class)(**scheduler_config)
    tokenizer = clip_tokenizer(tokenizer_folder, pad_token=cfg["pad_token"])
    pipeline_class = StableDiffusionInpaintPipeline if cfg.get("inpainting") else StableDiffusionPipeline
    return pipeline_class(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def write_pipeline(folder: "str | os.PathLike[str]", kind: str, seed: int = 0) -> Path:
    """Builds the `kind` pipeline and saves it into `folder` (replaced if it exists) as a diffusers folder:
    model_index.json, unet/, vae/, text_encoder/ (safetensors), tokenizer/, scheduler/. Returns the folder.

    "sd2" is saved as diffusers 0.42 and transformers 5 save it: the CLIP state dict without the `text_model.`
    prefix, the tokenizer as tokenizer.json. "sd1" is then rewritten the way the SD 1.5 repositories hold it
    (saved by older transformers): `text_model.` prefixed names plus the int64 `position_ids` buffer, and the
    tokenizer as vocab.json, merges.txt, special_tokens_map.json and tokenizer_config.json."""
    import tempfile

    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    with tempfile.TemporaryDirectory() as tok:
        pipe = build_pipeline(kind, tok, seed)
        pipe.save_pretrained(str(folder), safe_serialization=True)
    if kind.startswith("sd1"):
        _legacy_layout(folder, CONFIGS[kind])
    return folder


def _legacy_layout(folder: Path, cfg: dict) -> None:
    import json

    import numpy as np
    from clip_vocab import write_tokenizer_files
    from safetensors.numpy import load_file, save_file

    path = folder / "text_encoder" / "model.safetensors"
    tensors = {("" if k.startswith("text_model.") else "text_model.") + k: v for k, v in load_file(path).items()}
    n_pos = cfg["clip"]["max_position_embeddings"]
    tensors["text_model.embeddings.position_ids"] = np.arange(n_pos, dtype=np.int64).reshape(1, n_pos)
    save_file(tensors, path, metadata={"format": "pt"})
    tokenizer = folder / "tokenizer"
    config = json.loads((tokenizer / "tokenizer_config.json").read_text())
    (tokenizer / "tokenizer.json").unlink()
    write_tokenizer_files(tokenizer)
    special = {k: config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    (tokenizer / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    config.pop("backend", None)
    config.update(do_lower_case=True, errors="replace")
    (tokenizer / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def load_pipeline(folder: "str | os.PathLike[str]"):
    """The saved pipeline back as the diffusers pipeline class it was saved as (fp32, CPU, no safety checker)."""
    import torch
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(str(folder), dtype=torch.float32, safety_checker=None,
                                             requires_safety_checker=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("kind", choices=list(CONFIGS))
    p.add_argument("out", help="folder to write")
    args = p.parse_args()
    print(write_pipeline(args.out, args.kind))


if __name__ == "__main__":
    main()
