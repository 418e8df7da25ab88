"""Image to image, inpainting and batches against diffusers on CPU PyTorch, on the tiny pipelines converted at f32:
quanta.Diffusion.sample with init_image= equals StableDiffusionImg2ImgPipeline, with mask= too
StableDiffusionInpaintPipeline (latent blending for the 4-channel "sd1" and "sd2", the 9-channel UNet of
"sd1_inpaint"), and batch_size= equals num_images_per_prompt image for image, for the same noise. diffusers
samples the VAE posterior and quanta takes its mean, so diffusers runs here with the posterior's sample patched
to its mean; its generator then draws only the noise, which quanta gets as latents=. `quanta sample -i` and bad
inputs are covered too."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import quanta
from test_diffusion import NEGATIVE, PROMPT, H, W, reference_scheduler
from test_sd_model import _rewrite

SAMPLERS = [("euler", "discrete"), ("ddim", "discrete"), ("dpmpp_2m", "karras")]
STEPS, CFG = 8, 7.5


@pytest.fixture
def posterior_mean(monkeypatch):
    """diffusers' VAE encodings become the latent distribution's mean, which quanta uses."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    monkeypatch.setattr(DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mean)


def picture(seed, width=W, height=H):
    """An RGB test image: colour gradients (structure the VAE keeps) plus pixel noise."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, 1 - (x + y) / (width + height)], -1)
    noisy = base + np.random.default_rng(seed).normal(0, 0.1, base.shape)
    return Image.fromarray((np.clip(noisy, 0, 1) * 255).round().astype(np.uint8), "RGB")


def rectangle_mask(width=W, height=H):
    """White (repaint) over a rectangle whose edges fall inside latent pixels, so the downscale rule matters."""
    mask = np.zeros((height, width), np.uint8)
    mask[5:23, 9:35] = 255
    return Image.fromarray(mask, "L")


def noise_for(sd, seed, n=1):
    """What diffusers' generator draws for the noise, for quanta's latents=."""
    f = sd.config["downscale"]
    shape = (n, sd.config["latent_channels"], H // f, W // f)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).numpy()


def reference(pipeline_class, shared, sampler, seed, n=1, **kwargs):
    scheduler = reference_scheduler(sampler, shared.scheduler.config.prediction_type)
    pipe = pipeline_class(**{**shared.components, "scheduler": scheduler})
    return pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=CFG,
                generator=torch.Generator().manual_seed(seed), num_images_per_prompt=n, output_type="np",
                **kwargs).images


def ours(sd, sampler, noise, **kwargs):
    return sd.sample(PROMPT, negative_prompt=NEGATIVE, steps=STEPS, cfg_scale=CFG, sampler=sampler[0],
                     scheduler=sampler[1], latents=noise, output_type="np", **kwargs)


def assert_close(a, b, tol=1e-4):
    assert b.std() > 0.05  # a real image, not a flat one
    err = np.abs(a - b).max()
    assert err <= tol, f"max abs error {err}"


# ---- img2img --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sd1", "sd2"])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_img2img_equals_diffusers(kind, sampler, sd_diffusers, sd_gguf, posterior_mean):
    from diffusers import StableDiffusionImg2ImgPipeline

    sd, image = quanta.Diffusion(sd_gguf(kind)), picture(1)
    ref = reference(StableDiffusionImg2ImgPipeline, sd_diffusers(kind), sampler, 3, image=image, strength=0.6)[0]
    got = ours(sd, sampler, noise_for(sd, 3), init_image=image, strength=0.6)
    assert got.shape == (H, W, 3)
    assert_close(got, ref)


@pytest.mark.parametrize("strength", [0.3, 1.0])
def test_img2img_strength_rule_equals_diffusers(strength, sd_diffusers, sd_gguf, posterior_mean):
    # int(8 * 0.3) = 2 steps run; at 1.0 all 8, still starting from the noised image.
    from diffusers import StableDiffusionImg2ImgPipeline

    sd, image = quanta.Diffusion(sd_gguf("sd1")), picture(2)
    sampler = ("euler", "discrete")
    ref = reference(StableDiffusionImg2ImgPipeline, sd_diffusers("sd1"), sampler, 4, image=image, strength=strength)
    seen = []
    got = ours(sd, sampler, noise_for(sd, 4), init_image=np.asarray(image), strength=strength,
               callback=lambda step, steps, x: seen.append((step, steps)))
    assert_close(got, ref[0])
    run = int(STEPS * strength)
    assert seen == [(i, run) for i in range(1, run + 1)]


def test_low_strength_stays_near_the_init_image(sd_gguf):
    sd, image = quanta.Diffusion(sd_gguf("sd1")), picture(3)
    low = sd.sample(PROMPT, steps=10, init_image=image, strength=0.1, seed=1, output_type="np")
    high = sd.sample(PROMPT, steps=10, init_image=image, strength=0.9, seed=1, output_type="np")
    source = np.asarray(image, np.float32) / 255
    assert np.abs(low - source).mean() < np.abs(high - source).mean()


# ---- inpainting -----------------------------------------------------------------


def test_a_9_channel_unet_converts_and_equals_diffusers(sd_diffusers, sd_gguf):
    pipe, sd = sd_diffusers("sd1_inpaint"), quanta.Diffusion(sd_gguf("sd1_inpaint"))
    assert sd.config["inpainting"] and sd.config["latent_channels"] == 4
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 9, 16, 24, generator=g)
    t = torch.tensor([999.0, 321.0])
    ctx = torch.randn(2, 77, sd.config["context_dim"], generator=g)
    with torch.no_grad():
        ref = pipe.unet(x, t, encoder_hidden_states=ctx).sample.numpy()
    got = sd._model.unet(x.numpy(), t.numpy(), ctx.numpy())
    assert got.shape == (2, 4, 16, 24)
    assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("kind", ["sd1", "sd2", "sd1_inpaint"])
@pytest.mark.parametrize("sampler, strength", [(("euler", "discrete"), 1.0), (("dpmpp_2m", "karras"), 0.75),
                                               (("ddim", "discrete"), 0.6)])
def test_inpainting_equals_diffusers(kind, sampler, strength, sd_diffusers, sd_gguf, posterior_mean):
    # sd1 and sd2 have 4-channel UNets (latent blending), sd1_inpaint a 9-channel one.
    from diffusers import StableDiffusionInpaintPipeline

    sd, image, mask = quanta.Diffusion(sd_gguf(kind)), picture(4), rectangle_mask()
    assert sd.config["inpainting"] == (kind == "sd1_inpaint")
    ref = reference(StableDiffusionInpaintPipeline, sd_diffusers(kind), sampler, 5, image=image, mask_image=mask,
                    strength=strength, height=H, width=W)[0]
    got = ours(sd, sampler, noise_for(sd, 5), init_image=image, mask=mask, strength=strength)
    assert_close(got, ref)


def test_an_inpainting_unet_without_a_mask_repaints_everything(sd_diffusers, sd_gguf):
    # diffusers with an all-white mask at strength 1: pure noise and a blank masked image (its init image is
    # unused). A blank image's latents are ill-conditioned in float32 for this tiny VAE (torch's own drift
    # between runs by up to 8e-3), so diffusers gets them from a float64 copy of its VAE.
    import copy

    from diffusers import StableDiffusionInpaintPipeline

    shared, sd = sd_diffusers("sd1_inpaint"), quanta.Diffusion(sd_gguf("sd1_inpaint"))
    with torch.no_grad():
        blank = copy.deepcopy(shared.vae).double().encode(torch.zeros(1, 3, H, W, dtype=torch.float64))
    blank_latents = (blank.latent_dist.mean * shared.vae.config.scaling_factor).float()
    white = Image.new("L", (W, H), 255)
    sampler = ("euler", "discrete")
    ref = reference(StableDiffusionInpaintPipeline, shared, sampler, 6, image=picture(5), mask_image=white,
                    masked_image_latents=blank_latents, strength=1.0, height=H, width=W)[0]
    assert_close(ours(sd, sampler, noise_for(sd, 6), width=W, height=H), ref)


def test_inpainting_a_4_channel_unet_keeps_the_unmasked_latents(sd_gguf):
    sd, image = quanta.Diffusion(sd_gguf("sd1")), picture(6)
    mask = np.zeros((H, W), np.float32)
    mask[:, : W // 2] = 1.0  # repaint the left half
    last = []
    sd.sample(PROMPT, steps=4, init_image=image, mask=mask, seed=2, sampler="euler_a",
              callback=lambda step, steps, x: last.append(x))
    encoded = sd._model.encode((np.asarray(image, np.float32) / 255 * 2 - 1).transpose(2, 0, 1)[None].copy())
    kept = last[-1][..., W // 4:]  # the latent columns right of the mask
    np.testing.assert_allclose(kept, encoded[..., W // 4:] * sd.config["latent_scale"], rtol=0, atol=1e-6)
    assert not np.allclose(last[-1][..., : W // 4], encoded[..., : W // 4] * sd.config["latent_scale"], atol=0.1)


# ---- batches --------------------------------------------------------------------


def test_batch_equals_diffusers_num_images_per_prompt(sd_diffusers, sd_gguf):
    from diffusers import StableDiffusionPipeline

    sd = quanta.Diffusion(sd_gguf("sd2"))
    noise = noise_for(sd, 7, n=3)
    ref = reference(StableDiffusionPipeline, sd_diffusers("sd2"), ("euler", "discrete"), 0, n=3,
                    latents=torch.from_numpy(noise), height=H, width=W)
    got = ours(sd, ("euler", "discrete"), noise, width=W, height=H, batch_size=3)
    assert isinstance(got, list) and len(got) == 3
    for a, b in zip(got, ref):
        assert_close(a, b)
    assert np.abs(got[0] - got[1]).max() > 0.05  # each image its own noise


def test_img2img_batch_equals_diffusers(sd_diffusers, sd_gguf, posterior_mean):
    from diffusers import StableDiffusionImg2ImgPipeline

    sd, image = quanta.Diffusion(sd_gguf("sd1")), picture(7)
    sampler = ("dpmpp_2m", "karras")
    ref = reference(StableDiffusionImg2ImgPipeline, sd_diffusers("sd1"), sampler, 8, n=2, image=image,
                    strength=0.7)
    got = ours(sd, sampler, noise_for(sd, 8, n=2), init_image=image, strength=0.7, batch_size=2)
    for a, b in zip(got, ref):
        assert_close(a, b)


@pytest.mark.parametrize("cfg", [7.0, 1.0])
def test_batch_image_i_is_the_single_image_at_seed_plus_i(cfg, sd_gguf):
    sd = quanta.Diffusion(sd_gguf("sd1"))
    args = dict(width=W, height=H, steps=4, sampler="euler_a", cfg_scale=cfg, init_image=None)
    batch = sd.sample(PROMPT, seed=20, batch_size=3, **args)
    assert [image.info["parameters"].count(f"Seed: {20 + i},") for i, image in enumerate(batch)] == [1, 1, 1]
    for i, image in enumerate(batch):
        single = sd.sample(PROMPT, seed=20 + i, **args)
        assert np.array_equal(np.asarray(image), np.asarray(single))
    assert len(sd.sample(PROMPT, seed=20, batch_size=1, **args)) == 1  # batch_size given: a list


# ---- bad input ------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(init_image=picture(0), width=W + 8), ValueError, "init_image is 48x32, but width x height is 56x"),
    (dict(init_image=np.zeros((H, W), np.uint8)), ValueError, r"init_image must have shape \(height, width, 3\)"),
    (dict(init_image=np.full((H, W, 3), 2.0)), ValueError, r"float values must lie in \[0, 1\]"),
    (dict(init_image=np.zeros((H, W, 3), np.int32)), TypeError, "init_image must be a PIL image"),
    (dict(init_image=picture(0), strength=0), ValueError, r"strength must be in \(0, 1\]"),
    (dict(init_image=picture(0), strength=1.5), ValueError, r"strength must be in \(0, 1\]"),
    (dict(init_image=picture(0), strength=0.1), ValueError, "runs no step"),
    (dict(strength=0.5), ValueError, "strength needs an init_image"),
    (dict(mask=rectangle_mask()), ValueError, "a mask needs an init_image"),
    (dict(init_image=picture(0), mask=np.zeros((H, W + 1), np.float32)), ValueError, "mask must have the init "),
    (dict(init_image=picture(0), mask=np.zeros((H, W, 3), np.float32)), ValueError, "mask must have the init "),
    (dict(batch_size=0), ValueError, "batch_size must be 1..64"),
    (dict(batch_size=2, latents=np.zeros((1, 4, H // 2, W // 2), np.float32)), ValueError,
     r"latents must have shape \(2, 4"),
    (dict(batch_size=2, seed=2**63 - 1), ValueError, "seed must be in"),
])
def test_bad_arguments_raise_typed_errors(kwargs, error, match, sd_gguf):
    sd = quanta.Diffusion(sd_gguf("sd1"))
    args = dict(steps=4)
    if "init_image" not in kwargs:
        args.update(width=W, height=H)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        sd.sample(PROMPT, **args)


def test_a_file_without_a_vae_encoder_refuses_img2img_but_still_draws(sd_gguf, tmp_path):
    path = _rewrite(sd_gguf("sd1"), tmp_path / "no-encoder.gguf", drop="first_stage_model.encoder.conv_in.weight")
    sd = quanta.Diffusion(path)
    assert not sd.config["has_vae_encoder"]
    with pytest.raises(quanta.ModelError, match="no VAE encoder, which an init_image needs"):
        sd.sample(PROMPT, steps=2, init_image=picture(0))
    assert sd.sample(PROMPT, width=W, height=H, steps=2, seed=1).size == (W, H)


# ---- quanta sample -i -------------------------------------------------------------


def test_sample_with_an_init_image_and_a_mask_writes_the_library_s_image(sd_gguf, tmp_path):
    init, mask, out = tmp_path / "init.png", tmp_path / "mask.png", tmp_path / "out.png"
    picture(8).save(init)
    rectangle_mask().save(mask)
    r = subprocess.run([sys.executable, "-m", "quanta", "sample", "-m", str(sd_gguf("sd1")), "-p", PROMPT,
                        "-i", str(init), "--strength", "0.6", "--mask", str(mask), "--steps", "5", "--seed", "3",
                        "-t", "1", "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "sampling 3/3" in r.stderr  # int(5 * 0.6) steps run
    sd = quanta.Diffusion(sd_gguf("sd1"))
    ref = sd.sample(PROMPT, steps=5, seed=3, init_image=picture(8), strength=0.6, mask=rectangle_mask())
    with Image.open(out) as png:
        assert png.size == (W, H)  # the init image's size
        assert "Denoising strength: 0.6" in png.text["parameters"]
        assert np.array_equal(np.asarray(png.convert("RGB")), np.asarray(ref))
