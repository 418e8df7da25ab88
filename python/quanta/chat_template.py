"""Rendering a GGUF's chat template (tokenizer.chat_template, a jinja2 template
written for Hugging Face's apply_chat_template) in a sandbox, with the
variables and helpers those templates expect."""

from __future__ import annotations

import datetime
from functools import lru_cache
from typing import Sequence

__all__ = ["render"]


class TemplateError(ValueError):
    """The chat template rejected the messages (its raise_exception) or is broken."""


def _raise_exception(message):
    raise TemplateError(f"chat template: {message}")


def _strftime_now(fmt):
    return datetime.datetime.now().strftime(fmt)


@lru_cache(maxsize=8)
def _compile(template: str):
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(template)
    except jinja2.TemplateError as e:
        raise TemplateError(f"chat template does not compile: {e}") from None


def render(template: str, messages: Sequence[dict], add_generation_prompt: bool = True, bos_token: str = "",
           eos_token: str = "", **extra) -> str:
    import jinja2

    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise ValueError(f"message {i} must be a dict with 'role' and 'content'")
    try:
        return _compile(template).render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                         bos_token=bos_token, eos_token=eos_token, **extra)
    except jinja2.TemplateError as e:
        raise TemplateError(f"chat template failed: {e}") from None
