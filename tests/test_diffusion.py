"""quanta.Diffusion and `quanta sample` against diffusers' StableDiffusionPipeline on CPU PyTorch: the tiny
SD1-like (eps, quick-GELU CLIP, conv proj) and SD2-like (v-prediction, GELU CLIP, linear proj, head dims 16)
pipelines converted at f32 give diffusers' final image for the same initial latents with euler, ddim and
dpmpp_2m with karras, at CFG 7.5 with a negative prompt; the prompt goes through quanta's own CLIP tokenizer
and text encoder. q8_0 stays close (PSNR against f32). Seeds repeat across runs and thread counts."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import quanta

KINDS = ["sd1", "sd2"]
PROMPT, NEGATIVE = "A red cube on a wooden table, studio light", "blurry, low quality"
W, H = 48, 32  # not square, so width and height cannot be swapped unnoticed


def reference_scheduler(name, prediction):
    """The diffusers scheduler quanta's sampler names stand for (SD's betas and offset, the class defaults)."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    common = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                  prediction_type=prediction)
    if name == ("euler", "discrete"):
        return EulerDiscreteScheduler(**common)
    if name == ("ddim", "discrete"):
        return DDIMScheduler(clip_sample=False, set_alpha_to_one=False, **common)
    if name == ("dpmpp_2m", "karras"):
        return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True,
                                           lower_order_final=True, **common)
    raise AssertionError(name)


def initial_noise(sd, seed=0, width=W, height=H):
    f = sd.config["downscale"]
    return torch.randn(1, sd.config["latent_channels"], height // f, width // f,
                       generator=torch.Generator().manual_seed(seed))


def diffusers_image(shared, sampler, latents, guidance=7.5, steps=8):
    from diffusers import StableDiffusionPipeline

    scheduler = reference_scheduler(sampler, shared.scheduler.config.prediction_type)
    pipe = StableDiffusionPipeline(**{**shared.components, "scheduler": scheduler})
    return pipe(PROMPT, negative_prompt=NEGATIVE, height=H, width=W, num_inference_steps=steps,
                guidance_scale=guidance, latents=latents.clone(), output_type="np").images[0]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sampler", [("euler", "discrete"), ("ddim", "discrete"), ("dpmpp_2m", "karras")])
def test_image_equals_diffusers_at_f32(kind, sampler, sd_diffusers, sd_gguf):
    pipe, sd = sd_diffusers(kind), quanta.Diffusion(sd_gguf(kind))
    noise = initial_noise(sd)
    ref = diffusers_image(pipe, sampler, noise)
    ours = sd.sample(PROMPT, negative_prompt=NEGATIVE, width=W, height=H, steps=8, cfg_scale=7.5,
                     sampler=sampler[0], scheduler=sampler[1], latents=noise.numpy(), output_type="np")
    assert ours.shape == (H, W, 3) and ours.dtype == np.float32
    assert ref.std() > 0.1  # a real image, not a flat one
    assert np.abs(ours - ref).max() <= 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_guidance_one_is_a_single_conditional_pass(kind, sd_diffusers, sd_gguf):
    pipe, sd = sd_diffusers(kind), quanta.Diffusion(sd_gguf(kind))
    noise = initial_noise(sd, 1)
    ref = diffusers_image(pipe, ("euler", "discrete"), noise, guidance=1.0, steps=4)
    ours = sd.sample(PROMPT, negative_prompt=NEGATIVE, width=W, height=H, steps=4, cfg_scale=1.0,
                     sampler="euler", latents=noise.numpy(), output_type="np")
    assert np.abs(ours - ref).max() <= 1e-3


def psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2))


# The lowest PSNR against f32 each type may give on the tiny pipelines, whose UNets' convolutions are quantized
# like the linears (measured: f16 sd1 66.8 dB, sd2 63.0; q8_0 34.8, 32.1; q4_k_m (q5_0 rows here) 21.9, 20.5).
_MIN_PSNR = {"f16": 50, "q8_0": 28, "q4_k_m": 17}


@pytest.mark.parametrize("file_type", ["f16", "q8_0", "q4_k_m"])
@pytest.mark.parametrize("kind", KINDS)
def test_quantized_images_stay_close_to_f32(kind, file_type, sd_gguf):
    f32, q = quanta.Diffusion(sd_gguf(kind)), quanta.Diffusion(sd_gguf(kind, file_type))
    noise = initial_noise(f32, 2).numpy()
    args = dict(width=W, height=H, steps=8, cfg_scale=7.5, sampler="euler", latents=noise, output_type="np")
    a, b = f32.sample(PROMPT, **args), q.sample(PROMPT, **args)
    value = psnr(a, b)
    print(f"{kind} {file_type} PSNR against f32: {value:.1f} dB")
    assert _MIN_PSNR[file_type] < value < 200  # close but not identical (every type rounds)


def test_the_same_seed_gives_the_same_image_on_any_thread_count(sd_gguf):
    one, two = quanta.Diffusion(sd_gguf("sd1"), n_threads=1), quanta.Diffusion(sd_gguf("sd1"), n_threads=2)
    args = dict(width=W, height=H, steps=4, sampler="euler_a", output_type="np")
    a = one.sample(PROMPT, seed=7, **args)
    assert np.array_equal(a, two.sample(PROMPT, seed=7, **args))
    assert np.array_equal(a, one.sample(PROMPT, seed=7, **args))
    assert not np.array_equal(a, one.sample(PROMPT, seed=8, **args))
    one.sample(PROMPT, **args)
    assert isinstance(one.last_seed, int)  # a random seed, reported


