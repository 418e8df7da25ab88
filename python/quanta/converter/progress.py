"""Progress of a conversion: a one-line bar on stderr (tensors, bytes, time left), or a caller's function."""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional, Union

ProgressArg = Union[bool, Callable[[int, int, int, int], None]]


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n < 1e7 else f"{n / 1e6:.0f} MB"


class Progress:
    """progress=True draws a bar on stderr; a callable gets (tensors_done, tensors, bytes_done, bytes) after each
    chunk; False stays silent. On a terminal the bar redraws in place at most 10 times a second; elsewhere
    (logs, CI) it prints a line at every tenth of the way."""

    def __init__(self, progress: ProgressArg, n_tensors: int, n_bytes: int, label: str, stream=None):
        self.callback: Optional[Callable] = progress if callable(progress) else None
        self.draw = progress is True
        self.n_tensors, self.n_bytes, self.label = n_tensors, max(n_bytes, 1), label
        self.stream = stream or sys.stderr
        self.tty = self.draw and self.stream.isatty()
        self.tensors_done = self.bytes_done = 0
        self.start = self.last_draw = time.monotonic()
        self.last_tenth = -1

    def advance(self, nbytes: int, tensor_name: str, tensor_done: bool) -> None:
        self.bytes_done += nbytes
        self.tensors_done += tensor_done
        if self.callback:
            self.callback(self.tensors_done, self.n_tensors, self.bytes_done, self.n_bytes)
        if not self.draw:
            return
        now = time.monotonic()
        tenth = 10 * self.bytes_done // self.n_bytes
        if (self.tty and now - self.last_draw >= 0.1) or (not self.tty and tenth > self.last_tenth):
            self.last_draw, self.last_tenth = now, tenth
            self._write(self._line(now, tensor_name))

    def close(self) -> None:
        if self.draw:
            elapsed = time.monotonic() - self.start
            self._write(f"{self.label}: {self.tensors_done} tensors, {_size(self.bytes_done)} in {_duration(elapsed)}")
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()

    def _line(self, now: float, tensor_name: str) -> str:
        fraction = self.bytes_done / self.n_bytes
        elapsed = now - self.start
        left = _duration(elapsed / fraction - elapsed) if fraction > 0.01 else "?"
        bar = "#" * int(24 * fraction)
        return (f"{self.label} {100 * fraction:3.0f}% |{bar:<24}| {self.tensors_done}/{self.n_tensors} tensors "
                f"{_size(self.bytes_done)} of {_size(self.n_bytes)}, {left} left  {tensor_name}")

    def _write(self, line: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
