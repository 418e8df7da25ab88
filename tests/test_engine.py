"""Many sequences in one context: a batch that mixes prompts and decode tokens
of several sequences gives each sequence the logits it gets decoded alone
(KV cells carry sequence ids, masks keep them apart); generate_batch equals
generate; decode reuses its graph across steps; the C++ generation loop's
errors."""

import numpy as np
import pytest

import quanta
from quanta import _core
from divergence import kld

PROMPTS = ["def fibonacci(n):", "The capital of France is", "import numpy as np\n", "Once upon a time, there"]


def context(path, **kw):
    model = _core.LlmModel(quanta.GGUF(path)._file, n_threads=2)
    tok = _core.Tokenizer(quanta.GGUF(path)._file)
    return model, tok, _core.LlmContext(model, **{"n_ctx": 512, "n_seq": 4, **kw})


def alone(ctx, seq, ids, steps):
    """Logits of a prompt's last token and of `steps` greedy tokens after it, one sequence at a time."""
    out = [ctx.eval(ids, seq=seq)[0]]
    for _ in range(steps):
        out.append(ctx.eval([int(np.argmax(out[-1]))], seq=seq)[0])
    return np.array(out)


def test_batched_sequences_match_each_decoded_alone(qwen_path):
    # Batches under 16 rows: the matmuls run the octet kernels (cpu/octets.h) both alone and batched.
    _, tok, ctx = context(qwen_path)
    prompts = [tok.encode(p) for p in PROMPTS]
    steps = 6
    ref = [alone(ctx, s, ids, steps) for s, ids in enumerate(prompts)]
    for s in range(4):
        ctx.truncate(0, seq=s)

    # Sequences 0 and 1 start with one batch holding both prompts; 2 and 3 join a step later,
    # their prompts in the same batch as the decode tokens of 0 and 1.
    got = [[] for _ in prompts]
    batch = [(t, s, i, i == len(prompts[s]) - 1) for s in (0, 1) for i, t in enumerate(prompts[s])]
    last = {}
    for step in range(steps + 2):
        if step == 1:
            batch += [(t, s, i, i == len(prompts[s]) - 1) for s in (2, 3) for i, t in enumerate(prompts[s])]
        logits = ctx.decode(*map(list, zip(*batch)))
        owners = [s for (_, s, _, want) in batch if want]
        for s, row in zip(owners, logits):
            got[s].append(row)
            last[s] = row
        batch = [(int(np.argmax(last[s])), s, len(ctx.tokens_of(s)), True)
                 for s in sorted(last) if len(got[s]) <= steps]
        if not batch:
            break
    for s in range(4):
        g = np.array(got[s])
        assert g.shape == ref[s].shape
        assert kld(ref[s], g).max() <= 1e-6, (s, kld(ref[s], g))


def test_sixteen_sequences_match_each_decoded_alone(qwen_path):
    # The first batch (16 prompts, about 100 rows) takes the prefill GEMM, whose float steps the octet kernels
    # of a single row repeat (qdot_octets_impl.inc): 16 sequences together get the logits each gets alone.
    _, tok, ctx = context(qwen_path, n_seq=16, n_ctx=1024)
    prompts = [tok.encode(f"{p} #{i}") for i, p in enumerate(PROMPTS * 4)]
    steps = 2
    ref = [alone(ctx, s, ids, steps) for s, ids in enumerate(prompts)]
    for s in range(16):
        ctx.truncate(0, seq=s)
    batch = [(t, s, i, i == len(ids) - 1) for s, ids in enumerate(prompts) for i, t in enumerate(ids)]
    got = []
    for _ in range(steps + 1):
        got.append(ctx.decode(*map(list, zip(*batch))))
        batch = [(int(np.argmax(got[-1][s])), s, len(ctx.tokens_of(s)), True) for s in range(16)]
    got = np.array(got).transpose(1, 0, 2)  # [sequence, step, vocabulary]
    for s in range(16):
        assert kld(ref[s], got[s]).max() <= 1e-6, (s, kld(ref[s], got[s]))


def test_levels_without_octet_kernels_read_the_files_rows(qwen_path):
    # The weights were packed for the level in use at load; a level without octet kernels (switched to
    # afterwards) reads the rows as the file has them, and gets the same logits within rounding.
    _, tok, ctx = context(qwen_path, n_seq=1)
    ids = tok.encode("def add(a, b):")
    fast = ctx.eval(ids)[0]
    before = _core.cpu_level()
    try:
        _core.set_cpu_level("scalar")
        ctx.truncate(0)
        slow = ctx.eval(ids)[0]
    finally:
        _core.set_cpu_level(before)
    # Rounding differs in every op between levels and grows over 24 layers: about 1e-3 here. Rows read
    # wrongly would give unrelated logits (KLD of several nats).
    assert kld(fast[None], slow[None]).max() <= 5e-3
    assert np.argmax(fast) == np.argmax(slow)


