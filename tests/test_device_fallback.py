"""Device "auto" and "cuda" on a machine whose GPU cannot run the model
(issue 15). tests/c/failing_gpu.c stands in for the NVIDIA driver and
libquanta_cuda.so with one device that fails in a chosen way (memory, a
kernel error, non-finite results, no kernels), so CI checks without a GPU what
the engine does when a real one is present but unusable: "auto" falls back to
the CPU, says why in one line and generates what the CPU does; "cuda" raises
the matching typed error at load; the CLI and the C API say the same. Each
case runs in a subprocess, since the driver is found once per process."""

import json
import os
import subprocess
import sys

import pytest

import quanta
from conftest import require_tool

HERE = __import__("pathlib").Path(__file__).parent
MODES = {  # FAILING_GPU mode: (what device_note and the error say, the error device="cuda" raises)
    "alloc": ("out of memory", "MemoryError"),
    "compute": ("illegal memory access", "RuntimeError"),
    "nan": ("non-finite logit", "RuntimeError"),
    "unsupported": ("no kernel for", "UnsupportedError"),
}


@pytest.fixture(scope="module")
def failing_gpu(tmp_path_factory):
    """Environment variables under which the process sees one failing GPU."""
    cc = require_tool("cc")
    lib = tmp_path_factory.mktemp("failing-gpu")
    so = lib / "libquanta_cuda.so"
    subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", f"-I{HERE.parent / 'kernels'}",
                    str(HERE / "c" / "failing_gpu.c"), "-o", str(so)], check=True)
    os.symlink(so, lib / "libcuda.so.1")  # the driver the loader dlopens first
    env = {k: v for k, v in os.environ.items() if k != "QUANTA_DEVICE"}
    env.update(LD_LIBRARY_PATH=str(lib), QUANTA_CUDA_LIB=str(so))
    return lambda mode: {**env, "FAILING_GPU": mode}


def run_python(env, code):
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


PROBE = """
import json, warnings, quanta
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    llm = quanta.LLM({path!r}, n_ctx=64, n_threads=1, device={device!r})
text = llm.generate("Hello", max_tokens=8, temperature=0)
print(json.dumps(dict(device=llm.device, note=llm.device_note, text=text,
                      warnings=[str(w.message) for w in caught if w.category is RuntimeWarning])))
"""


def test_the_failing_gpu_is_seen_as_a_usable_device(failing_gpu):
    info = run_python(failing_gpu("alloc"), "import json, quanta; print(json.dumps(quanta.system_info()['cuda']))")
    assert info["available"] and info["devices"] == ["Failing GPU"], info


@pytest.mark.parametrize("mode", MODES)
def test_auto_falls_back_to_the_cpu_and_says_why(failing_gpu, tiny_gguf, mode):
    path = str(tiny_gguf("qwen2"))
    got = run_python(failing_gpu(mode), PROBE.format(path=path, device="auto"))
    want = quanta.LLM(path, n_ctx=64, n_threads=1, device="cpu").generate("Hello", max_tokens=8, temperature=0)
    assert got["device"] == "cpu" and got["text"] == want
    reason = MODES[mode][0]
    assert "Failing GPU" in got["note"] and reason in got["note"] and "\n" not in got["note"], got["note"]
    assert got["warnings"] == ["running on the CPU: " + got["note"]]


@pytest.mark.parametrize("mode", MODES)
def test_cuda_raises_the_typed_error_at_load(failing_gpu, tiny_gguf, mode):
    reason, error = MODES[mode]
    code = (f"import json, quanta\ntry:\n    quanta.LLM({str(tiny_gguf('qwen2'))!r}, n_ctx=64, device='cuda')\n"
            f"except Exception as e:\n    print(json.dumps([type(e).__name__, str(e)]))")
    name, message = run_python(failing_gpu(mode), code)
    assert name == error and reason in message, (name, message)


