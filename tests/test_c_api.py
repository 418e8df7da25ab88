"""The C API: the examples in tests/c build with -std=c11 -Wall -Werror against
the installed header and library and run: gguf_info agrees with gguf-py,
generate prints what quanta.LLM.generate returns, threads checks cancel and
the threading rules with pthreads. The rest of the LLM calls are driven
through ctypes and compared with quanta.LLM (whose tokenizer and logits are
tested against Hugging Face elsewhere). The library exports nothing but
quanta_* symbols."""

import ctypes
import inspect
import os
import subprocess

import gguf
import numpy as np
import pytest

import quanta
from conftest import require_tool
from divergence import kld

HERE = __import__("pathlib").Path(__file__).parent


def build_c(tmp_path_factory, name, *flags):
    """Compiles tests/c/NAME.c as an embedding app would, against the installed header and library."""
    cc = require_tool("cc")
    exe = tmp_path_factory.mktemp("c") / name
    subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", *flags, f"-I{quanta.get_include()}",
                    str(HERE / "c" / f"{name}.c"), "-o", str(exe), f"-L{quanta.get_lib_dir()}", "-lquanta",
                    f"-Wl,-rpath,{quanta.get_lib_dir()}", "-lm"], check=True)
    return exe


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    return build_c(tmp_path_factory, "gguf_info")


