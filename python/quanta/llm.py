"""Text generation with a GGUF language model: `quanta.LLM`.

The engine (graph, KV cache, tokenizer, sampler) is C++; this module is the
generation loop around it: prompt caching, stop strings, streaming text that
is always valid UTF-8, and chat templates rendered with jinja2.
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from . import _core
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
    """

    def __init__(self, path: "str | os.PathLike[str]", n_ctx: int = 4096, n_threads: Optional[int] = None,
                 n_batch: int = 512, kv_type: str = "f16", chat_template: Optional[str] = None):
        self.path = os.fspath(path)
        n_threads = threads(n_threads)  # checked before the model loads; capped at the usable cores
        self._gguf = GGUF(self.path)
        self._model = _core.LlmModel(self._gguf._file)
        self._tokenizer = _core.Tokenizer(self._gguf._file)
        self._ctx = _core.LlmContext(self._model, n_ctx=n_ctx, n_batch=n_batch, n_threads=n_threads,
                                     kv_type=kv_type)
        self._chat_template = chat_template

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
        stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if s]
        ids = self.generate_tokens(prompt, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                   min_p=min_p, repeat_penalty=repeat_penalty, presence_penalty=presence_penalty,
                                   frequency_penalty=frequency_penalty, penalty_last_n=penalty_last_n, seed=seed,
                                   context_shift=context_shift)
        pieces = _cut_at_stops(self._token_text(ids), stops)
        return pieces if stream else "".join(pieces)

    def generate_tokens(self, prompt: Prompt, max_tokens: int = 256, temperature: float = 0.8, top_k: int = 40,
                        top_p: float = 0.95, min_p: float = 0.05, repeat_penalty: float = 1.0,
                        presence_penalty: float = 0.0, frequency_penalty: float = 0.0, penalty_last_n: int = 64,
                        seed: Optional[int] = None, context_shift: bool = False) -> Iterator[int]:
        """generate(), as an iterator of token ids (end-of-generation tokens are not yielded)."""
        ids = self.tokenize(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
        if not ids:
            raise ValueError("generate: empty prompt (no tokens)")
        if len(ids) > self.n_ctx:
            raise ContextOverflowError(f"the prompt is {len(ids)} tokens; n_ctx is {self.n_ctx}")
        if max_tokens < 0:
            raise ValueError(f"max_tokens must not be negative, not {max_tokens}")
        sampler = _core.Sampler(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                                repeat_penalty=repeat_penalty, presence_penalty=presence_penalty,
                                frequency_penalty=frequency_penalty, penalty_last_n=penalty_last_n,
                                seed=_seed(seed))
        return self._generate_ids(ids, max_tokens, sampler, context_shift)

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

    # ---- the loop ---------------------------------------------------------------

    def _generate_ids(self, ids: list, max_tokens: int, sampler, context_shift: bool) -> Iterator[int]:
        for t in ids:
            sampler.accept(t)
        logits = self._ctx.eval_prompt(ids)
        sequence = list(ids)
        for _ in range(max_tokens):
            token = sampler.sample(logits)
            if self._tokenizer.is_end_of_generation(token):
                return
            sampler.accept(token)
            sequence.append(token)
            yield token
            if len(sequence) >= self.n_ctx:
                if not context_shift:
                    return
                # Keep the first token (BOS or the prompt's start) and the newer half.
                keep = max(1, (self.n_ctx - 1) // 2)
                sequence = sequence[:1] + sequence[len(sequence) - keep:]
                logits = self._ctx.eval_prompt(sequence)
            else:
                logits = self._ctx.eval([token])[0]

    def _token_text(self, ids: Iterator[int]) -> Iterator[str]:
        """Text pieces of generated tokens, never splitting a UTF-8 character."""
        stream = _core.Utf8Stream()
        for t in ids:
            if self._tokenizer.is_control(t):
                continue
            text = stream.push(self._tokenizer.token_bytes(t))
            if text:
                yield text
        rest = stream.finish()
        if rest:
            yield rest


def _seed(seed: Optional[int]) -> int:
    if seed is None:
        return int.from_bytes(os.urandom(8), "little")
    if seed < 0:
        raise ValueError(f"seed must not be negative, not {seed}")
    return int(seed) & (2**64 - 1)


def _cut_at_stops(pieces: Iterator[str], stops: list) -> Iterator[str]:
    """Passes text through until the first stop string, which ends it (unseen). Text
    that might begin a stop string is held back until it is known not to."""
    if not stops:
        yield from pieces
        return
    held = ""
    for piece in pieces:
        held += piece
        hits = [i for i in (held.find(s) for s in stops) if i >= 0]
        if hits:
            if min(hits):
                yield held[:min(hits)]
            pieces.close()
            return
        keep = max((n for s in stops for n in range(1, len(s)) if held.endswith(s[:n])), default=0)
        if len(held) > keep:
            yield held[:len(held) - keep]
            held = held[len(held) - keep:]
    if held:
        yield held
