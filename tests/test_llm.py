"""quanta.LLM on the real models: generation, sampling options, stop strings,
streaming, chat templates (against transformers' rendering), context limits, thread counts."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import quanta


@pytest.fixture(scope="module")
def qwen(qwen_path):
    return quanta.LLM(qwen_path, n_ctx=1024, n_threads=2)


@pytest.fixture(scope="module")
def gemma(gemma_path):
    return quanta.LLM(gemma_path, n_ctx=1024, n_threads=2)


def test_model_facts(qwen, gemma, qwen_path):
    import gguf

    reader = gguf.GGUFReader(qwen_path)
    embd = reader.get_tensor(next(i for i, t in enumerate(reader.tensors) if t.name == "token_embd.weight"))
    assert qwen.n_vocab == int(embd.shape[1]) == 151936  # gguf-py lists dims in GGUF order
    assert qwen.metadata["general.architecture"] == "qwen2"
    assert qwen.config["n_layer"] == qwen.metadata["qwen2.block_count"]
    assert gemma.n_vocab == 262144 and gemma.config["sliding_window"] == 512


def test_greedy_is_deterministic_and_streams_the_same_text(qwen):
    prompt = "def fibonacci(n):"
    text = qwen.generate(prompt, max_tokens=24, temperature=0)
    assert text and qwen.generate(prompt, max_tokens=24, temperature=0) == text
    assert "".join(qwen.generate(prompt, max_tokens=24, temperature=0, stream=True)) == text
    ids = list(qwen.generate_tokens(prompt, max_tokens=24, temperature=0))
    assert qwen.detokenize(ids) == text


def test_seed_reproducibility(gemma):
    kw = dict(max_tokens=20, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)
    a = gemma.generate("My favourite colour is", seed=42, **kw)
    assert gemma.generate("My favourite colour is", seed=42, **kw) == a
    others = {gemma.generate("My favourite colour is", seed=s, **kw) for s in (1, 2, 3)}
    assert others != {a}


def test_stop_string_ends_the_text(qwen):
    full = qwen.generate("def add(a, b):", max_tokens=30, temperature=0)
    stop = full[len(full) // 2: len(full) // 2 + 3]
    cut = qwen.generate("def add(a, b):", max_tokens=30, temperature=0, stop=[stop, "never-appears"])
    assert cut == full[: full.index(stop)]


def test_max_tokens(qwen):
    assert qwen.generate("Hello", max_tokens=0) == ""
    assert len(list(qwen.generate_tokens("Once upon a time", max_tokens=5, temperature=0))) <= 5
    with pytest.raises(ValueError):
        qwen.generate("Hello", max_tokens=-1)


def test_logits_shape_and_agreement_with_generation(qwen):
    ids = qwen.tokenize("The capital of France is")
    logits = qwen.logits(ids)
    assert logits.shape == (len(ids), qwen.n_vocab) and logits.dtype == np.float32
    first = next(iter(qwen.generate_tokens(ids, max_tokens=1, temperature=0)))
    assert first == int(np.argmax(logits[-1]))


def test_chat_template_matches_transformers(qwen, qwen_path, hf_gguf_tokenizer):
    tok = hf_gguf_tokenizer(qwen_path)
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "2+2?"}]
    want = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert qwen.render_chat(messages) == want


def test_chat_replies_and_ends_at_end_of_turn(qwen):
    reply = qwen.chat([{"role": "user", "content": "Write a Python function that returns 42."}],
                      max_tokens=200, temperature=0)
    assert "42" in reply and "<|im_end|>" not in reply


def test_model_without_chat_template(gemma):
    with pytest.raises(ValueError, match="no chat template"):
        gemma.chat([{"role": "user", "content": "hi"}])


def test_prompt_longer_than_context_raises(gemma_path):
    llm = quanta.LLM(gemma_path, n_ctx=16, n_threads=2)
    with pytest.raises(quanta.ContextOverflowError):
        llm.generate("word " * 40)
    with pytest.raises(quanta.ContextOverflowError):
        llm.logits(list(range(2, 40)))
    assert llm.generate("Hi", max_tokens=3, temperature=0) is not None  # still usable


def test_generation_stops_or_shifts_when_the_context_is_full(gemma_path):
    llm = quanta.LLM(gemma_path, n_ctx=32, n_threads=2)
    prompt = llm.tokenize("Count: one, two, three, four,")
    kw = dict(max_tokens=80, temperature=0, repeat_penalty=1.0)
    stopped = list(llm.generate_tokens(prompt, **kw))
    assert len(prompt) + len(stopped) == 32
    shifted = list(llm.generate_tokens(prompt, context_shift=True, **kw))
    assert len(shifted) > len(stopped) and shifted[: len(stopped)] == stopped


def test_threads_are_capped_at_the_usable_cores(qwen_path):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with pytest.warns(RuntimeWarning, match=f"999 threads asked for, but this process can use {cores} cores") as w:
        llm = quanta.LLM(qwen_path, n_ctx=64, n_threads=999)
    assert llm.n_threads == cores
    assert [r.filename for r in w] == [__file__]  # the warning points at the caller's line
    assert quanta.LLM(qwen_path, n_ctx=64).n_threads == cores
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert quanta.LLM(qwen_path, n_ctx=64, n_threads=1).n_threads == 1
    for bad in (-1, -64):
        with pytest.raises(ValueError, match=f"n_threads must be 0 \\(every core\\) or more, not {bad}"):
            quanta.LLM(qwen_path, n_threads=bad)
    with pytest.raises(TypeError, match="integer"):
        quanta.LLM(qwen_path, n_threads=2.5)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_threads_follow_the_cpu_affinity_not_the_machine(qwen_path):
    # Pinned to one core (as taskset or a container cpuset does), the default and the cap are that one core,
    # though os.cpu_count() and C++'s hardware_concurrency() still count every core of the machine.
    code = (f"import os, warnings, quanta; os.sched_setaffinity(0, {{min(os.sched_getaffinity(0))}}); "
            f"warnings.simplefilter('error'); print(quanta.LLM({qwen_path!r}, n_ctx=64).n_threads); "
            f"warnings.simplefilter('ignore'); print(quanta.LLM({qwen_path!r}, n_ctx=64, n_threads=8).n_threads)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "1"]
