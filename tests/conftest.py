"""Shared fixtures. The real models are fetched once into the quanta cache
(tools/fetch_models.py does the same from the command line)."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import quanta
from quanta import fetch


def _model(name):
    try:
        return str(fetch.fetch(name, quiet=True))
    except OSError as e:  # no network: a real failure, never a skip
        pytest.fail(f"cannot fetch real model {name}: {e}")


@pytest.fixture(scope="session")
def qwen_path():
    return _model("qwen2.5-coder-0.5b-instruct-q4_k_m")


@pytest.fixture(scope="session")
def gemma_path():
    return _model("gemma-3-270m-q4_k_m")


@pytest.fixture(scope="session")
def hf_gguf_tokenizer():
    """hf_gguf_tokenizer(path) -> transformers' tokenizer read from that GGUF file, made once per session: each
    costs 30-50 s on CI's machine (transformers rebuilds the vocabulary), and four test files want the real
    models'. Deep-copy it before changing it."""
    made = {}

    def get(path):
        path = Path(path)
        if path not in made:
            from transformers import AutoTokenizer

            made[path] = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        return made[path]

    return get


@pytest.fixture(scope="session", params=["qwen", "gemma"])
def real_model_path(request):
    return request.getfixturevalue(f"{request.param}_path")


@pytest.fixture(params=quanta._core.cpu_levels())
def cpu_level(request):
    """Runs a test once per CPU kernel level this machine has, restoring the default after."""
    before = quanta._core.cpu_level()
    quanta._core.set_cpu_level(request.param)
    yield request.param
    quanta._core.set_cpu_level(before)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def results_in_threads(fn, n=4):
    """fn() run on n threads at once; their results, in thread order (for thread-safety tests)."""
    import threading

    results = [None] * n

    def work(k):
        results[k] = fn()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def sigint_default():
    """preexec_fn for a child that is sent SIGINT: a shell running tests in the background (CI under nohup or
    `&`) starts them with SIGINT ignored, which Python and the child inherit, so Ctrl-C would do nothing."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def require_tool(name):
    """A path to `name`; in CI a missing tool fails the test, elsewhere it skips."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if os.environ.get("CI"):
            pytest.fail(message + " (.ci/run should install it)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """tiny_checkpoint(arch) -> (transformers model, HF folder), made once per session (tests/hf_checkpoints.py)."""
    from hf_checkpoints import write_checkpoint

    made = {}

    def get(arch):
        if arch not in made:
            folder = tmp_path_factory.mktemp(f"hf-{arch}")
            made[arch] = (write_checkpoint(folder, arch), folder)
        return made[arch]

    return get


@pytest.fixture(scope="session")
def tiny_gguf(tiny_checkpoint, tmp_path_factory):
    """tiny_gguf(arch, type) -> path of the tiny checkpoint converted by quanta.convert, made once per session."""
    made = {}

    def get(arch, type="f32"):
        if (arch, type) not in made:
            _, folder = tiny_checkpoint(arch)
            path = tmp_path_factory.mktemp(f"gguf-{arch}") / f"tiny-{arch}-{type}.gguf"
            quanta.convert(folder, path, type=type, progress=False)
            made[arch, type] = path
        return made[arch, type]

    return get


@pytest.fixture(scope="session")
def sd_pipeline(tmp_path_factory):
    """sd_pipeline(kind) -> Path of the tiny "sd1" or "sd2" diffusers pipeline folder, made once per session
    (tests/sd_pipelines.py; load it with sd_pipelines.load_pipeline(path))."""
    from sd_pipelines import write_pipeline

    made = {}

    def get(kind):
        if kind not in made:
            made[kind] = write_pipeline(tmp_path_factory.mktemp(f"sd-{kind}") / kind, kind)
        return made[kind]

    return get


@pytest.fixture(scope="session")
def sd_diffusers(sd_pipeline):
    """sd_diffusers(kind) -> the tiny pipeline loaded by diffusers (fp32, CPU), once per session; shared, so a
    test that needs another scheduler builds a new pipeline from its components instead of changing it."""
    from sd_pipelines import load_pipeline

    made = {}

    def get(kind):
        if kind not in made:
            made[kind] = load_pipeline(sd_pipeline(kind))
        return made[kind]

    return get


@pytest.fixture(scope="session")
def sd_gguf(sd_pipeline, tmp_path_factory):
    """sd_gguf(kind, type="f32") -> Path of the tiny pipeline converted by quanta.convert, made once per session."""
    made = {}

    def get(kind, type="f32"):
        if (kind, type) not in made:
            path = tmp_path_factory.mktemp(f"sd-gguf-{kind}") / f"tiny-{kind}-{type}.gguf"
            quanta.convert(sd_pipeline(kind), path, type=type, progress=False)
            made[kind, type] = path
        return made[kind, type]

    return get