def test_masks_keep_sequences_apart(qwen_path):
    # The same prompt in two sequences, one with a different history: logits differ only where the history does.
    _, tok, ctx = context(qwen_path)
    ids = tok.encode("x = 1\ny = 2\n")
    other = tok.encode("# a comment about something else\n", add_bos=False)
    a = ctx.eval(ids, seq=0)[0]
    ctx.eval(other, seq=1)
    b = ctx.eval(ids, seq=1)[0]
    c = ctx.eval(ids, seq=2)[0]
    assert kld(a[None], c[None]).max() <= 1e-6  # an empty history is no history
    assert kld(a[None], b[None]).max() > 1e-3  # sequence 1 saw its own earlier tokens


def test_generate_batch_equals_generate(qwen_path):
    llm = quanta.LLM(qwen_path, n_ctx=1024, n_threads=2, n_seq=4)
    single = [llm.generate(p, max_tokens=16, temperature=0) for p in PROMPTS]
    assert llm.generate_batch(PROMPTS, max_tokens=16, temperature=0) == single
    # More prompts than sequences: the rest wait and start as sequences free up.
    short = [llm.generate(p, max_tokens=8, temperature=0) for p in PROMPTS]
    assert llm.generate_batch(PROMPTS * 2, max_tokens=8, temperature=0) == short * 2
    # Fewer cells than all requests need at once: the later ones wait for cells, none is cut short.
    tight = quanta.LLM(qwen_path, n_ctx=48, n_threads=2, n_seq=4)
    assert tight.generate_batch(PROMPTS, max_tokens=8, temperature=0) == short
    seeded = llm.generate_batch(PROMPTS[:2], max_tokens=12, temperature=0.9, seed=7)
    assert seeded == llm.generate_batch(PROMPTS[:2], max_tokens=12, temperature=0.9, seed=7)
    assert seeded[0] == llm.generate(PROMPTS[0], max_tokens=12, temperature=0.9, seed=7)


def test_decode_reuses_its_graph(qwen_path):
    _, tok, ctx = context(qwen_path, n_seq=1)
    logits = ctx.eval(tok.encode("def add(a, b):"))[0]
    before = ctx.graphs_built
    for _ in range(40):
        logits = ctx.eval([int(np.argmax(logits))])[0]
    assert ctx.graphs_built == before + 1  # one decode graph for every step in the first 256-cell bucket


def test_decode_checks_its_batch(qwen_path):
    _, tok, ctx = context(qwen_path, n_ctx=16)
    with pytest.raises(ValueError, match="sequence 0 is at position 0, not 3"):
        ctx.decode([1], [0], [3], [True])
    with pytest.raises(ValueError, match="sequence 9 does not exist"):
        ctx.decode([1], [9], [0], [True])
    with pytest.raises(ValueError, match="out of range"):
        ctx.decode([10**7], [0], [0], [True])
    with pytest.raises(quanta.ContextOverflowError):
        ctx.decode([1] * 17, [0] * 17, list(range(17)), [False] * 16 + [True])
    assert ctx.n_free == 16 and ctx.tokens_of(0) == []  # nothing was evaluated
    gen = _core.Generator(ctx, tok)
    with pytest.raises(ValueError, match="empty prompt"):
        gen.add([], 4, 0.0, 40, 0.95, 0.05, 1.0, 0.0, 0.0, 64, 0, [], False)
    with pytest.raises(quanta.ContextOverflowError):
        gen.add([1] * 17, 4, 0.0, 40, 0.95, 0.05, 1.0, 0.0, 0.0, 64, 0, [], False)


def test_cancel_stops_a_request(qwen_path):
    _, tok, ctx = context(qwen_path)
    gen = _core.Generator(ctx, tok)
    a = gen.add(tok.encode("Count: 1, 2, 3,"), 50, 0.0, 40, 0.95, 0.05, 1.0, 0.0, 0.0, 64, 0, [], False)
    b = gen.add(tok.encode("Letters: a, b, c,"), 50, 0.0, 40, 0.95, 0.05, 1.0, 0.0, 0.0, 64, 0, [], False)
    for _ in range(3):
        gen.step()
    gen.cancel(a)
    gen.step()
    n = len(gen.tokens(a))
    while gen.step():
        pass
    assert gen.finish(a) == "cancelled" and len(gen.tokens(a)) == n
    assert gen.finish(b) in ("length", "stop") and len(gen.tokens(b)) > n


def test_backend_caps_threads_at_the_usable_cores(qwen_path):
    # The C++ side caps too (the C API passes counts straight through): spinning threads beyond the cores
    # only wait for each other.
    import os

    model = _core.LlmModel(quanta.GGUF(qwen_path)._file, n_threads=999)
    assert model.n_threads == len(os.sched_getaffinity(0))
