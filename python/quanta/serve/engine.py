"""The server's engine: one model, one context and one C++ generator, driven by
one worker thread, with asyncio on the other side.

Requests (jobs) arrive from the event loop. The worker adds them to the
generator between steps, runs a step (the GIL is released while it decodes),
and hands each job what it generated, through the event loop, as events. The
generator decodes every running request in one batch per step and starts
waiting ones as slots free (continuous batching); only this thread ever calls
it. A cancelled job (its client went away, or its time ran out) is cancelled
in the generator before the next step, so it frees its slot within one step.

The queue is bounded: `parallel` jobs run, `max_queue` more may wait, and
submit() refuses the next one at once (QueueFull: the server answers 429).
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, List, Optional

from .. import _core

__all__ = ["Engine", "Job", "Event", "QueueFull", "Stats"]


class QueueFull(Exception):
    """Every slot is busy and the queue is full."""


@dataclass
class Event:
    """What one step produced for a job: new text, new token ids (with log-probabilities
    when asked), and the finish reason once it is done ("stop", "length", "cancelled")."""
    text: str = ""
    tokens: List[int] = field(default_factory=list)
    logprobs: List[Any] = field(default_factory=list)
    finish: Optional[str] = None
    error: Optional[BaseException] = None


@dataclass
class Stats:
    """Counters for /metrics, updated by the worker."""
    requests: int = 0          # jobs submitted
    rejected: int = 0          # refused with a full queue
    prompt_tokens: int = 0     # of finished jobs
    cached_tokens: int = 0     # prompt tokens reused from the cache
    completion_tokens: int = 0
    steps: int = 0
    busy_slots: int = 0
    queued: int = 0


class Job:
    """One generation request: prompt token ids and the generator's keyword arguments
    (Generator.add), plus an optional deadline (seconds) after which it is cut short
    with finish reason "length"."""

    def __init__(self, prompt: List[int], params: dict, constraint=None, timeout: Optional[float] = None):
        self.prompt = prompt
        self.params = params
        self.constraint = constraint
        self.deadline = time.monotonic() + timeout if timeout else None
        self.cached_tokens = 0
        self.n_tokens = 0
        self.timed_out = False
        self._cancel = False
        self._id: Optional[int] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._events: "asyncio.Queue[Event]" = asyncio.Queue()

    def cancel(self) -> None:
        """Stops the job at the worker's next step (safe from any thread)."""
        self._cancel = True

    async def events(self):
        """The job's events until (and including) the one with a finish reason."""
        while True:
            event = await self._events.get()
            if event.error is not None:
                raise event.error
            yield event
            if event.finish is not None:
                return

    def _post(self, event: Event) -> None:
        self._loop.call_soon_threadsafe(self._events.put_nowait, event)


class Engine:
    """Runs jobs on `llm` (a quanta.LLM whose context has `parallel` sequences)."""

    def __init__(self, llm, max_queue: int = 64):
        self.llm = llm
        self.parallel = llm._ctx.n_seq
        self.max_queue = max_queue
        self.stats = Stats()
        self._gen = _core.Generator(llm._ctx, llm._tokenizer)
        self._wake = threading.Condition()
        self._incoming: List[Job] = []
        self._active: List[Job] = []  # added to the generator, not finished
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="quanta-engine", daemon=True)
        self._thread.start()

    # ---- the event loop's side -------------------------------------------------

    def submit(self, job: Job) -> Job:
        """Queues a job (call from the event loop); raises QueueFull when the queue is full."""
        job._loop = asyncio.get_running_loop()
        with self._wake:
            if len(self._incoming) + len(self._active) >= self.parallel + self.max_queue:
                self.stats.rejected += 1
                raise QueueFull(f"{self.parallel} slots are busy and {self.max_queue} requests wait already")
            self.stats.requests += 1
            self._incoming.append(job)
            self._wake.notify()
        return job

    @property
    def alive(self) -> bool:
        """Whether the worker thread runs (it only stops when closed)."""
        return self._thread.is_alive()

    def close(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join()

    # ---- the worker ---------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._turn()
            except Exception:  # a bug in this loop: report it, keep serving
                traceback.print_exc()

    def _turn(self) -> None:
        """Takes new jobs, cancels gone ones, runs one step and hands out what it made."""
        with self._wake:
            while not self._stopping and not self._incoming and not self._active:
                self._wake.wait()
            if self._stopping:
                return
            new, self._incoming = self._incoming, []
        for job in new:
            self._add(job)
        now = time.monotonic()
        for job in self._active:
            if job.deadline is not None and now >= job.deadline and not job._cancel:
                job.timed_out = True
                job._cancel = True
            if job._cancel:
                self._gen.cancel(job._id)
        try:
            self._gen.step()
        except Exception as e:  # a bug: fail every running job, keep serving
            for job in self._active:
                self._gen.cancel(job._id)
                job._post(Event(error=e))
            self._gen.step()  # ends the cancelled requests
            self._release_finished(post=False)
            return
        self.stats.steps += 1
        self._release_finished(post=True)

    def _add(self, job: Job) -> None:
        try:
            job._id = self._gen.add(job.prompt, constraint=job.constraint, **job.params)
        except Exception as e:
            job._post(Event(error=e))
            return
        self._active.append(job)

    def _release_finished(self, post: bool) -> None:
        gen = self._gen
        still = []
        for job in self._active:
            finish = gen.finish(job._id)
            if post:
                tokens = gen.tokens(job._id, job.n_tokens)
                logprobs = gen.logprobs(job._id, job.n_tokens) if job.params.get("top_logprobs", -1) >= 0 else []
                job.n_tokens += len(tokens)
                text = gen.take(job._id)
                done = finish != "running"
                if done:
                    job.cached_tokens = gen.cached_tokens(job._id)
                    if finish == "cancelled" and job.timed_out:
                        finish = "length"
                if text or tokens or done:
                    job._post(Event(text=text, tokens=tokens, logprobs=logprobs, finish=finish if done else None))
            if finish == "running":
                still.append(job)
                continue
            self.stats.prompt_tokens += len(job.prompt)
            self.stats.cached_tokens += job.cached_tokens
            self.stats.completion_tokens += job.n_tokens
            gen.release(job._id)
        self._active = still
        self.stats.busy_slots = gen.n_running
        self.stats.queued = gen.n_waiting + len(self._incoming)
