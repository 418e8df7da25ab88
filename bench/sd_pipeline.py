#!/usr/bin/env python3
"""An SD1.5-shaped random Stable Diffusion pipeline for the diffusion benchmarks (issue 12): Stable Diffusion
1.5's real layer sizes (UNet 320/640/1280/1280, 2 resnets per level, 8 heads, context 768: about 860M parameters;
VAE 128/256/512/512: about 84M; CLIP ViT-L/14's text tower: 768 wide, 12 layers, 12 heads, quick-GELU: about
123M), random weights under a fixed seed, the real CLIP vocabulary (tests/clip_vocab.py, needs
`pip install --no-deps open-clip-torch`) and SD 1.5's PNDM scheduler, saved as a diffusers folder with fp16
safetensors (about 2.1 GB).

    python bench/sd_pipeline.py OUT_DIR          # then: quanta convert OUT_DIR sd15.gguf --type q8_0

Weights are redrawn N(0, 1/fan_in) (norm scales N(1, 0.1^2), biases N(0, 0.05^2)) so every layer keeps its
input's variance and the image is neither flat nor saturated; the speed does not depend on it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

UNET = dict(sample_size=64, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768,
            attention_head_dim=8, norm_num_groups=32)
VAE = dict(in_channels=3, out_channels=3, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
           down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
           latent_channels=4, norm_num_groups=32, sample_size=512, scaling_factor=0.18215)
CLIP = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
            hidden_act="quick_gelu", layer_norm_eps=1e-5, vocab_size=49408, max_position_embeddings=77,
            projection_dim=768, bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                 steps_offset=1, skip_prk_steps=True, set_alpha_to_one=False, prediction_type="epsilon")


def _redraw(model) -> None:
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0, 1 / p[0].numel() ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.normal_(1, 0.1)
            else:
                p.normal_(0, 0.05)


def write_sd15_pipeline(out: "str | os.PathLike[str]", seed: int = 0, dtype: str = "float16", unet: dict = UNET,
                        vae: dict = VAE, clip: dict = CLIP) -> dict:
    """Builds the SD1.5-shaped pipeline (or one of other sizes: unet, vae, clip configs) and saves it into `out`
    (replaced if it exists). Returns the parameter count of each component."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from clip_vocab import clip_tokenizer

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet).eval()
    _redraw(unet)
    vae = AutoencoderKL(**vae).eval()
    _redraw(vae)
    text_encoder = CLIPTextModel(CLIPTextConfig(**clip)).eval()
    counts = {name: sum(p.numel() for p in m.parameters())
              for name, m in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder))}
    with tempfile.TemporaryDirectory() as tok:
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(tok), unet=unet,
                                       scheduler=PNDMScheduler(**SCHEDULER), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
        pipe.to(getattr(torch, dtype))
        pipe.save_pretrained(str(out), safe_serialization=True)
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", help="folder to write (replaced if it exists)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    args = p.parse_args()
    counts = write_sd15_pipeline(args.out, args.seed, args.dtype)
    for name, n in counts.items():
        print(f"{name}: {n / 1e6:.1f}M parameters")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
