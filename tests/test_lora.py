"""LoRA in quanta.Diffusion and `quanta sample --lora` against diffusers' own LoRA loading: random LoRAs for the
tiny SD1-like and SD2-like pipelines, in kohya's format (tests/lora_files.py: kohya's documented naming, with LoCon's
convolution LoRAs on the resnets and samplers), peft's (made by peft, saved by diffusers' save_lora_weights with
its adapter metadata: lora_alpha, an alpha_pattern) and diffusers' older lora.down/lora.up names, on the UNet and
the text encoder. diffusers loads each file (load_lora_weights) and fuses it (fuse_lora(lora_scale=w)); quanta
merges the same file at load with loras=[(path, w)]. At f32 the text encoder, the UNet and the final image equal
diffusers'; on a q8_0 file the image stays close to the f32 one. Files that do not fit raise typed errors naming
the tensor."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import quanta
from lora_files import LOCON, factors, kohya_lora
from sd_pipelines import load_pipeline

PROMPT, NEGATIVE = "A red cube on a wooden table, studio light", "blurry, low quality"
W, H = 48, 32
RANK = 4
PEFT_UNET = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1",
             "conv2", "conv_shortcut", "time_emb_proj"]
PEFT_TEXT = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


@pytest.fixture(autouse=True)
def transformers_takes_peft_0_21(monkeypatch):
    """transformers 5.24's load_adapter (which diffusers calls for a text encoder LoRA) asks for peft >= 0.22,
    which no index here has yet; it loads plain LoRA with 0.21, which the text encoder comparisons check."""
    import transformers.integrations.peft as integration

    monkeypatch.setattr(integration, "MIN_PEFT_VERSION", "0.21.0", raising=False)


def peft_lora(folder, out_dir, seed=0, old_names=False):
    """A LoRA made by peft on the UNet and the text encoder and saved by diffusers' save_lora_weights with its
    adapter metadata (lora_alpha = rank / 2 and an alpha_pattern for to_k in the UNet). old_names: the same
    factors under diffusers' names from before peft (the UNet's lora.down/lora.up, the text encoder's
    lora_linear_layer.down/up), which carried no metadata: alpha = rank."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    pipe = load_pipeline(folder)
    unet_config = LoraConfig(r=RANK, lora_alpha=RANK / 2, alpha_pattern={"to_k": 2 * RANK},
                             target_modules=PEFT_UNET, init_lora_weights=False)
    text_config = LoraConfig(r=RANK, lora_alpha=RANK, target_modules=PEFT_TEXT, init_lora_weights=False)
    pipe.unet.add_adapter(unet_config)
    inject_adapter_in_model(text_config, pipe.text_encoder)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for model in (pipe.unet, pipe.text_encoder):
            for name, module in model.named_modules():
                if hasattr(module, "lora_A"):
                    down, up = factors(rng, module.base_layer, RANK)
                    module.lora_A["default"].weight.copy_(torch.from_numpy(down.astype(np.float32)))
                    module.lora_B["default"].weight.copy_(torch.from_numpy(up.astype(np.float32)))
    unet, text = get_peft_model_state_dict(pipe.unet), get_peft_model_state_dict(pipe.text_encoder)
    out_dir.mkdir()
    path = out_dir / "pytorch_lora_weights.safetensors"
    if old_names:
        tensors = {"unet." + k.replace(".lora_A.", ".lora.down.").replace(".lora_B.", ".lora.up."): v
                   for k, v in unet.items()}
        tensors.update({"text_encoder." + k.replace(".lora_A.", ".lora_linear_layer.down.")
                        .replace(".lora_B.", ".lora_linear_layer.up."): v for k, v in text.items()})
        save_file({k: v.numpy() for k, v in tensors.items()}, str(path))
        return path
    StableDiffusionPipeline.save_lora_weights(str(out_dir), unet_lora_layers=unet, text_encoder_lora_layers=text,
                                              unet_lora_adapter_metadata=unet_config.to_dict(),
                                              text_encoder_lora_adapter_metadata=text_config.to_dict())
    return path


def make_lora(fmt, kind, sd_pipeline, sd_diffusers, tmp_path, seed=0):
    if fmt == "kohya":
        return kohya_lora(sd_diffusers(kind), tmp_path / f"kohya-{kind}-{seed}.safetensors", LOCON, RANK, seed=seed)
    out = tmp_path / f"{fmt}-{kind}-{seed}"
    return peft_lora(sd_pipeline(kind), out, seed, old_names=fmt == "diffusers-old")


