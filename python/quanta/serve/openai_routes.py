"""The OpenAI routes: /v1/completions, /v1/chat/completions, and llama-server's
/tokenize and /detokenize.

A request becomes one engine job per choice (n), each in its own slot; their
events are merged into one response, or one event stream (OpenAI's chunks,
then `data: [DONE]`). A client that goes away cancels its jobs: a streaming
response is cancelled by Starlette when the connection closes, and a plain
one is watched for the disconnect message.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from typing import List, Optional

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from .. import __version__
from ..errors import ContextOverflowError
from .engine import Job, QueueFull
from .errors import APIError, error_body
from .protocol import ChatRequest, CompletionRequest, DetokenizeRequest, Sampling, TokenizeRequest
from .structured import GrammarError

# Sampler settings a request leaves out: the engine's (llama.cpp's) defaults.
_DEFAULTS = {"temperature": 0.8, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0}
# Tokens a request may generate when it does not say: at least this many, or its slot's share of the context.
_MIN_DEFAULT_MAX_TOKENS = 256


def register(app: FastAPI, server) -> None:
    fingerprint = f"quanta-{__version__}"

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request):
        server.require()
        messages = []
        for m in body.messages:
            try:
                messages.append({**m.model_dump(exclude_none=True), "content": m.text()})
            except ValueError as e:
                raise APIError(400, str(e), param="messages") from None
        try:
            text = server.llm.render_chat(messages)
        except ValueError as e:  # no template, or the template refused the messages
            raise APIError(400, str(e), param="messages") from None
        prompt = server.llm.tokenize(text, add_bos=False, special=True)
        top = body.top_logprobs if body.logprobs else None
        if body.logprobs and top is None:
            top = 0
        run = _Run(server, body, prompt, body.max_completion_tokens or body.max_tokens, top, "chatcmpl", fingerprint)
        return await run.respond(request, chat=True)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        server.require()
        if isinstance(body.prompt, str):
            if not body.prompt:
                raise APIError(400, "the prompt is empty", param="prompt")
            prompt = server.llm.tokenize(body.prompt)
        else:
            prompt = _check_tokens(body.prompt, server.llm.n_vocab, "prompt")
        run = _Run(server, body, prompt, body.max_tokens, body.logprobs, "cmpl", fingerprint)
        return await run.respond(request, chat=False)

    @app.post("/tokenize")
    async def tokenize(body: TokenizeRequest):
        server.require()
        ids = server.llm.tokenize(body.content, add_bos=body.add_special, special=True)
        if not body.with_pieces:
            return {"tokens": ids}
        tok = server.llm._tokenizer
        return {"tokens": [{"id": i, "piece": tok.token_bytes(i).decode("utf-8", "replace")} for i in ids]}

    @app.post("/detokenize")
    async def detokenize(body: DetokenizeRequest):
        server.require()
        return {"content": server.llm.detokenize(_check_tokens(body.tokens, server.llm.n_vocab, "tokens"))}


def _check_tokens(ids, n_vocab: int, param: str):
    """ids, when every one is a token of the vocabulary; else the 400 naming the first that is not."""
    bad = [t for t in ids if not 0 <= t < n_vocab]
    if bad:
        raise APIError(400, f"token id {bad[0]} is out of range (vocabulary of {n_vocab})", param=param)
    return ids


class _Run:
    """One completion request: its checked parameters, its jobs, and its response."""

    def __init__(self, server, body: Sampling, prompt: List[int], max_tokens: Optional[int],
                 top_logprobs: Optional[int], prefix: str, fingerprint: str):
        self.server, self.body, self.prompt = server, body, prompt
        self.id = f"{prefix}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.fingerprint = fingerprint
        self.top_logprobs = top_logprobs
        n_ctx, parallel = server.llm.n_ctx, server.engine.parallel
        if len(prompt) >= n_ctx:
            raise APIError(400, f"This model's maximum context length is {n_ctx} tokens; the prompt is "
                                f"{len(prompt)} tokens", param="messages" if prefix == "chatcmpl" else "prompt",
                           code="context_length_exceeded")
        if max_tokens is None:
            max_tokens = min(n_ctx - len(prompt), max(_MIN_DEFAULT_MAX_TOKENS, n_ctx // parallel - len(prompt)))
        elif len(prompt) + max_tokens > n_ctx:
            raise APIError(400, f"This model's maximum context length is {n_ctx} tokens. However, you requested "
                                f"{len(prompt) + max_tokens} tokens ({len(prompt)} in the prompt, {max_tokens} in "
                                "the completion). Please reduce the prompt or the completion length.",
                           param="max_tokens", code="context_length_exceeded")
        if body.n > 1 and body.n > parallel + server.engine.max_queue:
            raise APIError(400, f"n = {body.n} is more than the server's slots and queue hold", param="n")
        _check_tokens(body.logit_bias or {}, server.llm.n_vocab, "logit_bias")
        seed = body.seed if body.seed is not None else int.from_bytes(os.urandom(8), "little")
        self.params = []
        for i in range(body.n):
            p = {k: getattr(body, k) if getattr(body, k) is not None else v for k, v in _DEFAULTS.items()}
            self.params.append(dict(p, max_tokens=max_tokens, presence_penalty=body.presence_penalty,
                                    frequency_penalty=body.frequency_penalty, penalty_last_n=64,
                                    seed=(seed + i) % 2**64, stop=body.stop or [], context_shift=False,
                                    logit_bias=body.logit_bias or {},
                                    top_logprobs=-1 if top_logprobs is None else top_logprobs))
        self.jobs: List[Job] = []

    def _submit(self) -> None:
        try:
            for p in self.params:
                constraint = self.server.grammars.constraint(self.body.response_format)
                job = Job(self.prompt, p, constraint, timeout=self.server.config.timeout)
                self.server.engine.submit(job)
                self.jobs.append(job)
        except GrammarError as e:
            self.cancel()
            raise APIError(400, str(e), param="response_format") from None
        except QueueFull as e:
            self.cancel()
            raise APIError(429, f"the server is busy: {e}; retry later") from None

    def cancel(self) -> None:
        for job in self.jobs:
            job.cancel()

    async def _events(self):
        """(choice index, event) of every job as they come."""
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(i, job):
            try:
                async for ev in job.events():
                    await queue.put((i, ev, None))
            except Exception as e:
                await queue.put((i, None, e))

        tasks = [asyncio.ensure_future(pump(i, job)) for i, job in enumerate(self.jobs)]
        try:
            left = len(tasks)
            while left:
                i, ev, error = await queue.get()
                if error is not None:
                    raise error
                if ev.finish is not None:
                    left -= 1
                yield i, ev
        finally:
            self.cancel()
            for t in tasks:
                t.cancel()

    async def respond(self, request: Request, chat: bool):
        self._submit()
        if self.body.stream:
            return StreamingResponse(self._stream(chat), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        watcher = asyncio.ensure_future(_cancel_on_disconnect(request, self))
        try:
            return await self._whole(chat)
        except ContextOverflowError as e:
            raise APIError(400, str(e), code="context_length_exceeded") from None
        finally:
            watcher.cancel()

    # ---- one JSON response ---------------------------------------------------------

    async def _whole(self, chat: bool) -> dict:
        n = len(self.jobs)
        texts, finishes = [""] * n, [None] * n
        tokens: List[list] = [[] for _ in range(n)]
        lps: List[list] = [[] for _ in range(n)]
        async for i, ev in self._events():
            texts[i] += ev.text
            tokens[i] += ev.tokens
            lps[i] += ev.logprobs
            if ev.finish:
                finishes[i] = _finish_reason(ev.finish)
        choices = []
        for i in range(n):
            logprobs = self._logprobs(lps[i], chat) if self.top_logprobs is not None else None
            if chat:
                choices.append({"index": i, "message": {"role": "assistant", "content": texts[i], "refusal": None},
                                "logprobs": logprobs, "finish_reason": finishes[i]})
            else:
                text = texts[i]
                if getattr(self.body, "echo", False):
                    text = self.server.llm.detokenize(self.prompt) + text
                choices.append({"index": i, "text": text, "logprobs": logprobs, "finish_reason": finishes[i]})
        return {"id": self.id, "object": "chat.completion" if chat else "text_completion", "created": self.created,
                "model": self.server.model_id, "system_fingerprint": self.fingerprint, "choices": choices,
                "usage": self._usage()}

    def _usage(self) -> dict:
        completion = sum(job.n_tokens for job in self.jobs)
        return {"prompt_tokens": len(self.prompt), "completion_tokens": completion,
                "total_tokens": len(self.prompt) + completion,
                "prompt_tokens_details": {"cached_tokens": max((j.cached_tokens for j in self.jobs), default=0)}}

    def _logprobs(self, lps: list, chat: bool):
        """OpenAI's logprobs object for (token, logprob, top) triples."""
        tok = self.server.llm._tokenizer

        def piece(t):
            return tok.token_bytes(t)

        if chat:
            def entry(t, lp):
                b = piece(t)
                return {"token": b.decode("utf-8", "replace"), "logprob": lp, "bytes": list(b)}

            return {"content": [dict(entry(t, lp), top_logprobs=[entry(a, alp) for a, alp in top])
                                for t, lp, top in lps], "refusal": None}
        text_offset, offset = [], 0
        for t, _, _ in lps:
            text_offset.append(offset)
            offset += len(piece(t).decode("utf-8", "replace"))
        return {"tokens": [piece(t).decode("utf-8", "replace") for t, _, _ in lps],
                "token_logprobs": [lp for _, lp, _ in lps],
                "top_logprobs": [{piece(a).decode("utf-8", "replace"): alp for a, alp in top} for _, _, top in lps],
                "text_offset": text_offset}

    # ---- an event stream -----------------------------------------------------------

    async def _stream(self, chat: bool):
        usage = bool(self.body.stream_options and self.body.stream_options.include_usage)
        kind = "chat.completion.chunk" if chat else "text_completion"

        def chunk(choices, **extra) -> str:
            out = {"id": self.id, "object": kind, "created": self.created, "model": self.server.model_id,
                   "system_fingerprint": self.fingerprint, "choices": choices}
            if usage:
                out["usage"] = None
            out.update(extra)
            return f"data: {json.dumps(out, ensure_ascii=False)}\n\n"

        try:
            if chat:
                for i in range(len(self.jobs)):
                    yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                  "finish_reason": None}])
            async for i, ev in self._events():
                logprobs = self._logprobs(ev.logprobs, chat) if self.top_logprobs is not None and ev.logprobs \
                    else None
                if ev.text or logprobs:
                    if chat:
                        yield chunk([{"index": i, "delta": {"content": ev.text}, "logprobs": logprobs,
                                      "finish_reason": None}])
                    else:
                        yield chunk([{"index": i, "text": ev.text, "logprobs": logprobs, "finish_reason": None}])
                if ev.finish:
                    reason = _finish_reason(ev.finish)
                    if chat:
                        yield chunk([{"index": i, "delta": {}, "logprobs": None, "finish_reason": reason}])
                    else:
                        yield chunk([{"index": i, "text": "", "logprobs": None, "finish_reason": reason}])
            if usage:
                yield chunk([], usage=self._usage())
            yield "data: [DONE]\n\n"
        except Exception as e:  # headers are sent: report the error in the stream, as llama-server does
            status = 400 if isinstance(e, (ValueError, ContextOverflowError)) else 500
            yield f"data: {json.dumps(error_body(status, str(e)))}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            self.cancel()


def _finish_reason(finish: str) -> str:
    return "stop" if finish == "stop" else "length"


async def _cancel_on_disconnect(request: Request, run: _Run) -> None:
    """Cancels the run's jobs when its client disconnects (the body is read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            run.cancel()
            return
