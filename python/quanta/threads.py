"""How many CPU threads quanta runs: at most one per core this process may run on.

The CPU backend's threads spin at a barrier between ops, so threads beyond the cores only wait for peers the
scheduler has parked: `quanta run -t 999` on a 2-core machine started 999 threads and took over a minute for
3 tokens. Asking for more threads than cores is therefore capped (with a warning), not obeyed. The count
comes from the process's CPU affinity where the OS has one (taskset, container cpusets), since
os.cpu_count() and C++'s hardware_concurrency() count every core of the machine.
"""

from __future__ import annotations

import numbers
import os
import warnings
from typing import Optional, Tuple

__all__ = ["usable_cores", "resolve_threads", "threads", "cli_threads"]


def usable_cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def resolve_threads(n: Optional[int]) -> Tuple[int, Optional[str]]:
    """(threads to use, a message when `n` was capped). None or 0: every usable core; negative: ValueError."""
    if n is None:
        n = 0
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n_threads must be an integer, not {n!r}")
    n = int(n)
    if n < 0:
        raise ValueError(f"n_threads must be 0 (every core) or more, not {n}")
    cores = usable_cores()
    if n == 0:
        return cores, None
    if n > cores:
        return cores, f"{n} threads asked for, but this process can use {cores} cores; using {cores} threads"
    return n, None


def threads(n: Optional[int]) -> int:
    """resolve_threads() for the library: the cap is reported with warnings.warn, at the caller's caller
    (the user's quanta.LLM(...) or quanta.convert(...) line)."""
    count, message = resolve_threads(n)
    if message:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    return count


def cli_threads(n: Optional[int]) -> int:
    """resolve_threads() for the commands: the cap is one stderr line, not a Python warning's two."""
    import sys

    count, message = resolve_threads(n)
    if message:
        print(f"quanta: warning: {message}", file=sys.stderr, flush=True)
    return count
