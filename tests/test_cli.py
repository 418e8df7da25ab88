"""The quanta command: version, info in text and JSON, system info, and
one-line errors with a non-zero exit."""

import json
import os
import subprocess
import sys

import pytest

import quanta


def quanta_cli(*args, env=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "quanta", *args], capture_output=True, text=True, env=full_env,
                          timeout=120)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quanta: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_version():
    out = quanta_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"quanta {quanta.__version__}"


def test_console_script_is_installed():
    out = subprocess.run(["quanta", "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == f"quanta {quanta.__version__}"


def test_info_text_summarises_long_arrays(qwen_path):
    out = quanta_cli("info", qwen_path)
    assert out.returncode == 0, out.stderr
    assert "GGUF v3" in out.stdout and "291 tensors" in out.stdout
    tokens_line = next(line for line in out.stdout.splitlines() if "tokenizer.ggml.tokens" in line)
    assert "151936" in tokens_line and len(tokens_line) < 400
    assert "blk.23.ffn_down.weight" in out.stdout
    assert "q5_0 x133" in out.stdout
    assert len(out.stdout) < 100_000


def test_info_json_holds_full_metadata(gemma_path):
    out = quanta_cli("info", gemma_path, "--json")
    info = json.loads(out.stdout)
    assert info["metadata"]["general.architecture"] == "gemma3"
    assert len(info["metadata"]["tokenizer.ggml.tokens"]) == 262144
    assert info["metadata_types"]["tokenizer.ggml.scores"] == "array[f32]"
    assert {"name", "shape", "type", "offset"} == set(info["tensors"][0])


def test_info_system():
    out = quanta_cli("info", "--system")
    assert out.returncode == 0
    assert f"kernels {quanta._core.cpu_level()}" in out.stdout
    assert "cuda:" in out.stdout
    info = json.loads(quanta_cli("info", "--system", "--json").stdout)
    assert info["cpu_levels"] == quanta._core.cpu_levels()


@pytest.mark.parametrize("level", quanta._core.cpu_levels())
def test_quanta_cpu_forces_a_level(level):
    out = quanta_cli("info", "--system", env={"QUANTA_CPU": level})
    assert f"kernels {level}" in out.stdout


def test_bad_cpu_level_is_one_line_error():
    assert_one_line_error(quanta_cli("info", "--system", env={"QUANTA_CPU": "sse9"}), "unknown CPU level")


def test_missing_and_non_gguf_files(tmp_path):
    assert_one_line_error(quanta_cli("info", str(tmp_path / "nope.gguf")), "cannot open")
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a model\n")
    assert_one_line_error(quanta_cli("info", str(text)), "bad magic")
    assert_one_line_error(quanta_cli("info", str(tmp_path)), "not a regular file")
    assert_one_line_error(quanta_cli("info"), "needs a FILE")


def test_no_command_prints_help_and_fails():
    out = quanta_cli()
    assert out.returncode == 1 and "usage: quanta" in out.stderr