def run_example(exe, *args):
    out = subprocess.run([str(exe), *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())


def test_example_matches_gguf_py(example, real_model_path):
    ref = gguf.GGUFReader(real_model_path)
    # f32, q5_0/q4_k and q6_k/q8_0 tensors
    for tensor in ["output_norm.weight", "blk.0.attn_q.weight", "blk.3.ffn_down.weight"]:
        info = run_example(example, real_model_path, tensor)
        assert info["version"] == quanta.__version__
        assert info["cpu_level"] == quanta._core.cpu_level()
        assert info["missing_file_error"] == "i/o error"
        assert info["architecture"] == ref.fields["general.architecture"].contents()
        assert int(info["n_tensors"]) == len(ref.tensors)
        assert int(info["n_metadata"]) == len([k for k in ref.fields if not k.startswith("GGUF.")])
        t = next(t for t in ref.tensors if t.name == tensor)
        name, type_name, dims = info["tensor"].split()
        assert (name, type_name) == (tensor, t.tensor_type.name.lower())
        assert [int(d) for d in dims.split("x")] == [int(d) for d in t.shape]
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
        assert float(info["sum_abs"]) == pytest.approx(np.abs(values).sum(), rel=1e-9)
        assert float(info["sum"]) == pytest.approx(values.sum(), rel=1e-9, abs=1e-9 * np.abs(values).sum())
        assert np.float32(info["first"]) == np.float32(values.reshape(-1)[0])  # %.9g round-trips a float


def test_example_reports_corrupt_files(example, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    out = subprocess.run([str(example), str(bad)], capture_output=True, text=True)
    assert out.returncode == 1
    assert "format error" in out.stderr and "cannot fit" in out.stderr


def test_library_exports_only_quanta_symbols():
    nm = require_tool("nm")
    lib = f"{quanta.get_lib_dir()}/libquanta.so"
    out = subprocess.run([nm, "-D", "--defined-only", lib], capture_output=True, text=True, check=True).stdout
    symbols = [line.split()[-1] for line in out.splitlines() if line.strip()]
    assert "quanta_gguf_open" in symbols and "quanta_last_error" in symbols
    assert set(SIGNATURES) <= set(symbols)
    assert {"quanta_model_n_vocab", "quanta_context_n_tokens", "quanta_n_logits"} <= set(symbols)
    assert [s for s in symbols if not s.startswith("quanta_")] == []


def test_header_compiles_as_cplusplus(tmp_path):
    cxx = require_tool("c++")
    src = tmp_path / "use.cpp"
    src.write_text('#include <quanta.h>\nint main() { return quanta_version() == nullptr; }\n')
    subprocess.run([cxx, "-std=c++17", "-Wall", "-Werror", f"-I{quanta.get_include()}", str(src),
                    "-o", str(tmp_path / "use"), f"-L{quanta.get_lib_dir()}", "-lquanta",
                    f"-Wl,-rpath,{quanta.get_lib_dir()}"], check=True)
    assert subprocess.run([str(tmp_path / "use")]).returncode == 0


# ---- text generation from C: tests/c/generate.c ---------------------------------------------

PROMPTS = [("def fib(n):", 40), ("The capital of France is", 30), ("Write a haiku about the sea.", 50)]


@pytest.fixture(scope="module")
def generate_exe(tmp_path_factory):
    return build_c(tmp_path_factory, "generate")


@pytest.fixture(scope="module")
def qwen(qwen_path):
    return quanta.LLM(qwen_path)


def test_generate_prints_what_llm_generate_returns(generate_exe, qwen, qwen_path):
    for prompt, n in PROMPTS:
        ref = qwen.generate(prompt, max_tokens=n, temperature=0)
        out = subprocess.run([str(generate_exe), qwen_path, prompt, str(n)], capture_output=True)
        assert out.returncode == 0, out.stderr
        assert out.stderr == b""
        assert out.stdout == ref.encode() and len(ref) > n  # n tokens of text, not an early stop


def test_generate_streams_piece_by_piece(generate_exe, qwen, qwen_path):
    prompt, n = PROMPTS[0]
    full = qwen.generate(prompt, max_tokens=n, temperature=0).encode()
    proc = subprocess.Popen([str(generate_exe), qwen_path, prompt, str(n)], stdout=subprocess.PIPE)
    try:
        first = os.read(proc.stdout.fileno(), 1 << 16)  # what has been flushed when the first bytes arrive
        rest = proc.stdout.read()
    finally:
        proc.stdout.close()
        proc.wait()
    assert proc.returncode == 0
    assert first + rest == full
    assert 0 < len(first) < len(full) // 4


def test_generate_reports_errors_on_one_line(generate_exe, qwen_path, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    no_model = tmp_path / "no_model.gguf"
    with quanta.GGUFWriter(no_model) as w:
        w.add_metadata("general.architecture", "no-such-arch")
    cases = [
        ([str(tmp_path / "missing.gguf"), "hi", "5"], ["i/o error", "missing.gguf"]),
        ([str(bad), "hi", "5"], ["format error"]),
        ([str(no_model), "hi", "5"], ["model error", "no-such-arch"]),
        ([qwen_path, "hi", "-3"], ["invalid argument", "max_tokens must not be negative"]),
        ([qwen_path, "hi", "five"], ["N must be a 32-bit integer"]),
        ([qwen_path, "hi", "99999999999"], ["N must be a 32-bit integer"]),
    ]
    for args, words in cases:
        out = subprocess.run([str(generate_exe), *args], capture_output=True, text=True)
        assert out.returncode == 1, (args, out.stderr)
        assert out.stdout == ""
        assert out.stderr.endswith("\n") and out.stderr.count("\n") == 1, out.stderr
        for word in words:
            assert word in out.stderr, (args, out.stderr)
    usage = subprocess.run([str(generate_exe), qwen_path], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_readme_example_builds_and_generates(tmp_path, qwen, qwen_path):
    readme = (HERE.parent / "README.md").read_text()
    section = readme[readme.index("## Embedding quanta in an app"):]
    source = section[section.index("```c\n") + 5:section.index("```", section.index("```c\n") + 5)]
    (tmp_path / "app.c").write_text(source)
    cc = require_tool("cc")
    lib_dir = quanta.get_lib_dir()
    subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", str(tmp_path / "app.c"), f"-I{quanta.get_include()}",
                    f"-L{lib_dir}", "-lquanta", f"-Wl,-rpath,{lib_dir}", "-o", str(tmp_path / "app")], check=True)
    out = subprocess.run([str(tmp_path / "app"), qwen_path, "def is_prime(n):"], capture_output=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == qwen.generate("def is_prime(n):", max_tokens=64, temperature=0).encode()
    bad = subprocess.run([str(tmp_path / "app"), str(tmp_path / "none.gguf"), "x"], capture_output=True, text=True)
    assert bad.returncode == 1 and "none.gguf" in bad.stderr


# ---- the LLM calls through ctypes -------------------------------------------------------------

QUANTA_OK, INVALID, IO, FORMAT, MODEL, UNSUPPORTED, OOM, INTERNAL, OVERFLOW, CANCELLED, TOO_SMALL = range(11)
FINISH_STOP, FINISH_LENGTH, FINISH_CANCELLED, FINISH_CALLBACK = range(4)
SEED_RANDOM = 2**64 - 1


class SamplerParams(ctypes.Structure):
    _fields_ = [("temperature", ctypes.c_float), ("top_k", ctypes.c_int32), ("top_p", ctypes.c_float),
                ("min_p", ctypes.c_float), ("repeat_penalty", ctypes.c_float), ("presence_penalty", ctypes.c_float),
                ("frequency_penalty", ctypes.c_float), ("penalty_last_n", ctypes.c_int32), ("seed", ctypes.c_uint64)]


class GenerateParams(ctypes.Structure):
    _fields_ = [("sampling", SamplerParams), ("max_tokens", ctypes.c_int32),
                ("stop", ctypes.POINTER(ctypes.c_char_p)), ("n_stop", ctypes.c_size_t),
                ("context_shift", ctypes.c_int32)]


class GenerateResult(ctypes.Structure):
    _fields_ = [("finish", ctypes.c_int), ("n_prompt_tokens", ctypes.c_int32), ("n_generated_tokens", ctypes.c_int32)]


class ContextParams(ctypes.Structure):
    _fields_ = [("n_ctx", ctypes.c_int32), ("n_batch", ctypes.c_int32), ("n_seq", ctypes.c_int32)]


PIECE_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t, ctypes.c_void_p)
P = ctypes.c_void_p
I32, SZ = ctypes.c_int32, ctypes.c_size_t
I32P, SZP = ctypes.POINTER(I32), ctypes.POINTER(SZ)
SIGNATURES = {
    "quanta_last_error": (ctypes.c_char_p, []),
    "quanta_status_name": (ctypes.c_char_p, [ctypes.c_int]),
    "quanta_model_load": (ctypes.c_int, [ctypes.c_char_p, I32, ctypes.POINTER(P)]),
    "quanta_model_free": (None, [P]),
    "quanta_model_n_vocab": (I32, [P]),
    "quanta_model_n_ctx_train": (I32, [P]),
    "quanta_model_n_threads": (I32, [P]),
    "quanta_model_bos": (I32, [P]),
    "quanta_model_eos": (I32, [P]),
    "quanta_model_is_end_of_generation": (ctypes.c_int, [P, I32]),
    "quanta_tokenize": (ctypes.c_int, [P, ctypes.c_char_p, SZ, ctypes.c_int, ctypes.c_int, I32P, SZ, SZP]),
    "quanta_detokenize": (ctypes.c_int, [P, I32P, SZ, ctypes.c_int, ctypes.c_char_p, SZ, SZP]),
    "quanta_context_params_default": (ContextParams, []),
    "quanta_context_create": (ctypes.c_int, [P, ctypes.POINTER(ContextParams), ctypes.POINTER(P)]),
    "quanta_context_free": (None, [P]),
    "quanta_context_n_ctx": (I32, [P]),
    "quanta_context_n_seq": (I32, [P]),
    "quanta_context_n_vocab": (I32, [P]),
    "quanta_context_n_tokens": (I32, [P, I32]),
    "quanta_decode": (ctypes.c_int, [P, I32P, I32P, I32P, ctypes.POINTER(ctypes.c_int8), I32]),
    "quanta_eval": (ctypes.c_int, [P, I32, I32P, I32]),
    "quanta_truncate": (ctypes.c_int, [P, I32, I32]),
    "quanta_n_logits": (I32, [P]),
    "quanta_get_logits": (ctypes.c_int, [P, I32, ctypes.POINTER(ctypes.POINTER(ctypes.c_float))]),
    "quanta_copy_logits": (ctypes.c_int, [P, I32, ctypes.POINTER(ctypes.c_float), SZ]),
    "quanta_sampler_params_default": (SamplerParams, []),
    "quanta_sampler_create": (ctypes.c_int, [ctypes.POINTER(SamplerParams), ctypes.POINTER(P)]),
    "quanta_sampler_free": (None, [P]),
    "quanta_sampler_sample": (ctypes.c_int, [P, ctypes.POINTER(ctypes.c_float), I32, I32P]),
    "quanta_sampler_accept": (ctypes.c_int, [P, I32]),
    "quanta_sampler_reset": (ctypes.c_int, [P]),
    "quanta_generate_params_default": (GenerateParams, []),
    "quanta_generate": (ctypes.c_int, [P, ctypes.c_char_p, SZ, ctypes.POINTER(GenerateParams), PIECE_CALLBACK, P,
                                       ctypes.POINTER(GenerateResult)]),
    "quanta_cancel": (ctypes.c_int, [P]),
}


@pytest.fixture(scope="module")
def lib():
    lib = ctypes.CDLL(os.path.join(quanta.get_lib_dir(), "libquanta.so"))
    for name, (restype, argtypes) in SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def last_error(lib):
    return lib.quanta_last_error().decode()


def ids_array(ids):
    return (I32 * max(len(ids), 1))(*ids)


class Model:
    """A quanta_model, freed when the test is done."""

    def __init__(self, lib, path, n_threads=0):
        self.lib = lib
        self.handle = P()
        status = lib.quanta_model_load(os.fsencode(path), n_threads, ctypes.byref(self.handle))
        assert status == QUANTA_OK, last_error(lib)

    def tokenize(self, text: bytes, add_bos=True, special=True):
        n = SZ()
        status = self.lib.quanta_tokenize(self.handle, text, len(text), add_bos, special, None, 0, ctypes.byref(n))
        if status == TOO_SMALL:
            buf = (I32 * n.value)()
            status = self.lib.quanta_tokenize(self.handle, text, len(text), add_bos, special, buf, n.value,
                                              ctypes.byref(n))
            assert status == QUANTA_OK, last_error(self.lib)
            return list(buf[:n.value])
        assert status == QUANTA_OK, last_error(self.lib)  # no tokens at all
        return []

    def detokenize(self, ids, special=False) -> bytes:
        n = SZ()
        status = self.lib.quanta_detokenize(self.handle, ids_array(ids), len(ids), special, None, 0, ctypes.byref(n))
        assert status == TOO_SMALL, last_error(self.lib)  # even "" needs its NUL
        buf = ctypes.create_string_buffer(n.value + 1)
        status = self.lib.quanta_detokenize(self.handle, ids_array(ids), len(ids), special, buf, n.value + 1,
                                            ctypes.byref(n))
        assert status == QUANTA_OK, last_error(self.lib)
        return buf.raw[:n.value]

    def context(self, **params):
        return Context(self, **params)

    def close(self):
        self.lib.quanta_model_free(self.handle)


class Context:
    def __init__(self, model, **params):
        self.lib = model.lib
        p = self.lib.quanta_context_params_default()
        for k, v in params.items():
            setattr(p, k, v)
        self.handle = P()
        status = self.lib.quanta_context_create(model.handle, ctypes.byref(p), ctypes.byref(self.handle))
        assert status == QUANTA_OK, last_error(self.lib)
        self.n_vocab = self.lib.quanta_context_n_vocab(self.handle)

    def decode(self, tokens, seqs=None, positions=None, logits=None):
        n = len(tokens)
        arr = lambda v, t=I32: None if v is None else (t * n)(*v)
        return self.lib.quanta_decode(self.handle, arr(tokens), arr(seqs), arr(positions), arr(logits, ctypes.c_int8), n)

    def logits(self, i):
        out = np.empty(self.n_vocab, dtype=np.float32)
        status = self.lib.quanta_copy_logits(self.handle, i, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                             out.size)
        assert status == QUANTA_OK, last_error(self.lib)
        return out

    def generate(self, prompt: str, stop=(), **sampling):
        p = self.lib.quanta_generate_params_default()
        p.max_tokens = sampling.pop("max_tokens", p.max_tokens)
        for k, v in sampling.items():
            setattr(p.sampling, k, v)
        stops = (ctypes.c_char_p * max(len(stop), 1))(*[s.encode() for s in stop])
        p.stop, p.n_stop = stops, len(stop)
        pieces = []

        def on_piece(piece, length, _):
            pieces.append(ctypes.string_at(piece, length).decode())  # strict: every piece is whole UTF-8
            return 0

        result = GenerateResult()
        data = prompt.encode()
        status = self.lib.quanta_generate(self.handle, data, len(data), ctypes.byref(p), PIECE_CALLBACK(on_piece),
                                          None, ctypes.byref(result))
        return status, pieces, result

    def close(self):
        self.lib.quanta_context_free(self.handle)


@pytest.fixture
def c_model(lib, request):
    """c_model(path) -> Model, freed after the test."""
    made = []

    def load(path, **kw):
        made.append(Model(lib, path, **kw))
        return made[-1]

    yield load
    for m in made:
        m.close()


TEXTS = ["Hello world", "  leading spaces,\ttabs\nand lines\n\n", "héllo wörld — 你好 🌍 naïve", "",
         "x = [i**2 for i in range(10)]  # squares", "<|im_start|>user\nHi!<|im_end|>", "<start_of_turn>user\nHi"]


def test_tokenize_and_detokenize_match_llm(c_model, real_model_path):
    llm = quanta.LLM(real_model_path, n_ctx=64)
    m = c_model(real_model_path)
    assert m.lib.quanta_model_n_vocab(m.handle) == llm.n_vocab
    assert m.lib.quanta_model_n_ctx_train(m.handle) == llm.config["n_ctx_train"]
    assert m.lib.quanta_model_bos(m.handle) == (llm._tokenizer.bos if llm._tokenizer.bos is not None else -1)
    assert m.lib.quanta_model_eos(m.handle) == llm._tokenizer.eos
    assert m.lib.quanta_model_is_end_of_generation(m.handle, llm._tokenizer.eos) == 1
    assert m.lib.quanta_model_is_end_of_generation(m.handle, m.tokenize(b"Hello", add_bos=False)[0]) == 0
    assert m.lib.quanta_model_is_end_of_generation(m.handle, llm.n_vocab) == 0
    specials = 0
    for text in TEXTS:
        for add_bos in (False, True):
            for special in (False, True):
                ref = llm.tokenize(text, add_bos=add_bos, special=special)
                ids = m.tokenize(text.encode(), add_bos, special)
                assert ids == ref, (text, add_bos, special)
                specials += special and ids != llm.tokenize(text, add_bos=add_bos, special=False)
        ids = llm.tokenize(text, add_bos=False, special=True)
        for special in (False, True):
            assert m.detokenize(ids, special) == llm.detokenize(ids, special=special).encode(), text
    assert specials > 0  # some control-token text was parsed as its id
    assert m.detokenize([]) == b""


def test_buffers_too_small_say_the_size_needed(lib, c_model, qwen_path):
    m = c_model(qwen_path)
    text = "The quick brown fox jumps over the lazy dog".encode()
    ref = m.tokenize(text)
    n = len(ref)
    assert n > 4
    for capacity in (0, 1, n - 1):
        buf = (I32 * (capacity + 1))(*([-7] * (capacity + 1)))
        count = SZ(12345)
        status = lib.quanta_tokenize(m.handle, text, len(text), 1, 1, buf, capacity, ctypes.byref(count))
        assert status == TOO_SMALL
        assert count.value == n
        assert f"{n} tokens" in last_error(lib) and f"holds {capacity}" in last_error(lib)
        assert list(buf) == [-7] * (capacity + 1)  # nothing written
    buf = (I32 * (n + 3))(*([-7] * (n + 3)))
    count = SZ()
    assert lib.quanta_tokenize(m.handle, text, len(text), 1, 1, buf, n + 3, ctypes.byref(count)) == QUANTA_OK
    assert count.value == n and list(buf[:n]) == ref and list(buf[n:]) == [-7] * 3

    length = SZ()
    arr = ids_array(ref)
    for capacity in (len(text) - 5, len(text)):  # the NUL needs one byte more than the text
        buf = ctypes.create_string_buffer(b"\x01" * (capacity + 1))
        status = lib.quanta_detokenize(m.handle, arr, n, 0, buf, capacity, ctypes.byref(length))
        assert status == TOO_SMALL and length.value == len(text)
        assert f"needs {len(text) + 1}" in last_error(lib)
        assert buf.raw[:capacity + 1] == b"\x01" * (capacity + 1)
    buf = ctypes.create_string_buffer(b"\x01" * (len(text) + 2))
    assert lib.quanta_detokenize(m.handle, arr, n, 0, buf, len(text) + 1, ctypes.byref(length)) == QUANTA_OK
    assert buf.raw[:len(text) + 2] == text + b"\x00\x01"


def test_invalid_input_is_a_status(lib, c_model, qwen_path, tmp_path):
    names = {lib.quanta_status_name(s).decode() for s in range(11)}
    assert len(names) == 11 and "unknown status" not in names
    assert lib.quanta_status_name(OVERFLOW) == b"context overflow"
    assert lib.quanta_status_name(CANCELLED) == b"cancelled"

    handle = P(1)
    assert lib.quanta_model_load(str(tmp_path / "none.gguf").encode(), 0, ctypes.byref(handle)) == IO
    assert handle.value is None and "none.gguf" in last_error(lib)
    assert lib.quanta_model_load(None, 0, ctypes.byref(handle)) == INVALID
    m = c_model(qwen_path, n_threads=1 << 20)  # capped at the usable cores
    assert lib.quanta_model_n_threads(m.handle) == len(os.sched_getaffinity(0))
    m = c_model(qwen_path, n_threads=1)
    assert lib.quanta_model_n_threads(m.handle) == 1
    n, ids = SZ(), (I32 * 8)()
    assert lib.quanta_tokenize(m.handle, b"ok \xff\xfe", 5, 1, 1, ids, 8, ctypes.byref(n)) == INVALID
    assert "UTF-8" in last_error(lib)
    assert lib.quanta_tokenize(None, b"x", 1, 1, 1, ids, 8, ctypes.byref(n)) == INVALID
    assert lib.quanta_tokenize(m.handle, None, 3, 1, 1, ids, 8, ctypes.byref(n)) == INVALID
    assert lib.quanta_tokenize(m.handle, b"x", 1, 1, 1, None, 8, ctypes.byref(n)) == INVALID
    n_vocab = lib.quanta_model_n_vocab(m.handle)
    for bad in (-1, n_vocab):
        assert lib.quanta_detokenize(m.handle, ids_array([bad]), 1, 0, ctypes.create_string_buffer(8), 8,
                                     ctypes.byref(n)) == INVALID
        assert str(bad) in last_error(lib)

    for params in ({"n_ctx": 0}, {"n_batch": 0}, {"n_seq": 0}, {"n_ctx": 4, "n_seq": 5}):
        p = lib.quanta_context_params_default()
        for k, v in params.items():
            setattr(p, k, v)
        assert lib.quanta_context_create(m.handle, ctypes.byref(p), ctypes.byref(handle)) == INVALID, params
        assert handle.value is None
    assert lib.quanta_context_create(None, None, ctypes.byref(handle)) == INVALID

    ctx = m.context(n_ctx=8, n_seq=2)
    assert lib.quanta_context_n_ctx(ctx.handle) == 8 and lib.quanta_context_n_seq(ctx.handle) == 2
    assert ctx.decode([n_vocab]) == INVALID and "out of range" in last_error(lib)
    assert ctx.decode([-1]) == INVALID
    assert ctx.decode([1], seqs=[2]) == INVALID and "sequence 2" in last_error(lib)
    assert ctx.decode([1, 2], positions=[0, 2]) == INVALID and "position 1, not 2" in last_error(lib)
    assert lib.quanta_decode(ctx.handle, ids_array([1]), None, None, None, 0) == INVALID
    assert lib.quanta_eval(ctx.handle, 5, ids_array([1]), 1) == INVALID
    assert lib.quanta_eval(ctx.handle, 0, ids_array(range(9)), 9) == OVERFLOW
    assert "n_ctx = 8" in last_error(lib)
    assert lib.quanta_context_n_tokens(ctx.handle, 0) == 0  # nothing of a refused batch is kept
    assert lib.quanta_context_n_tokens(ctx.handle, 2) == -1
    out = ctypes.POINTER(ctypes.c_float)()
    assert lib.quanta_get_logits(ctx.handle, 0, ctypes.byref(out)) == INVALID and "no logits" in last_error(lib)
    assert lib.quanta_eval(ctx.handle, 0, ids_array([1, 2]), 2) == QUANTA_OK
    assert lib.quanta_get_logits(ctx.handle, 1, ctypes.byref(out)) == INVALID and "out of range" in last_error(lib)
    assert lib.quanta_copy_logits(ctx.handle, 0, (ctypes.c_float * 4)(), 4) == INVALID
    assert lib.quanta_truncate(ctx.handle, 0, -1) == INVALID

    status, pieces, _ = ctx.generate("one two three four five six seven eight nine", max_tokens=2)
    assert status == OVERFLOW and pieces == []
    p = lib.quanta_generate_params_default()
    p.n_stop = 1
    assert lib.quanta_generate(ctx.handle, b"hi", 2, ctypes.byref(p), PIECE_CALLBACK(lambda *a: 0), None,
                               None) == INVALID
    assert lib.quanta_generate(ctx.handle, b"hi", 2, None, ctypes.cast(None, PIECE_CALLBACK), None, None) == INVALID
    assert lib.quanta_cancel(None) == INVALID
    ctx.close()


def test_decode_and_eval_logits_match_the_engine(lib, c_model, qwen, qwen_path):
    """Each C call against the same batches through the Python bindings (the same bits: batch shapes decide the
    arithmetic), and against a fresh evaluation of the whole sequence (close: the AVX-512 prefill GEMM rounds
    differently from the one-row kernels)."""
    m = c_model(qwen_path)
    a = qwen.tokenize("The quick brown fox jumps over the lazy dog")
    b = qwen.tokenize("def add(x, y): return x + y")
    ref = quanta._core.LlmContext(qwen._model, n_ctx=256, n_seq=2)
    ctx = m.context(n_ctx=256, n_seq=2)

    assert ctx.decode(a, logits=[1] * len(a)) == QUANTA_OK
    assert lib.quanta_n_logits(ctx.handle) == len(a)
    expected = ref.decode(a, [0] * len(a), list(range(len(a))), [True] * len(a))
    assert np.array_equal(np.stack([ctx.logits(i) for i in range(len(a))]), expected)
    assert np.array_equal(expected, qwen.logits(a))  # one batch from scratch: also what quanta.LLM.logits says
    out = ctypes.POINTER(ctypes.c_float)()
    assert lib.quanta_get_logits(ctx.handle, -1, ctypes.byref(out)) == QUANTA_OK
    assert np.array_equal(np.ctypeslib.as_array(out, (ctx.n_vocab,)), expected[-1])

    # Sequence 1 in one batch with one more token of sequence 0: positions NULL puts each at its sequence's next
    # one; only the flagged row is kept.
    tokens = b + [a[0]]
    seqs = [1] * len(b) + [0]
    flags = [0] * (len(b) - 1) + [1, 0]
    assert ctx.decode(tokens, seqs=seqs, logits=flags) == QUANTA_OK
    assert lib.quanta_n_logits(ctx.handle) == 1
    expected = ref.decode(tokens, seqs, list(range(len(b))) + [len(a)], [bool(f) for f in flags])
    assert np.array_equal(ctx.logits(0), expected[0])
    assert np.array_equal(ctx.logits(0), qwen.logits(b)[-1])
    assert lib.quanta_context_n_tokens(ctx.handle, 0) == len(a) + 1
    assert lib.quanta_context_n_tokens(ctx.handle, 1) == len(b)

    # Appending: the last token's logits, as a fresh evaluation of the whole sequence gives them.
    assert lib.quanta_eval(ctx.handle, 0, ids_array(b), len(b)) == QUANTA_OK
    assert lib.quanta_n_logits(ctx.handle) == 1
    assert np.array_equal(ctx.logits(-1), ref.eval(b, seq=0)[0])
    fresh = qwen.logits(a + [a[0]] + b)[-1]
    assert np.argmax(ctx.logits(-1)) == np.argmax(fresh) and kld(fresh, ctx.logits(-1)) < 1e-2

    # Truncating to a prefix and evaluating the rest again.
    assert lib.quanta_truncate(ctx.handle, 0, 3) == QUANTA_OK
    assert lib.quanta_context_n_tokens(ctx.handle, 0) == 3
    assert lib.quanta_eval(ctx.handle, 0, ids_array(a[3:]), len(a) - 3) == QUANTA_OK
    ref.truncate(3, seq=0)
    assert np.array_equal(ctx.logits(0), ref.eval(a[3:], seq=0)[0])
    fresh = qwen.logits(a)[-1]
    assert np.argmax(ctx.logits(0)) == np.argmax(fresh) and kld(fresh, ctx.logits(0)) < 1e-2
    ctx.close()


def sampler(lib, **params):
    p = lib.quanta_sampler_params_default()
    for k, v in params.items():
        setattr(p, k, v)
    handle = P()
    assert lib.quanta_sampler_create(ctypes.byref(p), ctypes.byref(handle)) == QUANTA_OK, last_error(lib)
    return handle


def test_sampler_defaults_are_llm_generate_defaults(lib):
    d = lib.quanta_sampler_params_default()
    ref = inspect.signature(quanta.LLM.generate).parameters
    for field, _ in SamplerParams._fields_:
        if field == "seed":
            assert d.seed == SEED_RANDOM and ref["seed"].default is None  # None: a random seed
        else:
            assert getattr(d, field) == pytest.approx(ref[field].default), field
    g = lib.quanta_generate_params_default()
    assert g.max_tokens == ref["max_tokens"].default and g.n_stop == 0
    assert g.context_shift == ref["context_shift"].default
    c = lib.quanta_context_params_default()
    llm_init = inspect.signature(quanta.LLM.__init__).parameters
    assert (c.n_ctx, c.n_batch) == (llm_init["n_ctx"].default, llm_init["n_batch"].default) and c.n_seq == 1


def test_sampler_chain_matches_core_sampler(lib, rng):
    n_vocab = 1000
    logits = rng.normal(0, 3, n_vocab).astype(np.float32)
    ptr = logits.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    params = dict(temperature=0.9, top_k=50, top_p=0.9, min_p=0.02, repeat_penalty=1.3, presence_penalty=0.2,
                  frequency_penalty=0.1, penalty_last_n=16, seed=1234)
    s = sampler(lib, **params)
    ref = quanta._core.Sampler(**params)
    token = I32()
    for t in (3, 3, int(np.argmax(logits))):
        assert lib.quanta_sampler_accept(s, t) == QUANTA_OK
        ref.accept(t)
    draws = []
    for _ in range(30):
        assert lib.quanta_sampler_sample(s, ptr, n_vocab, ctypes.byref(token)) == QUANTA_OK
        expected = ref.sample(logits)
        assert token.value == expected
        draws.append(token.value)
        lib.quanta_sampler_accept(s, token)
        ref.accept(expected)
    assert len(set(draws)) > 3  # it really sampled
    assert lib.quanta_sampler_reset(s) == QUANTA_OK
    ref.reset()
    for _ in range(5):
        lib.quanta_sampler_sample(s, ptr, n_vocab, ctypes.byref(token))
        assert token.value == ref.sample(logits)
    assert lib.quanta_sampler_sample(s, ptr, 0, ctypes.byref(token)) == INVALID
    assert lib.quanta_sampler_sample(s, None, n_vocab, ctypes.byref(token)) == INVALID
    assert lib.quanta_sampler_accept(s, -1) == INVALID
    lib.quanta_sampler_free(s)

    greedy = sampler(lib, temperature=0)
    assert lib.quanta_sampler_sample(greedy, ptr, n_vocab, ctypes.byref(token)) == QUANTA_OK
    assert token.value == int(np.argmax(logits))
    lib.quanta_sampler_free(greedy)
    handle = P(1)
    bad = SamplerParams(temperature=float("nan"), top_p=0.9)
    assert lib.quanta_sampler_create(ctypes.byref(bad), ctypes.byref(handle)) == INVALID and handle.value is None


def test_generate_with_sampling_and_stop_matches_llm(c_model, qwen, qwen_path):
    m = c_model(qwen_path)
    ctx = m.context()
    prompt = "Write a short poem about autumn leaves."
    kwargs = dict(max_tokens=60, temperature=0.8, top_k=30, top_p=0.9, min_p=0.05, repeat_penalty=1.1, seed=7)
    status, pieces, result = ctx.generate(prompt, stop=["\n\n"], **kwargs)
    assert status == QUANTA_OK
    assert pieces == list(qwen.generate(prompt, stop=["\n\n"], stream=True, **kwargs))
    assert result.n_prompt_tokens == len(qwen.tokenize(prompt))
    full = qwen.generate(prompt, **kwargs)
    if "\n\n" in full:  # the seed decides; either way the reasons must agree
        assert result.finish == FINISH_STOP and "".join(pieces) == full[:full.index("\n\n")]
    else:
        assert "".join(pieces) == full
    n_tokens = len(list(qwen.generate_tokens(prompt, **kwargs)))
    assert result.finish == FINISH_STOP or result.n_generated_tokens == n_tokens == 60
    ctx.close()


def test_generate_reuses_the_prompt_prefix_like_llm(c_model, qwen_path):
    # n_batch 8: the generator evaluates long prompts one chunk per step (so cancel is seen between them).
    llm = quanta.LLM(qwen_path, n_ctx=512, n_batch=8)
    m = c_model(qwen_path)
    ctx = m.context(n_ctx=512, n_batch=8, n_seq=2)
    first = "You are a helpful assistant. Answer in one sentence. Question: what is the tallest mountain?"
    second = first + " And the longest river?"
    for prompt in (first, second, first):
        status, pieces, result = ctx.generate(prompt, max_tokens=20, temperature=0)
        assert status == QUANTA_OK, last_error(m.lib)
        assert "".join(pieces) == llm.generate(prompt, max_tokens=20, temperature=0)
        assert result.n_prompt_tokens == len(llm.tokenize(prompt)) > 16
    assert m.lib.quanta_n_logits(ctx.handle) == 0
    ctx.close()


def test_callback_can_cancel(lib, c_model, qwen_path):
    m = c_model(qwen_path)
    ctx = m.context()
    seen = []

    def on_piece(piece, length, _):
        seen.append(length)
        assert lib.quanta_cancel(ctx.handle) == QUANTA_OK
        return 0

    result = GenerateResult()
    p = lib.quanta_generate_params_default()
    p.max_tokens = 50
    status = lib.quanta_generate(ctx.handle, b"Once upon a time", 16, ctypes.byref(p), PIECE_CALLBACK(on_piece), None,
                                 ctypes.byref(result))
    assert status == CANCELLED and "cancelled" in last_error(lib)
    assert len(seen) == 1 and result.finish == FINISH_CANCELLED and 1 <= result.n_generated_tokens < 50
    status, pieces, result = ctx.generate("Once upon a time", max_tokens=3, temperature=0)  # the cancel is spent
    assert status == QUANTA_OK and result.finish in (FINISH_STOP, FINISH_LENGTH) and pieces
    ctx.close()


# ---- threads: tests/c/threads.c ----------------------------------------------------------------

def test_threads_cancel_and_contexts_sharing_a_model(tmp_path_factory, qwen, qwen_path):
    exe = build_c(tmp_path_factory, "threads", "-pthread")
    out = subprocess.run([str(exe), qwen_path], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    r = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    num = lambda k: float(r[k])

    # Cancelled from another thread after the first piece: nothing more is delivered.
    assert num("stream_cancel_status") == CANCELLED and num("stream_cancel_finish") == FINISH_CANCELLED
    assert num("stream_cancel_pieces") == 1 and num("stream_cancel_generated") == 1  # no step after the cancel
    assert "cancelled" in r["stream_cancel_error"]
    # A cancel with nothing running is not kept for the next generate.
    assert num("after_idle_cancel_status") == QUANTA_OK and num("after_idle_cancel_finish") == FINISH_LENGTH
    assert num("after_idle_cancel_generated") == 5
    # The callback stops generation; it may tokenize, but not evaluate on its own context.
    assert num("callback_stop_status") == QUANTA_OK and num("callback_stop_finish") == FINISH_CALLBACK
    assert num("callback_stop_pieces") == 3
    assert num("busy_status") == INVALID and "busy" in r["busy_error"]
    assert num("tokenize_in_callback_status") == QUANTA_OK and num("tokenize_in_callback_count") >= 1
    # Two contexts of one model generating on two threads at once: each as if alone.
    for i, prompt in enumerate(["def fib(n):", "The capital of France is"]):
        assert num(f"concurrent_{i}_status") == QUANTA_OK
        assert bytes.fromhex(r[f"concurrent_{i}_text"]).decode() == qwen.generate(prompt, max_tokens=24,
                                                                                  temperature=0)
    # Cancelled while the prompt is evaluated: it returns after the chunk in progress, long before the prompt is done.
    assert num("prompt_tokens") > 200
    assert num("prompt_cancel_status") == CANCELLED and num("prompt_cancel_finish") == FINISH_CANCELLED
    assert num("prompt_cancel_pieces") == 0
    assert num("prompt_cancel_latency_ms") < num("prompt_full_ms") / 4
    cached = num("prompt_cancel_cached")
    assert 0 < cached < num("prompt_tokens") - 16 and cached % 16 == 0
