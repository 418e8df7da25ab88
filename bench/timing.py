"""Timing shared by the benchmarks."""

import time


def best_times_alternating(fns, repeats, settle=0.05):
    """Best time of each callable, running them in turn so that machine noise hits all alike.
    Each timed call starts after `settle` seconds of quiet: ggml's worker threads keep spinning
    for a while after a graph finishes, and without the pause they steal a core from whatever
    runs next (measured here: quanta's q4_k prefill fell from 570 to 400 GOP/s right after ggml)."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < settle:  # busy, not asleep: an idle core clocks down
                pass
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best
