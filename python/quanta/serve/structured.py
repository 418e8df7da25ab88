"""Structured output: response_format json_object / json_schema as token masks from
llguidance, applied in the engine's sampler chain (engine/constraint.h).

llguidance needs the vocabulary as bytes. Control tokens are marked with a
leading 0xFF, as llguidance's own llama.cpp bridge does, so that text can never
spell them; the end-of-generation tokens are its EOS set, which it allows once
the JSON is complete. Building the tokenizer walks the whole vocabulary
(about a second for 150k tokens), so it is built once per model, on first use.
"""

from __future__ import annotations

import json
import threading
from typing import Optional

__all__ = ["Grammars", "GrammarError"]


class GrammarError(ValueError):
    """The schema is not one llguidance can turn into a grammar."""


class _Vocab:
    """What llguidance.TokenizerWrapper reads from a tokenizer."""

    def __init__(self, tok):
        n = tok.n_vocab
        self.special_token_ids = [i for i in range(n) if tok.is_control(i)]
        control = set(self.special_token_ids)
        self.tokens = [(b"\xff" if i in control else b"") + tok.token_bytes(i) for i in range(n)]
        self.eos_tokens = [i for i in range(n) if tok.is_end_of_generation(i)]
        self.eos_token_id = tok.eos if tok.eos is not None else (self.eos_tokens[0] if self.eos_tokens else 0)
        self.bos_token_id = tok.bos
        self._tok = tok

    def __call__(self, data: bytes):
        return self._tok.encode(data, add_bos=False, special=False)


class _Constraint:
    """One request's matcher, in the shape the generator calls (allowed(words), accept(token))."""

    def __init__(self, matcher):
        self._m = matcher

    def allowed(self, words) -> None:
        # An error (or a stopped matcher) leaves no bit set: the generator ends the request.
        if self._m.is_error():
            return
        self._m.unsafe_compute_mask_ptr(words.ctypes.data, words.nbytes)

    def accept(self, token: int) -> None:
        self._m.consume_token(token)


class Grammars:
    """Compiles response_format values into constraints for one model's tokenizer."""

    def __init__(self, tokenizer, n_vocab: int):
        self._tokenizer = tokenizer
        self._n_vocab = n_vocab  # the logits' width, which the masks cover
        self._ll = None
        self._lock = threading.Lock()

    def _lltokenizer(self):
        with self._lock:
            if self._ll is None:
                import llguidance

                vocab = _Vocab(self._tokenizer)
                self._ll = llguidance.LLTokenizer(llguidance.TokenizerWrapper(vocab), n_vocab=self._n_vocab,
                                                eos_token=vocab.eos_tokens)
            return self._ll

    def warm(self) -> None:
        """Builds the tokenizer llguidance needs now (if llguidance is installed)."""
        try:
            import llguidance  # noqa: F401
        except ImportError:
            return
        self._lltokenizer()

    def constraint(self, response_format) -> Optional[_Constraint]:
        """A constraint for a ResponseFormat (None for plain text); GrammarError for a bad schema."""
        if response_format is None or response_format.type == "text":
            return None
        import llguidance

        if response_format.type == "json_object":
            schema = {"type": "object"}
        else:
            js = response_format.json_schema
            if js is None or js.schema_ is None:
                raise GrammarError("response_format json_schema needs json_schema.schema")
            schema = js.schema_
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema),
                                                                    defaults={"whitespace_flexible": False})
        except Exception as e:  # llguidance raises ValueError with its message
            raise GrammarError(f"response_format: {e}") from None
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, self._lltokenizer())
        if is_error:
            raise GrammarError(f"response_format: {messages[0]}")
        matcher = llguidance.LLMatcher(self._lltokenizer(), grammar)
        if matcher.is_error():
            raise GrammarError(f"response_format: {matcher.get_error()}")
        return _Constraint(matcher)
