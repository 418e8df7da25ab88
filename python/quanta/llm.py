"""Text generation with a GGUF language model: `quanta.LLM`.

The engine is C++: the graph, the KV cache its sequences share, the
tokenizer, the sampler chain and the generation loop (prompt caching, stop
strings, text that is always whole UTF-8 characters, many prompts decoding
together). This module is its Python face, with chat templates rendered by jinja2.
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from . import _core
from .devices import check_device, warn_unused_gpu
from .errors import ContextOverflowError
from .gguf import GGUF
from .threads import threads

__all__ = ["LLM"]

Prompt = Union[str, Sequence[int]]

class LLM:
    """A loaded language model with its own context (KV cache).

    >>> llm = quanta.LLM("model.gguf", n_ctx=4096)
    >>> llm.generate("def fib(n):", max_tokens=64, temperature=0)
    >>> for piece in llm.chat([{"role": "user", "content": "Hi!"}], stream=True): print(piece, end="")

    The weights stay memory-mapped. Prompts that share a prefix with what the
    context last evaluated reuse its cached keys and values, so a chat only
    evaluates each new turn.

    n_threads: CPU threads; None or 0 uses every core this process may run on, and more than that is
    capped with a RuntimeWarning (the threads spin at barriers, so extra ones only slow it down).

    device: "auto" (the default) runs on the first GPU when one is usable and the model runs there
    (checked at load by decoding one token), else on the CPU, with the reason in `device_note` and a
    RuntimeWarning when a GPU was present. "cpu" and "cuda" are taken as asked; "cuda" raises
    quanta.UnsupportedError (no usable GPU), MemoryError or RuntimeError (a kernel failed) at load.
    `device` tells where it runs. The CUDA kernels are a first, unoptimised set (issue 15).
    """

    def __init__(self, path: "str | os.PathLike[str]", n_ctx: int = 4096, n_threads: Optional[int] = None,
                 n_batch: int = 512, kv_type: str = "f16", chat_template: Optional[str] = None, n_seq: int = 16,
                 device: str = "auto"):
        """n_ctx: KV cells, shared by all sequences. n_seq: sequences that generate_batch decodes
        at once (a sequence costs no memory until it holds tokens)."""
        self.path = os.fspath(path)
        n_threads = threads(n_threads)  # checked before the model loads; capped at the usable cores
        self._gguf = GGUF(self.path)
        check_device(device)
        self._model = _core.LlmModel(self._gguf._file, device=device, n_threads=n_threads)
        self.device: str = self._model.device  # "cpu" or "cuda": where it runs
        self.device_note: str = self._model.device_note  # why "auto" chose the CPU, else ""
        warn_unused_gpu(self.device_note)
        self._tokenizer = _core.Tokenizer(self._gguf._file)
        self._ctx = _core.LlmContext(self._model, n_ctx=n_ctx, n_batch=n_batch, n_seq=min(n_seq, n_ctx),
                                     kv_type=kv_type)
        self._chat_template = chat_template
        self.n_generated = 0  # tokens the last generate() or chat() produced (so far, while streaming)

    # ---- model facts --------------------------------------------------------

    @property
    def metadata(self) -> dict:
        """Every GGUF metadata key, as plain Python values."""
        return self._gguf.metadata

    @property
    def config(self) -> dict:
        """The hyper-parameters quanta read from the metadata."""
        return self._model.config

    @property
    def n_vocab(self) -> int:
        return self._ctx.n_vocab

    @property
    def n_ctx(self) -> int:
        return self._ctx.n_ctx

    @property
    def n_threads(self) -> int:
        return self._ctx.n_threads

    # ---- tokens ---------------------------------------------------------------

    def tokenize(self, text: Union[str, bytes], add_bos: bool = True, special: bool = True) -> list:
        """Token ids of `text`. BOS is added when add_bos is set and the model uses one
        (tokenizer.ggml.add_bos_token); special=True turns control-token text such as
        "<|im_end|>" into its id."""
        return self._tokenizer.encode(text, add_bos=add_bos, special=special)

    def detokenize(self, ids: Iterable[int], special: bool = False) -> str:
        """The text of `ids`; control tokens are left out unless special=True."""
        return self._tokenizer.decode(list(ids), skip_special=not special)

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Evaluates `ids` from scratch: float32 logits at every position, shape (len(ids), n_vocab)."""
        ids = list(ids)
        if not ids:
            raise ValueError("logits: no tokens")
        if len(ids) > self.n_ctx:
            raise ContextOverflowError(f"{len(ids)} tokens do not fit in n_ctx = {self.n_ctx}")
        self._ctx.truncate(0)
        return self._ctx.eval(ids, all_logits=True)

    # ---- generation -----------------------------------------------------------

    def generate(self, prompt: Prompt, max_tokens: int = 256, temperature: float = 0.8, top_k: int = 40,
                 top_p: float = 0.95, min_p: float = 0.05, repeat_penalty: float = 1.0,
                 presence_penalty: float = 0.0, frequency_penalty: float = 0.0, penalty_last_n: int = 64,
                 seed: Optional[int] = None, stop: Union[str, Sequence[str], None] = None, stream: bool = False,
                 context_shift: bool = False) -> Union[str, Iterator[str]]:
        """Continues `prompt` (text, or token ids) and returns the generated text.

        temperature=0 is greedy. The same seed gives the same text. Generation
        ends at an end-of-generation token, at max_tokens, at the first stop
        string (which is not returned) or when the context is full; with
        context_shift=True a full context instead drops the oldest half of the
        sequence (after the first token) and goes on. A prompt longer than
        n_ctx raises ContextOverflowError. stream=True returns an iterator of
        text pieces instead, each valid UTF-8.
        """
        gen, rid = self._start([prompt], max_tokens, temperature, top_k, top_p, min_p, repeat_penalty,
                               presence_penalty, frequency_penalty, penalty_last_n, seed, stop, context_shift)
        pieces = self._pieces(gen, rid[0])
        return pieces if stream else "".join(pieces)

    def generate_batch(self, prompts: Sequence[Prompt], max_tokens: int = 256, temperature: float = 0.8,
                       top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05, repeat_penalty: float = 1.0,
                       presence_penalty: float = 0.0, frequency_penalty: float = 0.0, penalty_last_n: int = 64,
                       seed: Optional[int] = None, stop: Union[str, Sequence[str], None] = None,
                       context_shift: bool = False) -> list:
        """Generates a continuation of every prompt, decoding up to n_seq of them together in one
        batch per step (more wait and start as others finish); returns the texts in order.
        Takes generate()'s keywords; with a seed, prompt i samples with seed + i."""
        gen, ids = self._start(list(prompts), max_tokens, temperature, top_k, top_p, min_p, repeat_penalty,
                               presence_penalty, frequency_penalty, penalty_last_n, seed, stop, context_shift)
        texts = ["" for _ in ids]
        while gen.step():
            for i, rid in enumerate(ids):
                texts[i] += gen.take(rid)
        return [t + gen.take(rid) for t, rid in zip(texts, ids)]

    def generate_tokens(self, prompt: Prompt, max_tokens: int = 256, temperature: float = 0.8, top_k: int = 40,
                        top_p: float = 0.95, min_p: float = 0.05, repeat_penalty: float = 1.0,
                        presence_penalty: float = 0.0, frequency_penalty: float = 0.0, penalty_last_n: int = 64,
                        seed: Optional[int] = None, context_shift: bool = False) -> Iterator[int]:
        """generate(), as an iterator of token ids (end-of-generation tokens are not yielded)."""
        gen, rid = self._start([prompt], max_tokens, temperature, top_k, top_p, min_p, repeat_penalty,
                               presence_penalty, frequency_penalty, penalty_last_n, seed, None, context_shift)
        return _token_ids(gen, rid[0])

    def _pieces(self, gen, rid) -> Iterator[str]:
        """Text pieces of one request as its generator steps; n_generated counts its tokens."""
        self.n_generated = 0
        while True:
            running = gen.step()
            self.n_generated = len(gen.tokens(rid))
            text = gen.take(rid)
            if text:
                yield text
            if not running or gen.finish(rid) != "running":
                return

    def _start(self, prompts, max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, presence_penalty,
               frequency_penalty, penalty_last_n, seed, stop, context_shift):
        """A C++ generator with one request per prompt (checked now, run as the caller iterates)."""
        stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if s]
        gen = _core.Generator(self._ctx, self._tokenizer)
        base = _seed(seed)
        ids = []
        for i, prompt in enumerate(prompts):
            tokens = self.tokenize(prompt) if isinstance(prompt, (str, bytes)) else [int(t) for t in prompt]
            ids.append(gen.add(tokens, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                               min_p=min_p, repeat_penalty=repeat_penalty, presence_penalty=presence_penalty,
                               frequency_penalty=frequency_penalty, penalty_last_n=penalty_last_n,
                               seed=(base + i) & (2**64 - 1), stop=stops, context_shift=context_shift))
        return gen, ids

    def chat(self, messages: Sequence[dict], **kwargs) -> Union[str, Iterator[str]]:
        """Renders `messages` ([{"role": ..., "content": ...}, ...]) with the model's chat template
        (tokenizer.chat_template, or chat_template= given to the constructor) and generates the reply.
        Takes generate()'s keyword arguments."""
        prompt = self.render_chat(messages)
        return self.generate(self.tokenize(prompt, add_bos=False, special=True), **kwargs)

    def render_chat(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        from .chat_template import render

        template = self._chat_template or self.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{self.path} has no chat template (tokenizer.chat_template); "
                             "pass chat_template= to quanta.LLM")
        tok = self._tokenizer
        return render(template, messages, add_generation_prompt=add_generation_prompt,
                      bos_token=tok.token_text(tok.bos) if tok.bos is not None else "",
                      eos_token=tok.token_text(tok.eos) if tok.eos is not None else "")




def _token_ids(gen, rid) -> Iterator[int]:
    done = 0
    while True:
        running = gen.step()
        new = gen.tokens(rid, done)
        done += len(new)
        yield from new
        if not running or gen.finish(rid) != "running":
            return


def _seed(seed: Optional[int]) -> int:
    if seed is None:
        return int.from_bytes(os.urandom(8), "little")
    if seed < 0:
        raise ValueError(f"seed must not be negative, not {seed}")
    return int(seed) & (2**64 - 1)
