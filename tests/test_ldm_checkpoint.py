"""Files people already have: original-layout (LDM) single files and stable-diffusion.cpp's GGUF files, converted by
quanta (python/quanta/converter/ldm_convert.py, sdcpp_gguf.py, sd_cache.py) and loaded by quanta.Diffusion.

The tiny "sd1-ldm" and "sd2-ldm" pipelines (tests/sd_pipelines.py) follow the SD 1.x/2.x facts a file without a
config cannot show. tests/ldm_checkpoints.py writes them as LDM files (SD1 with and without `text_model.`, SD2 as
OpenCLIP's tower), checked here first by diffusers' own single-file loader, an independent reader, to give back the
pipeline's state dicts exactly. Then: quanta's GGUF made from the single file equals, tensor for tensor and key for
key, the GGUF made from the diffusers folder; its images equal diffusers' (from the folder at f32, from the same
single file through from_single_file at f16); a GGUF written with stable-diffusion.cpp's conventions (no metadata,
no vocabulary, stacked q/k/v, f16 or q8_0 norm scales; tests/ldm_checkpoints.write_sdcpp_gguf, which gives the same
tensors as stable-diffusion-cpp-python 0.4.7's convert, checked in bench/sd_roundtrip.py) loads and generates; the
bundled CLIP vocabulary equals transformers' CLIPTokenizer over open_clip's merges file; bad inputs give one clear
error, and pickles are never opened.
"""

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

import quanta
from clip_vocab import clip_tokenizer, merges_path
from ldm_checkpoints import write_ldm, write_sdcpp_gguf
from sd_pipelines import CONFIGS

PROMPT, NEGATIVE = "A red cube on a wooden table, studio light", "blurry, low quality"
W, H = 48, 32
LAYOUTS = [("sd1-ldm", "hf"), ("sd1-ldm", "hf-legacy"), ("sd2-ldm", "openclip")]
PREDICTION = {"sd1-ldm": None, "sd2-ldm": "v_prediction"}  # what the tiny pipelines' schedulers say


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """quanta.Diffusion's conversions go to a cache of this test's own."""
    monkeypatch.setenv("QUANTA_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def ldm_file(sd_diffusers, tmp_path_factory):
    """ldm_file(kind, text, dtype="float32") -> Path of the pipeline written as one LDM .safetensors."""
    made = {}

    def get(kind, text, dtype="float32"):
        if (kind, text, dtype) not in made:
            path = tmp_path_factory.mktemp("ldm") / f"{kind}-{text}-{dtype}.safetensors"
            write_ldm(path, sd_diffusers(kind), text=text, dtype=dtype)
            made[kind, text, dtype] = path
        return made[kind, text, dtype]

    return get


def read(path):
    """({name: (array, ggml type)}, {key: value}) of a GGUF file, read by gguf-py."""
    r = gguf.GGUFReader(str(path))
    tensors = {}
    for t in r.tensors:
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        tensors[t.name] = (np.array(t.data).reshape(shape) if t.tensor_type in (0, 1) else np.array(t.data),
                           t.tensor_type)
    metadata = {f.name: f.contents() for f in r.fields.values() if not f.name.startswith("GGUF.")}
    return tensors, metadata


def convert(src, out, type="f32", **kwargs):
    quanta.convert(src, out, type=type, progress=False, **kwargs)
    return out


def from_single_file(path, folder):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_single_file(str(path), config=str(folder), torch_dtype=torch.float32,
                                                    safety_checker=None, local_files_only=True)


def diffusers_image(pipe, latents, steps=6):
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, prediction_type=pipe.scheduler.config.prediction_type)
    pipe = StableDiffusionPipeline(**{**pipe.components, "scheduler": scheduler})
    return pipe(PROMPT, negative_prompt=NEGATIVE, height=H, width=W, num_inference_steps=steps, guidance_scale=7.5,
                latents=latents.clone(), output_type="np").images[0]


def quanta_image(sd, latents, steps=6):
    return sd.sample(PROMPT, negative_prompt=NEGATIVE, width=W, height=H, steps=steps, cfg_scale=7.5,
                     sampler="euler", latents=latents.numpy(), output_type="np")


