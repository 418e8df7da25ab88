"""What the single-op benchmarks (conv_bench.py, attention_bench.py) share:
their command line, and a graph of one op over one f32 input run on the CPU
backend as they time it."""

import argparse

import torch

from quanta import _core


def parse_args(doc):
    """--threads and --repeats; torch (the peer) is set to the same thread count."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    return args


class OneOp:
    """build(graph, input) -> the op's node over input x (a numpy array fed each run); calling runs the graph."""

    def __init__(self, x, threads, build):
        self.graph = _core.Graph()
        self.x = self.graph.input("f32", list(x.shape))
        self.out = build(self.graph, self.x)
        self.xv, self.threads = x, threads

    def __call__(self):
        return self.graph.run([self.out], {self.x: self.xv}, "cpu", self.threads)[0]