def fused(folder, loras):
    """diffusers' pipeline with each (file, weight) loaded and fused, in order."""
    pipe = load_pipeline(folder)
    for path, weight in loras:
        pipe.load_lora_weights(str(path))
        pipe.fuse_lora(lora_scale=weight)
        pipe.unload_lora_weights()  # keeps the fused weights
    return pipe


def close(ours, ref, tol):
    err = np.abs(ours - ref).max()
    assert err <= tol * max(1.0, np.abs(ref).max()), f"max abs error {err}"


def text_and_unet(pipe, m):
    """(diffusers', quanta's) final text embeddings and UNet outputs on the same inputs."""
    ids = pipe.tokenizer(PROMPT, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(2, 4, 8, 12, generator=g), torch.tensor([999.0, 421.5])
    ctx = torch.randn(2, 77, m.config["context_dim"], generator=g)
    with torch.no_grad():
        text = pipe.text_encoder(ids).last_hidden_state[0].numpy()
        unet = pipe.unet(x, t, encoder_hidden_states=ctx).sample.numpy()
    ours = m.encode_text(ids[0].tolist(), m.config["clip_layers"]), m.unet(x.numpy(), t.numpy(), ctx.numpy())
    return (text, unet), ours


@pytest.mark.parametrize("kind", ["sd1", "sd2"])
@pytest.mark.parametrize("fmt", ["kohya", "peft", "diffusers-old"])
def test_text_encoder_and_unet_equal_diffusers_fused(fmt, kind, sd_pipeline, sd_diffusers, sd_gguf, tmp_path):
    lora = make_lora(fmt, kind, sd_pipeline, sd_diffusers, tmp_path)
    (text, unet), (our_text, our_unet) = text_and_unet(fused(sd_pipeline(kind), [(lora, 0.7)]),
                                                       quanta.Diffusion(sd_gguf(kind), loras=[(lora, 0.7)])._model)
    (plain_text, plain_unet), _ = text_and_unet(sd_diffusers(kind), quanta.Diffusion(sd_gguf(kind))._model)
    assert np.abs(text - plain_text).max() > 0.05 and np.abs(unet - plain_unet).max() > 0.05  # the LoRA matters
    close(our_text, text, 1e-5)
    close(our_unet, unet, 1e-5)


def test_two_loras_add_up(sd_pipeline, sd_diffusers, sd_gguf, tmp_path):
    a = make_lora("kohya", "sd1", sd_pipeline, sd_diffusers, tmp_path, seed=1)
    b = make_lora("peft", "sd1", sd_pipeline, sd_diffusers, tmp_path, seed=2)
    loras = [(a, 0.6), (b, -0.4)]
    ref, ours = text_and_unet(fused(sd_pipeline("sd1"), loras), quanta.Diffusion(sd_gguf("sd1"), loras=loras)._model)
    for o, r in zip(ours, ref):
        close(o, r, 1e-5)


def test_bf16_files_read_as_their_values(sd_diffusers, sd_gguf, tmp_path):
    from safetensors.numpy import load_file
    from safetensors.torch import save_file as save_torch

    lora = load_file(str(kohya_lora(sd_diffusers("sd1"), tmp_path / "f16.safetensors", LOCON, RANK)))
    bf16 = {k: torch.from_numpy(v.astype(np.float32)).to(torch.bfloat16) for k, v in lora.items()}
    save_torch(bf16, str(tmp_path / "bf16.safetensors"))
    save_file({k: v.float().numpy() for k, v in bf16.items()}, str(tmp_path / "f32.safetensors"))
    x, t = np.ones((1, 4, 8, 8), np.float32), np.array([500.0], np.float32)
    ctx = np.ones((1, 77, 32), np.float32)
    a, b = (quanta.Diffusion(sd_gguf("sd1"), loras=[(tmp_path / f, 1.0)])._model.unet(x, t, ctx)
            for f in ("bf16.safetensors", "f32.safetensors"))
    assert np.array_equal(a, b)


def reference_image(pipe, noise):
    from diffusers import EulerDiscreteScheduler

    pipe.scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                            steps_offset=1, prediction_type=pipe.scheduler.config.prediction_type)
    return pipe(PROMPT, negative_prompt=NEGATIVE, height=H, width=W, num_inference_steps=8, guidance_scale=7.5,
                latents=noise.clone(), output_type="np").images[0]