def noise(sd, seed=0):
    f = sd.config["downscale"]
    return torch.randn(1, 4, H // f, W // f, generator=torch.Generator().manual_seed(seed))


def psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2))


# ---- the test files themselves --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, text", [("sd1-ldm", "hf"), ("sd2-ldm", "openclip")])
def test_the_single_files_are_what_diffusers_reads(kind, text, ldm_file, sd_pipeline, sd_diffusers):
    pipe, loaded = sd_diffusers(kind), from_single_file(ldm_file(kind, text), sd_pipeline(kind))
    for part in ("unet", "vae", "text_encoder"):
        want, got = getattr(pipe, part).state_dict(), getattr(loaded, part).state_dict()
        assert sorted(got) == sorted(want), part
        assert all(torch.equal(got[k], want[k]) for k in want), part


def test_the_legacy_text_encoder_names_are_what_diffusers_strips(ldm_file, sd_diffusers):
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint

    checkpoint = {k: torch.from_numpy(v) for k, v in load_file(str(ldm_file("sd1-ldm", "hf-legacy"))).items()}
    state = sd_diffusers("sd1-ldm").text_encoder.state_dict()
    converted = convert_ldm_clip_checkpoint(checkpoint)
    assert all(torch.equal(converted[k], v) for k, v in state.items())


# ---- conversion -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, text", LAYOUTS)
def test_the_single_file_converts_to_the_folder_s_gguf(kind, text, ldm_file, sd_pipeline, tmp_path):
    ours, ours_md = read(convert(ldm_file(kind, text), tmp_path / "ldm.gguf", prediction_type=PREDICTION[kind]))
    ref, ref_md = read(convert(sd_pipeline(kind), tmp_path / "folder.gguf"))
    assert list(ours) == list(ref)  # the same tensors in the same order
    for name, (value, kind_) in ref.items():
        assert ours[name][1] == kind_ and np.array_equal(ours[name][0], value), name
    ours_md.pop("general.name"), ref_md.pop("general.name")
    assert ours_md == ref_md


def test_an_f16_single_file_gives_the_folder_s_f16_gguf(ldm_file, sd_pipeline, tmp_path):
    ours, _ = read(convert(ldm_file("sd2-ldm", "openclip", "float16"), tmp_path / "ldm.gguf", "f16"))
    ref, _ = read(convert(sd_pipeline("sd2-ldm"), tmp_path / "folder.gguf", "f16"))
    assert list(ours) == list(ref)
    for name, (value, kind) in ref.items():
        # f32 tensors (norms, biases, the position embedding) were rounded to f16 in the single file
        want = value.astype(np.float16).astype(np.float32) if kind == 0 else value
        assert ours[name][1] == kind and np.array_equal(ours[name][0], want), name


def test_without_a_prediction_type_sd1_is_epsilon_and_sd2_is_left_to_the_loader(ldm_file, tmp_path):
    _, sd1 = read(convert(ldm_file("sd1-ldm", "hf"), tmp_path / "sd1.gguf"))
    _, sd2 = read(convert(ldm_file("sd2-ldm", "openclip"), tmp_path / "sd2.gguf"))
    assert sd1["sd.prediction_type"] == "epsilon" and sd1["sd.version"] == "sd1"
    assert "sd.prediction_type" not in sd2 and sd2["sd.version"] == "sd2"
    assert quanta.Diffusion(tmp_path / "sd2.gguf").config["prediction_source"] == "guessed"
    loaded = quanta.Diffusion(tmp_path / "sd2.gguf", prediction_type="v_prediction").config
    assert (loaded["prediction_type"], loaded["prediction_source"]) == ("v_prediction", "argument")