def test_pil_image_callback_and_parameters(sd_gguf):
    sd = quanta.Diffusion(sd_gguf("sd1"))
    seen = []
    image = sd.sample(PROMPT, negative_prompt=NEGATIVE, width=W, height=H, steps=3, seed=5, sampler="dpmpp_2m",
                      scheduler="karras", callback=lambda step, steps, x: seen.append((step, steps, x.shape)))
    f = sd.config["downscale"]
    assert seen == [(i, 3, (1, 4, H // f, W // f)) for i in (1, 2, 3)]
    assert image.size == (W, H) and image.mode == "RGB"
    # PIL's pixels are diffusers' rounding of the float image.
    ref = sd.sample(PROMPT, negative_prompt=NEGATIVE, width=W, height=H, steps=3, seed=5, sampler="dpmpp_2m",
                    scheduler="karras", output_type="np")
    assert np.array_equal(np.asarray(image), (ref * 255).round().astype(np.uint8))
    text = image.info["parameters"]
    assert text.startswith(PROMPT + "\nNegative prompt: " + NEGATIVE + "\n")
    assert "Steps: 3, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 5, Size: 48x32" in text


def test_tokenize_equals_the_pipeline_tokenizer(sd_diffusers, sd_gguf):
    for kind in KINDS:
        ids = sd_diffusers(kind).tokenizer(PROMPT + "!!", padding="max_length", max_length=77, truncation=True).input_ids
        assert quanta.Diffusion(sd_gguf(kind)).tokenize(PROMPT + "!!") == ids


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(width=44), ValueError, "width 44 must be a multiple of 8"),
    (dict(height=0), ValueError, "height 0 must be a multiple"),
    (dict(steps=0), ValueError, "steps must be at least 1"),
    (dict(sampler="heun"), ValueError, "euler_a"),
    (dict(scheduler="exponential"), ValueError, "karras"),
    (dict(sampler="ddim", scheduler="karras"), ValueError, "karras"),
    (dict(clip_skip=9), ValueError, "clip_skip"),
    (dict(cfg_scale=-1), ValueError, "cfg_scale"),
    (dict(latents=np.zeros((1, 4, 3, 3), np.float32)), ValueError, "latents must have shape"),
    (dict(output_type="latent"), ValueError, "output_type"),
    (dict(seed=-1), ValueError, "seed"),
])
def test_bad_arguments_raise_typed_errors(kwargs, error, match, sd_gguf):
    sd = quanta.Diffusion(sd_gguf("sd1"))
    args = dict(width=W, height=H, steps=2)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        sd.sample(PROMPT, **args)


def test_an_llm_file_is_refused(qwen_path):
    with pytest.raises(quanta.ModelError, match="not a Stable Diffusion pipeline"):
        quanta.Diffusion(qwen_path)


# ---- quanta sample --------------------------------------------------------------


def quanta_cli(*args):
    return subprocess.run([sys.executable, "-m", "quanta", *args], capture_output=True, text=True, timeout=300)


def test_sample_writes_a_png_with_the_parameters(sd_gguf, tmp_path):
    from PIL import Image

    out = tmp_path / "cube.png"
    r = quanta_cli("sample", "-m", str(sd_gguf("sd2")), "-p", PROMPT, "-n", NEGATIVE, "-W", str(W), "-H", str(H),
                   "--steps", "3", "--sampler", "euler", "--seed", "11", "-t", "1", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert "s/step" in r.stderr and "sampling 3/3" in r.stderr and "seed 11" in r.stderr
    with Image.open(out) as png:
        assert png.size == (W, H)
        assert "Seed: 11" in png.text["parameters"] and "Sampler: Euler," in png.text["parameters"]
        pixels = np.asarray(png.convert("RGB"))
    sd = quanta.Diffusion(sd_gguf("sd2"))
    ref = sd.sample(PROMPT, negative_prompt=NEGATIVE, width=W, height=H, steps=3, sampler="euler", seed=11)
    assert np.array_equal(pixels, np.asarray(ref))


@pytest.mark.parametrize("args, fragment", [
    (["-W", "50"], "width 50 must be a multiple of 8"),
    (["--steps", "0"], "steps must be at least 1"),
    (["-m", "/no/such.gguf"], "/no/such.gguf"),
    (["--vae-tile-size", "30"], "vae_tile_size 30 must be a multiple of 2 from 64"),
])
def test_sample_errors_are_one_line(args, fragment, sd_gguf, tmp_path):
    base = ["sample", "-m", str(sd_gguf("sd1")), "-p", "x", "-W", str(W), "-H", str(H), "-o", str(tmp_path / "x.png")]
    r = quanta_cli(*(base + args))
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("quanta: error: ")]
    assert len(errors) == 1 and fragment in errors[0] and r.stderr.strip().endswith(errors[0]), r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "x.png").exists()


def test_vae_tiling_keeps_the_image(sd_gguf):
    """A 176x144 image decoded in 64-pixel tiles (32 latents at sd1's factor 2: 3 x 3 windows) equals its
    one-pass decode within 2/255 at every pixel; sizes that cannot tile are errors."""
    sd = quanta.Diffusion(sd_gguf("sd1"))
    args = dict(width=176, height=144, steps=2, sampler="euler", seed=3, output_type="np")
    whole = sd.sample(PROMPT, vae_tiling=False, **args)
    tiled = sd.sample(PROMPT, vae_tile_size=64, **args)
    assert 0 < np.abs(tiled - whole).max() <= 2 / 255
    with pytest.raises(ValueError, match="vae_tile_size 62 must be a multiple of 2 from 64"):
        sd.sample(PROMPT, vae_tile_size=62, **args)
