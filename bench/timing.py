"""Timing shared by the benchmarks."""

import time


def settle(seconds=0.05):
    """Busy quiet before a timed run (not asleep: an idle core clocks down). ggml's worker threads keep
    spinning for a while after a graph finishes and would otherwise steal a core from whatever runs next
    (measured here: quanta's q4_k prefill fell from 570 to 400 GOP/s right after ggml)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        pass


def best_times_alternating(fns, repeats, quiet=0.05):
    """Best time of each callable, running them in turn so that machine noise hits all alike;
    each timed call starts after `quiet` seconds of settle()."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            settle(quiet)
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best