def test_cli_converts_a_single_file_to_q8_0(ldm_file, sd_pipeline, tmp_path):
    out = tmp_path / "cli.gguf"
    r = subprocess.run([sys.executable, "-m", "quanta", "convert", str(ldm_file("sd1-ldm", "hf")), str(out),
                        "--type", "q8_0", "-q"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    ref = convert(sd_pipeline("sd1-ldm"), tmp_path / "folder.gguf", "q8_0")
    ours, theirs = read(out)[0], read(ref)[0]
    assert {n: t for n, (_, t) in ours.items()} == {n: t for n, (_, t) in theirs.items()}
    assert gguf.GGMLQuantizationType.Q8_0 in {t for _, t in ours.values()}


# ---- images -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, text", LAYOUTS)
def test_a_single_file_makes_diffusers_image(kind, text, ldm_file, sd_diffusers):
    sd = quanta.Diffusion(ldm_file(kind, text), prediction_type=PREDICTION[kind])
    latents = noise(sd)
    ref = diffusers_image(sd_diffusers(kind), latents)
    assert ref.std() > 0.05
    assert np.abs(quanta_image(sd, latents) - ref).max() <= 1e-3


@pytest.mark.parametrize("kind, text", [("sd1-ldm", "hf"), ("sd2-ldm", "openclip")])
def test_an_f16_single_file_makes_diffusers_image_of_it(kind, text, ldm_file, sd_pipeline, tmp_path):
    path = ldm_file(kind, text, "float16")
    sd = quanta.Diffusion(path, prediction_type=PREDICTION[kind])
    assert {t.type for t in quanta.GGUF(sd._gguf.path).tensors} == {"f16", "f32"}  # converted at its own type
    latents = noise(sd, 1)
    ref = diffusers_image(from_single_file(path, sd_pipeline(kind)), latents)
    assert np.abs(quanta_image(sd, latents) - ref).max() <= 1e-3


def test_the_conversion_is_cached_until_the_file_changes(ldm_file, tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(ldm_file("sd1-ldm", "hf").read_bytes())
    first = Path(quanta.Diffusion(path)._gguf.path)
    assert first.parent == tmp_path / "cache" / "sd" and first.stat().st_size > 0
    stamp = first.stat().st_mtime_ns
    assert Path(quanta.Diffusion(path)._gguf.path) == first and first.stat().st_mtime_ns == stamp
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert Path(quanta.Diffusion(path)._gguf.path) != first


# ---- stable-diffusion.cpp's files -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, text", [("sd1-ldm", "hf"), ("sd2-ldm", "openclip")])
def test_a_stable_diffusion_cpp_f16_file_loads_and_makes_the_same_image(kind, text, ldm_file, sd_pipeline, tmp_path):
    ldm = ldm_file(kind, text, "float16")
    path = tmp_path / "sdcpp-f16.gguf"
    names = write_sdcpp_gguf(path, load_file(str(ldm)), "f16")
    assert not read(path)[1] and any(n.endswith("layer_norm1.weight") for n in names)  # no metadata, f16 norms
    sd = quanta.Diffusion(path, prediction_type=PREDICTION[kind])
    assert sd.config["version"] == kind[:3]
    assert sd.config["clip_layers"] == CONFIGS[kind]["clip"]["num_hidden_layers"]  # SD2: the tower's last one left out
    latents = noise(sd, 2)
    ref = diffusers_image(from_single_file(ldm, sd_pipeline(kind)), latents)
    assert np.abs(quanta_image(sd, latents) - ref).max() <= 1e-3
    assert sd.tokenize(PROMPT + "!!") == quanta.Diffusion(ldm).tokenize(PROMPT + "!!")


@pytest.mark.parametrize("kind, text", [("sd1-ldm", "hf"), ("sd2-ldm", "openclip")])
def test_a_stable_diffusion_cpp_q8_0_file_stays_close(kind, text, ldm_file, tmp_path):
    path = tmp_path / "sdcpp-q8_0.gguf"
    write_sdcpp_gguf(path, load_file(str(ldm_file(kind, text))), "q8_0")
    stored = {t.type for t in quanta.GGUF(path).tensors}
    assert "q8_0" in stored
    q8 = quanta.Diffusion(path, prediction_type=PREDICTION[kind])
    cached = {t.name: t.type for t in quanta.GGUF(q8._gguf.path).tensors}
    assert all(t == "f32" for n, t in cached.items() if n.endswith("norm1.weight"))  # norm scales widened
    assert any(t == "q8_0" for t in cached.values())  # blocks copied as they are
    f32 = quanta.Diffusion(ldm_file(kind, text), prediction_type=PREDICTION[kind])
    latents = noise(f32, 3)
    value = psnr(quanta_image(q8, latents), quanta_image(f32, latents))
    print(f"{kind} stable-diffusion.cpp-style q8_0 against the f32 single file: PSNR {value:.1f} dB")
    assert 25 < value < 200


@pytest.mark.parametrize("shift", [0.0, -5.0])
def test_the_prediction_guess_is_stable_diffusion_cpp_s_test(shift, ldm_file, sd_pipeline, tmp_path):
    """An SD2 file that does not say: one UNet pass on constant input, v-prediction when mean(out - x) < -1;
    computed here with diffusers' UNet on the same weights. shift moves the UNet's output bias, so both answers
    are seen."""
    tensors = load_file(str(ldm_file("sd2-ldm", "openclip")))
    tensors["model.diffusion_model.out.2.bias"] = tensors["model.diffusion_model.out.2.bias"] + np.float32(shift)
    path = tmp_path / "shifted.safetensors"
    save_file(tensors, str(path))
    unet = from_single_file(path, sd_pipeline("sd2-ldm")).unet
    x = torch.full((1, 4, 8, 8), 0.5)
    with torch.no_grad():
        out = unet(x, torch.tensor([999.0]), encoder_hidden_states=torch.full((1, 77, 64), 0.5)).sample
    score = float((out - x).mean())
    print(f"shift {shift}: score {score:.3f}")
    assert abs(score + 1) > 0.05  # far enough from the threshold for float error not to matter
    config = quanta.Diffusion(path).config
    assert config["prediction_source"] == "guessed"
    assert config["prediction_type"] == ("v_prediction" if score < -1 else "epsilon")


# ---- the vocabulary ---------------------------------------------------------------------------------------------


def test_the_bundled_merges_are_open_clip_s_file_with_its_licence():
    from quanta.converter.clip_vocab import MERGES_FILE

    assert MERGES_FILE.is_relative_to(Path(quanta.__file__).parent)  # installed with the package (wheel data)
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (MERGES_FILE, merges_path())]
    assert digest[0] == digest[1]
    licence = (MERGES_FILE.parent / "LICENSE").read_text()
    assert "MIT License" in licence and "Copyright (c) 2021 OpenAI" in licence


@pytest.mark.parametrize("kind, text, pad", [("sd1-ldm", "hf", "<|endoftext|>"), ("sd2-ldm", "openclip", "!")])
def test_the_bundled_vocabulary_tokenizes_as_transformers_does(kind, text, pad, ldm_file, tmp_path):
    from quanta.converter.clip_vocab import clip_vocab

    reference = clip_tokenizer(tmp_path / "tok", pad_token=pad)
    tokens, merges = clip_vocab()
    assert {t: i for i, t in enumerate(tokens)} == reference.get_vocab()
    model = json.loads(reference.backend_tokenizer.to_str())["model"]
    assert [m.split(" ") for m in merges] == [m if isinstance(m, list) else m.split(" ") for m in model["merges"]]
    sd = quanta.Diffusion(ldm_file(kind, text), prediction_type=PREDICTION[kind])
    for s in (PROMPT + "!!", "", "Ünïcödé, 日本語 and emoji 🙂 x" * 5, "a  b\tc\n<|endoftext|>d"):
        assert sd.tokenize(s) == reference(s, padding="max_length", max_length=77, truncation=True).input_ids, s


# ---- errors -----------------------------------------------------------------------------------------------------


class _Trap:
    """Unpickling this would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _edited(ldm_file, tmp_path, edit):
    tensors = load_file(str(ldm_file("sd1-ldm", "hf")))
    edit(tensors)
    path = tmp_path / "edited.safetensors"
    save_file(tensors, str(path))
    return path


def _renamed(tensors, old_prefix, new_prefix):
    for k in [k for k in tensors if k.startswith(old_prefix)]:
        tensors[new_prefix + k[len(old_prefix):]] = tensors.pop(k)


def _truncated(ldm_file, tmp_path):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(ldm_file("sd1-ldm", "hf").read_bytes()[:-1000])
    return path


BAD = [
    ("truncated", _truncated, quanta.FormatError, "corrupt or truncated safetensors"),
    ("garbage", lambda f, t: (t / "g.safetensors").write_bytes(b"\x10" + b"\0" * 7 + b"{}x") and t / "g.safetensors",
     quanta.FormatError, "safetensors"),
    ("missing", lambda f, t: t / "none.safetensors", quanta.FormatError, "no such file"),
    ("llm", lambda f, t: _edited(f, t, lambda d: _renamed(d, "model.diffusion_model.", "model.layers.")),
     quanta.ModelError, "no model.diffusion_model"),
    ("sdxl", lambda f, t: _edited(f, t, lambda d: (_renamed(d, "model.diffusion_model.", "x."),
                                                   d.update({"conditioner.embedders.0.x": np.ones(2, np.float32)}))),
     quanta.UnsupportedError, "SDXL"),
    ("no-vae", lambda f, t: _edited(f, t, lambda d: _renamed(d, "first_stage_model.", "other.")),
     quanta.ModelError, "lacks tensor 'first_stage_model.encoder.conv_in.weight'"),
    ("unknown", lambda f, t: _edited(f, t, lambda d: d.update({"model.diffusion_model.label_emb.0.0.weight":
                                                                np.ones((2, 2), np.float32)})),
     quanta.ModelError, "'model.diffusion_model.label_emb.0.0.weight' has no place"),
    ("inpainting", lambda f, t: _edited(f, t, lambda d: d.update({"model.diffusion_model.input_blocks.0.0.weight":
                                                                   np.ones((32, 9, 3, 3), np.float32)})),
     quanta.UnsupportedError, "9 input channels"),
]


@pytest.mark.parametrize("name, make, error, match", BAD, ids=[b[0] for b in BAD])
def test_bad_single_files_raise_one_clear_error(name, make, error, match, ldm_file, tmp_path):
    src = make(ldm_file, tmp_path)
    out = tmp_path / "out.gguf"
    with pytest.raises(error, match=match):
        convert(src, out)
    with pytest.raises(error, match=match):
        quanta.Diffusion(src)
    r = subprocess.run([sys.executable, "-m", "quanta", "convert", str(src), str(out)], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("quanta: error:"), r.stderr
    assert not out.exists() and not list((tmp_path / "cache").glob("sd/*.gguf"))


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin"])
def test_pickles_are_refused_unopened(suffix, tmp_path):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(pickle.dumps(_Trap(tmp_path / "unpickled")))
    for load in (lambda: convert(path, tmp_path / "out.gguf"), lambda: quanta.Diffusion(path)):
        with pytest.raises(quanta.FormatError, match="pickle checkpoint.*safetensors only"):
            load()
    r = subprocess.run([sys.executable, "-m", "quanta", "sample", "-m", str(path), "-p", "x", "-o",
                        str(tmp_path / "x.png")], capture_output=True, text=True)
    assert r.returncode == 1 and "use the model's .safetensors" in r.stderr.lower()
    assert not (tmp_path / "unpickled").exists()


def test_a_truncated_stable_diffusion_cpp_file_is_a_format_error(ldm_file, tmp_path):
    path = tmp_path / "sdcpp.gguf"
    write_sdcpp_gguf(path, load_file(str(ldm_file("sd1-ldm", "hf"))), "f16")
    path.write_bytes(path.read_bytes()[:-4096])
    with pytest.raises(quanta.FormatError):
        quanta.Diffusion(path)


def test_prediction_type_is_checked(ldm_file, tmp_path):
    with pytest.raises(ValueError, match="prediction_type must be one of epsilon, v_prediction"):
        convert(ldm_file("sd1-ldm", "hf"), tmp_path / "x.gguf", prediction_type="sample")
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        quanta.Diffusion(ldm_file("sd1-ldm", "hf"), prediction_type="flow")
