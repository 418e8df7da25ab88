"""Each part of a Stable Diffusion file against diffusers on CPU PyTorch: the tiny SD1-like and SD2-like
pipelines (tests/sd_pipelines.py) converted at f32, their text encoder, UNet, VAE decoder and encoder run by
quanta on the same inputs. At q8_0 the parts stay close. Bad files and bad inputs raise typed errors."""

import numpy as np
import pytest
import torch

import quanta
from quanta import _core

KINDS = ["sd1", "sd2"]


def load(path):
    return _core.SdModel(quanta.GGUF(path)._file)


def close(ours, ref, tol):
    err = np.abs(ours - ref).max()
    assert err <= tol * max(1.0, np.abs(ref).max()), f"max abs error {err}"


@pytest.mark.parametrize("kind", KINDS)
def test_config_comes_from_metadata_and_shapes(kind, sd_diffusers, sd_gguf):
    pipe, m = sd_diffusers(kind), load(sd_gguf(kind))
    c = m.config
    assert c["version"] == kind
    assert c["prediction_type"] == pipe.scheduler.config.prediction_type
    assert c["latent_channels"] == pipe.vae.config.latent_channels
    assert c["downscale"] == pipe.vae_scale_factor
    assert c["context_dim"] == pipe.unet.config.cross_attention_dim
    assert c["clip_layers"] == pipe.text_encoder.config.num_hidden_layers
    assert c["clip_width"] == pipe.text_encoder.config.hidden_size
    np.testing.assert_allclose(c["betas"], pipe.scheduler.betas.numpy(), rtol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("skip", [0, 1])
def test_text_encoder_equals_transformers(kind, skip, sd_diffusers, sd_gguf):
    pipe, m = sd_diffusers(kind), load(sd_gguf(kind))
    ids = pipe.tokenizer("A Photo of an astronaut, riding a horse!", padding="max_length", max_length=77,
                         truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        out = pipe.text_encoder(ids, output_hidden_states=True)
        # diffusers' clip_skip: the hidden states `skip` layers before the last, then the final layer norm.
        # (transformers 5's CLIPTextModel holds the norm itself, older ones under .text_model.)
        norm = getattr(pipe.text_encoder, "text_model", pipe.text_encoder).final_layer_norm
        ref = norm(out.hidden_states[-(skip + 1)])[0].numpy()
    ours = m.encode_text(ids[0].tolist(), m.config["clip_layers"] - skip)
    close(ours, ref, 1e-5)


# 16 x 24 latents: not square, so width and height are kept apart; 64 x 72: past a graph's 8192 latent pixels
# at batch 2, so each image runs in a graph of its own, whose feed-forward takes its 4608 tokens in two runs.
@pytest.mark.parametrize("size", [(16, 24), (64, 72)])
@pytest.mark.parametrize("kind", KINDS)
def test_unet_equals_diffusers_for_a_batch_of_two(kind, size, sd_diffusers, sd_gguf):
    pipe, m = sd_diffusers(kind), load(sd_gguf(kind))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, *size, generator=g)
    t = torch.tensor([999.0, 421.5])
    ctx = torch.randn(2, 77, m.config["context_dim"], generator=g)
    with torch.no_grad():
        ref = pipe.unet(x, t, encoder_hidden_states=ctx).sample.numpy()
    close(m.unet(x.numpy(), t.numpy(), ctx.numpy()), ref, 1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_vae_decoder_and_encoder_equal_diffusers(kind, sd_diffusers, sd_gguf):
    pipe, m = sd_diffusers(kind), load(sd_gguf(kind))
    g = torch.Generator().manual_seed(2)
    z = torch.randn(1, 4, 8, 12, generator=g)
    image = torch.rand(1, 3, 16 * m.config["downscale"] // 2, 24 * m.config["downscale"] // 2, generator=g) * 2 - 1
    with torch.no_grad():
        ref_pixels = pipe.vae.decode(z).sample.numpy()
        ref_mean = pipe.vae.encode(image).latent_dist.mean.numpy()
    close(m.decode(z.numpy()), ref_pixels, 1e-5)
    close(m.encode(image.numpy()), ref_mean, 1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_tiled_vae_decode_equals_diffusers_one_pass(kind, sd_diffusers, sd_gguf):
    """Tiles of 32 and 48 latents (3 and 2 windows a side, with halos) over 80 x 96 latents: the pixels equal a
    one-pass decode by diffusers within 2/255 everywhere, tile edges included, since every group norm uses the
    whole image's statistics (each window's own would differ by several /255, see csrc/models/vae_tiles.h)."""
    pipe, m = sd_diffusers(kind), load(sd_gguf(kind))
    z = torch.randn(1, 4, 80, 96, generator=torch.Generator().manual_seed(5)) / 0.18215
    with torch.no_grad():
        ref = pipe.vae.decode(z).sample.clamp(-1, 1).numpy()
    for tile in (32, 48):
        tiled = np.clip(m.decode(z.numpy(), tile), -1, 1)
        assert np.abs(tiled - ref).max() / 2 <= 2 / 255, tile
    with pytest.raises(ValueError, match="at least 32 latents"):
        m.decode(z.numpy(), 16)


@pytest.mark.parametrize("kind", KINDS)
def test_q8_0_parts_stay_close(kind, sd_diffusers, sd_gguf):
    pipe, m = sd_diffusers(kind), load(sd_gguf(kind, "q8_0"))
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 16, 16, generator=g)
    ctx = torch.randn(1, 77, m.config["context_dim"], generator=g)
    with torch.no_grad():
        ref = pipe.unet(x, torch.tensor([500.0]), encoder_hidden_states=ctx).sample.numpy()
    ours = m.unet(x.numpy(), np.array([500.0], np.float32), ctx.numpy())
    rel = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
    assert 0 < rel < 0.05, rel  # not exact (q8_0 weights and activations round), not far: 1.5-2.5% here


def test_an_llm_file_is_not_a_diffusion_model(qwen_path):
    with pytest.raises(quanta.ModelError, match="not a Stable Diffusion pipeline"):
        load(qwen_path)


def _rewrite(src, dst, drop=None, reshape=None):
    """A copy of an f32 file without tensor `drop`, or with tensor reshape[0] given shape reshape[1]."""
    import gguf

    reader = gguf.GGUFReader(str(src))
    meta = quanta.GGUF(src).metadata
    with quanta.GGUFWriter(dst) as w:
        for key, value in meta.items():
            if not key.startswith("GGUF.") and key != "general.alignment":
                w.add_metadata(key, value, "array[f32]" if key == "sd.scheduler.betas" else None)
        for t in reader.tensors:
            if t.name == drop:
                continue
            data = np.array(t.data, dtype=np.float32)
            if reshape and t.name == reshape[0]:
                data = data.reshape(-1)[: int(np.prod(reshape[1]))].reshape(reshape[1])
            w.add_tensor(t.name, data)
    return dst


@pytest.mark.parametrize("drop, reshape, error, match", [
    ("model.diffusion_model.output_blocks.2.0.skip_connection.weight", None, quanta.ModelError,
     "output_blocks.2.0.*skip_connection"),
    ("first_stage_model.decoder.mid.attn_1.q.weight", None, quanta.ModelError, "missing tensor .*mid.attn_1.q.weight"),
    (None, ("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", (32, 16)),
     quanta.ModelError, "attn2.to_v.weight' has shape|UNet attends"),
    (None, ("cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc2.weight", (32, 36)),
     quanta.ModelError, "fc2.weight' has shape"),
])
def test_a_misbuilt_file_names_the_tensor(drop, reshape, error, match, sd_gguf, tmp_path):
    path = _rewrite(sd_gguf("sd1"), tmp_path / "broken.gguf", drop, reshape)
    with pytest.raises(error, match=match):
        load(path)


@pytest.mark.parametrize("what, args, match", [
    ("unet", lambda c: (np.zeros((1, 3, 16, 16), np.float32), np.zeros(1, np.float32),
                        np.zeros((1, 77, c["context_dim"]), np.float32)), "latents has shape"),
    ("unet", lambda c: (np.zeros((1, 4, 10, 16), np.float32), np.zeros(1, np.float32),
                        np.zeros((1, 77, c["context_dim"]), np.float32)), "multiples of"),
    ("unet", lambda c: (np.zeros((2, 4, 16, 16), np.float32), np.zeros(1, np.float32),
                        np.zeros((2, 77, c["context_dim"]), np.float32)), "timesteps has shape"),
    ("decode", lambda c: (np.zeros((1, 4, 8), np.float32),), "latents has shape"),
    ("encode", lambda c: (np.zeros((1, 3, 15, 16), np.float32),), "multiples of"),
    ("encode_text", lambda c: ([1, 2, 3], 1), "77 token ids"),
    ("encode_text", lambda c: ([0] * 77, 99), "clip layers"),
])
def test_bad_inputs_raise_value_errors(what, args, match, sd_gguf):
    m = load(sd_gguf("sd1"))
    with pytest.raises(ValueError, match=match):
        getattr(m, what)(*args(m.config))