def noise_for(sd, seed=0):
    f = sd.config["downscale"]
    return torch.randn(1, 4, H // f, W // f, generator=torch.Generator().manual_seed(seed))


def our_image(sd, noise):
    return sd.sample(PROMPT, negative_prompt=NEGATIVE, width=W, height=H, steps=8, cfg_scale=7.5, sampler="euler",
                     latents=noise.numpy(), output_type="np")


@pytest.mark.parametrize("fmt, kind", [("kohya", "sd1"), ("peft", "sd2")])
def test_image_equals_diffusers_fused_at_f32(fmt, kind, sd_pipeline, sd_diffusers, sd_gguf, tmp_path):
    lora = make_lora(fmt, kind, sd_pipeline, sd_diffusers, tmp_path)
    sd = quanta.Diffusion(sd_gguf(kind), loras=[(lora, 0.8)])
    noise = noise_for(sd)
    ref = reference_image(fused(sd_pipeline(kind), [(lora, 0.8)]), noise)
    ours = our_image(sd, noise)
    assert np.abs(ours - our_image(quanta.Diffusion(sd_gguf(kind)), noise)).max() > 0.1  # the LoRA shows
    assert np.abs(ours - ref).max() <= 1e-3


def psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2))


def test_q8_0_with_lora_stays_close_to_f32_with_lora(sd_pipeline, sd_diffusers, sd_gguf, tmp_path):
    lora = make_lora("kohya", "sd1", sd_pipeline, sd_diffusers, tmp_path)
    f32 = quanta.Diffusion(sd_gguf("sd1"), loras=[(lora, 0.8)])
    noise = noise_for(f32, 3)
    ref = our_image(f32, noise)
    q8 = our_image(quanta.Diffusion(sd_gguf("sd1", "q8_0"), loras=[(lora, 0.8)]), noise)
    plain = our_image(quanta.Diffusion(sd_gguf("sd1")), noise)
    print(f"q8_0 + LoRA against f32 + LoRA: {psnr(q8, ref):.1f} dB; f32 without the LoRA: {psnr(plain, ref):.1f} dB")
    assert 25 < psnr(q8, ref) < 200 and psnr(q8, ref) > psnr(plain, ref) + 10


# ---- files that do not fit ------------------------------------------------------------------------------------


def kohya_file(path, tensors):
    save_file({k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}, str(path))
    return path


TO_Q = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"


@pytest.mark.parametrize("tensors, error, match", [
    ({"lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight": np.ones((2, 32)),
      "lora_unet_down_blocks_7_attentions_0_proj_in.lora_up.weight": np.ones((32, 2))},
     quanta.ModelError, "'lora_unet_down_blocks_7_attentions_0_proj_in' has no place"),
    ({"lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": np.ones((2, 32)),
      "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": np.ones((32, 2))},
     quanta.ModelError, "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"),
    ({TO_Q + ".lora_down.weight": np.ones((2, 40)), TO_Q + ".lora_up.weight": np.ones((32, 2))},
     quanta.ModelError, r"\(down \[2, 40\], up \[32, 2\]\) does not fit tensor "
                        r"'model\.diffusion_model\.input_blocks\.1\.1\.transformer_blocks\.0\.attn1\.to_q\.weight' "
                        r"\[32, 32\]"),
    ({TO_Q + ".lora_down.weight": np.ones((2, 32, 3, 3)), TO_Q + ".lora_up.weight": np.ones((32, 2, 1, 1))},
     quanta.ModelError, "does not fit tensor"),
    ({TO_Q + ".lora_down.weight": np.ones((2, 32))}, quanta.FormatError, "has no up tensor"),
    ({TO_Q + ".lora_down.weight": np.full((2, 32), np.nan), TO_Q + ".lora_up.weight": np.ones((32, 2))},
     quanta.ModelError, "not finite"),
    ({TO_Q + ".hada_w1_a": np.ones((2, 32))}, quanta.UnsupportedError, f"'{TO_Q}.hada_w1_a' is a LoHa tensor"),
    ({TO_Q + ".lora_mid.weight": np.ones((2, 2, 3, 3))}, quanta.UnsupportedError, "Tucker"),
])
def test_a_lora_that_does_not_fit_names_the_tensor(tensors, error, match, sd_gguf, tmp_path):
    path = kohya_file(tmp_path / "bad.safetensors", tensors)
    with pytest.raises(error, match=match):
        quanta.Diffusion(sd_gguf("sd1"), loras=[(path, 1.0)])


def test_a_lora_for_the_other_model_is_refused(sd_pipeline, sd_diffusers, sd_gguf, tmp_path):
    lora = make_lora("kohya", "sd2", sd_pipeline, sd_diffusers, tmp_path)
    with pytest.raises(quanta.ModelError, match="a LoRA for another model"):
        quanta.Diffusion(sd_gguf("sd1"), loras=[(lora, 1.0)])