def test_without_a_gpu_auto_is_the_cpu_quietly(tiny_gguf):
    if quanta._core.cuda_status()["device_count"] > 0:
        pytest.skip("this machine has a GPU")
    env = {k: v for k, v in os.environ.items() if k != "QUANTA_DEVICE"}
    got = run_python(env, PROBE.format(path=str(tiny_gguf("qwen2")), device="auto"))
    assert got["device"] == "cpu" and got["note"].startswith("no GPU in use: ") and got["warnings"] == []


def test_cli_warns_in_one_line_or_fails_in_one_line(failing_gpu, tiny_gguf):
    run = [sys.executable, "-m", "quanta", "run", "-m", str(tiny_gguf("qwen2")), "-p", "Hello", "-n", "4",
           "--temp", "0", "-t", "1"]
    auto = subprocess.run(run, env=failing_gpu("alloc"), capture_output=True, text=True, timeout=300)
    assert auto.returncode == 0, auto.stderr
    warning = [line for line in auto.stderr.splitlines() if "running on the CPU" in line]
    assert len(warning) == 1 and warning[0].startswith("quanta: warning: running on the CPU: the GPU (Failing GPU)")
    cuda = subprocess.run(run + ["--device", "cuda"], env=failing_gpu("alloc"), capture_output=True, text=True,
                          timeout=300)
    assert cuda.returncode != 0 and cuda.stderr.count("\n") == 1 and "out of memory" in cuda.stderr, cuda.stderr


C_API = """
import ctypes, json, quanta
lib = ctypes.CDLL(quanta.get_lib_dir() + "/libquanta.so")
lib.quanta_model_device.restype = lib.quanta_model_device_note.restype = lib.quanta_last_error.restype = ctypes.c_char_p
out = {{}}
for device in (b"auto", None, b"cuda"):
    m = ctypes.c_void_p()
    status = lib.quanta_model_load_on({path!r}, device, 1, ctypes.byref(m))
    out[str(device)] = [status, (lib.quanta_model_device(m) or lib.quanta_last_error()).decode(),
                        lib.quanta_model_device_note(m).decode()]
    lib.quanta_model_free(m)
print(json.dumps(out))
"""


def test_c_api_loads_on_the_cpu_or_returns_the_code(failing_gpu, tiny_gguf):
    got = run_python(failing_gpu("compute"), C_API.format(path=str(tiny_gguf("qwen2")).encode()))
    for device in ("b'auto'", "None"):
        status, where, note = got[device]
        assert status == 0 and where == "cpu" and "illegal memory access" in note, got
    status, message, note = got["b'cuda'"]
    assert status == 7 and "illegal memory access" in message and note == "", got  # QUANTA_ERR_INTERNAL


def test_diffusion_auto_runs_on_the_cpu_until_cuda_has_its_kernels(failing_gpu, sd_gguf):
    code = (f"import json, warnings, quanta\nwarnings.simplefilter('ignore')\n"
            f"d = quanta.Diffusion({str(sd_gguf('sd1'))!r}, n_threads=1)\n"
            f"try:\n    quanta.Diffusion({str(sd_gguf('sd1'))!r}, device='cuda')\n    e = None\n"
            f"except quanta.UnsupportedError as x:\n    e = str(x)\n"
            f"print(json.dumps([d.device, d.device_note, e]))")
    where, note, error = run_python(failing_gpu("alloc"), code)
    assert where == "cpu" and "no diffusion kernels" in note and "no diffusion kernels" in error


@pytest.mark.cuda
@pytest.mark.skipif(not quanta._core.cuda_status()["available"], reason="needs a CUDA device")
def test_auto_runs_on_a_real_gpu_and_agrees_with_the_cpu(tiny_gguf):
    path = str(tiny_gguf("qwen2"))
    gpu = quanta.LLM(path, n_ctx=64, n_threads=1)
    assert gpu.device == "cuda" and gpu.device_note == ""
    cpu = quanta.LLM(path, n_ctx=64, n_threads=1, device="cpu")
    assert gpu.generate("Hello", max_tokens=8, temperature=0) == cpu.generate("Hello", max_tokens=8, temperature=0)
