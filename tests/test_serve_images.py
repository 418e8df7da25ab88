"""`quanta serve --sd-model`: POST /v1/images/generations through the official openai client, on the real Qwen
model beside the tiny SD1-like pipeline (tests/sd_pipelines.py). The server's PNGs hold exactly the pixels
quanta.Diffusion makes for the same settings and seeds (the library itself is checked against diffusers in
tests/test_diffusion.py); bad requests get OpenAI-shaped errors and the server keeps serving."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

import quanta
from serving import quanta_server

SIZE = "48x32"


@pytest.fixture(scope="module")
def sd_path(sd_gguf):
    return str(sd_gguf("sd1"))


@pytest.fixture(scope="module")
def server(qwen_path, sd_path):
    with quanta_server(qwen_path, "-np", "2", "-c", "2048", "-t", "2", "--sd-model", sd_path) as (base, _):
        yield base


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0, timeout=120)


def decode(item):
    return Image.open(io.BytesIO(base64.b64decode(item.b64_json)))


def test_models_lists_both(client, sd_path):
    ids = [m.id for m in client.models.list().data]
    assert ids == ["qwen2.5-coder-0.5b-instruct-q4_k_m", "tiny-sd1-f32"]
    assert client.models.retrieve("tiny-sd1-f32").id == "tiny-sd1-f32"


def test_images_equal_the_library_s_for_each_seed(client, sd_path):
    settings = dict(negative_prompt="blurry", steps=3, cfg_scale=6.5, sampler="dpmpp_2m", scheduler="karras")
    r = client.images.generate(model="tiny-sd1-f32", prompt="a red cube", n=2, size=SIZE,
                               extra_body=dict(seed=40, **settings))
    assert len(r.data) == 2 and r.created > 0
    sd = quanta.Diffusion(sd_path, n_threads=2)
    for i, item in enumerate(r.data):
        png = decode(item)
        assert png.format == "PNG" and png.size == (48, 32)
        assert f"Seed: {40 + i}" in png.text["parameters"]
        ref = sd.sample("a red cube", width=48, height=32, seed=40 + i, **settings)
        assert np.array_equal(np.asarray(png.convert("RGB")), np.asarray(ref))
    assert not np.array_equal(np.asarray(decode(r.data[0])), np.asarray(decode(r.data[1])))


@pytest.mark.parametrize("body, status, fragment", [
    (dict(prompt="x", size="50x32"), 400, "multiples of 8"),
    (dict(prompt="x", size="big"), 400, "WIDTHxHEIGHT"),
    (dict(prompt="x", size=SIZE, response_format="url"), 400, "b64_json only"),
    (dict(prompt="x", size=SIZE, model="dall-e-3"), 404, "does not exist"),
    (dict(prompt="x", size=SIZE, sampler="heun"), 400, "euler_a"),
    (dict(prompt="x", size=SIZE, n=5), 400, "n"),
    (dict(prompt="", size=SIZE), 400, "prompt"),
    (dict(prompt="x", size=SIZE, steps=0), 400, "steps"),
    (dict(prompt="x", size=SIZE, colour="red"), 400, "colour"),
])
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(server, client, body, status, fragment):
    r = httpx.post(server + "/v1/images/generations", json=body, timeout=60)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert fragment in error["message"] and error["type"]
    # Still serving: text and images.
    assert client.completions.create(model="x", prompt="def f(", max_tokens=2).choices[0].text is not None
    assert len(client.images.generate(prompt="ok", size=SIZE, extra_body=dict(steps=1)).data) == 1


def test_a_server_without_an_image_model_says_so(qwen_path):
    with quanta_server(qwen_path, "-np", "1", "-c", "512", "-t", "2") as (base, _):
        c = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="--sd-model"):
            c.images.generate(prompt="a cat", size=SIZE)