def test_bad_files_and_weights(sd_gguf, tmp_path):
    bad = tmp_path / "junk.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(quanta.FormatError, match="junk.safetensors"):
        quanta.Diffusion(sd_gguf("sd1"), loras=[(bad, 1.0)])
    with pytest.raises(FileNotFoundError, match="no-such.safetensors"):
        quanta.Diffusion(sd_gguf("sd1"), loras=[(tmp_path / "no-such.safetensors", 1.0)])
    good = kohya_file(tmp_path / "ok.safetensors", {TO_Q + ".lora_down.weight": np.ones((2, 32)),
                                                    TO_Q + ".lora_up.weight": np.ones((32, 2))})
    with pytest.raises(ValueError, match="not a finite number"):
        quanta.Diffusion(sd_gguf("sd1"), loras=[(good, float("nan"))])
    with pytest.raises(TypeError, match=r"\(path, weight\) pairs"):
        quanta.Diffusion(sd_gguf("sd1"), loras=[str(good)])


# ---- quanta sample --lora and quanta serve --lora -------------------------------------------------------------


def quanta_cli(*args):
    return subprocess.run([sys.executable, "-m", "quanta", *args], capture_output=True, text=True, timeout=300)


def test_sample_with_loras_equals_the_api(sd_pipeline, sd_diffusers, sd_gguf, tmp_path):
    from PIL import Image

    a = make_lora("kohya", "sd1", sd_pipeline, sd_diffusers, tmp_path, seed=1)
    b = make_lora("kohya", "sd1", sd_pipeline, sd_diffusers, tmp_path, seed=2)
    out = tmp_path / "cube.png"
    r = quanta_cli("sample", "-m", str(sd_gguf("sd1")), "-p", PROMPT, "-W", str(W), "-H", str(H), "--steps", "3",
                   "--sampler", "euler", "--seed", "11", "-t", "1", "--lora", f"{a}:0.6", "--lora", str(b),
                   "-o", str(out))
    assert r.returncode == 0, r.stderr
    sd = quanta.Diffusion(sd_gguf("sd1"), loras=[(a, 0.6), (b, 1.0)])
    ref = sd.sample(PROMPT, width=W, height=H, steps=3, sampler="euler", seed=11)
    with Image.open(out) as png:
        assert np.array_equal(np.asarray(png.convert("RGB")), np.asarray(ref))


@pytest.mark.parametrize("arg, fragment", [("/no/such.safetensors:0.5", "/no/such.safetensors"),
                                           ("x.safetensors:inf", "is not PATH or PATH:WEIGHT")])
def test_sample_lora_errors_are_one_line(arg, fragment, sd_gguf, tmp_path):
    r = quanta_cli("sample", "-m", str(sd_gguf("sd1")), "-p", "x", "-W", str(W), "-H", str(H), "--lora", arg,
                   "-o", str(tmp_path / "x.png"))
    assert r.returncode != 0 and fragment in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "x.png").exists()


def test_serve_with_a_lora_makes_the_library_s_image(qwen_path, sd_pipeline, sd_diffusers, sd_gguf, tmp_path):
    import base64
    import io

    import openai
    from PIL import Image

    from serving import quanta_server

    lora = make_lora("kohya", "sd1", sd_pipeline, sd_diffusers, tmp_path)
    sd_path = str(sd_gguf("sd1"))
    with quanta_server(qwen_path, "-np", "1", "-c", "1024", "-t", "2", "--sd-model", sd_path,
                       "--lora", f"{lora}:0.7") as (base, _):
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
        r = client.images.generate(prompt=PROMPT, size=f"{W}x{H}", extra_body=dict(seed=5, steps=3))
    png = Image.open(io.BytesIO(base64.b64decode(r.data[0].b64_json)))
    ref = quanta.Diffusion(sd_path, n_threads=2, loras=[(lora, 0.7)]).sample(PROMPT, width=W, height=H, seed=5,
                                                                               steps=3)
    assert np.array_equal(np.asarray(png.convert("RGB")), np.asarray(ref))


def test_serve_lora_needs_an_image_model(qwen_path, tmp_path):
    r = quanta_cli("serve", "-m", qwen_path, "--lora", str(tmp_path / "x.safetensors"))
    assert r.returncode == 1 and "--lora needs --sd-model" in r.stderr and "Traceback" not in r.stderr, r.stderr
