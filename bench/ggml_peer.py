"""ggml's CPU kernels as a benchmark peer, called through ctypes from the
libraries that llama-cpp-python installs (pip install llama-cpp-python).
Nothing of ggml is vendored or linked into quanta."""

import ctypes
from pathlib import Path

import numpy as np

GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8,
              "q2_k": 10, "q3_k": 11, "q4_k": 12, "q5_k": 13, "q6_k": 14, "bf16": 30}


class InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


def lib_dir() -> Path:
    import llama_cpp  # noqa: F401  (raises ImportError when not installed)

    return Path(llama_cpp.__file__).parent / "lib"


class Ggml:
    def __init__(self):
        d = lib_dir()
        self.base = ctypes.CDLL(str(d / "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
        self.cpu = ctypes.CDLL(str(d / "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)
        b, c = self.base, self.cpu
        b.ggml_init.argtypes = [InitParams]
        b.ggml_init.restype = ctypes.c_void_p
        b.ggml_free.argtypes = [ctypes.c_void_p]
        b.ggml_new_tensor_2d.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        b.ggml_new_tensor_2d.restype = ctypes.c_void_p
        b.ggml_mul_mat.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        b.ggml_mul_mat.restype = ctypes.c_void_p
        b.ggml_new_graph.argtypes = [ctypes.c_void_p]
        b.ggml_new_graph.restype = ctypes.c_void_p
        b.ggml_build_forward_expand.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        b.ggml_get_data.argtypes = [ctypes.c_void_p]
        b.ggml_get_data.restype = ctypes.c_void_p
        b.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                          ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        b.ggml_quantize_chunk.restype = ctypes.c_size_t
        c.ggml_graph_compute_with_ctx.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        c.ggml_graph_compute_with_ctx.restype = ctypes.c_int
        if hasattr(c, "ggml_cpu_init"):
            c.ggml_cpu_init()

    @staticmethod
    def supports(wtype: str) -> bool:
        return wtype in GGML_TYPES

    def quantize(self, x: np.ndarray, wtype: str) -> np.ndarray:
        """ggml's own quantizer (ggml_quantize_chunk, no importance matrix)."""
        from quanta import quantize as ours

        rows, n = x.shape
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.zeros_like(ours(x[:1], wtype)).repeat(rows, axis=0)
        self.base.ggml_quantize_chunk(GGML_TYPES[wtype], x.ctypes.data, out.ctypes.data, 0, rows, n, None)
        return out

    def matmul(self, weights: np.ndarray, wtype: str, m: int, k: int, threads: int):
        """A callable computing weights (raw blocks, N rows) x random activations (m x k) with ggml."""
        n = weights.shape[0]
        act = np.random.default_rng(0).standard_normal((m, k), dtype=np.float32)
        size = weights.nbytes + act.nbytes + 4 * n * m + 4 * m * k + (64 << 20)
        ctx = self.base.ggml_init(InitParams(size, None, False))
        w = self.base.ggml_new_tensor_2d(ctx, GGML_TYPES[wtype], k, n)
        x = self.base.ggml_new_tensor_2d(ctx, 0, k, m)
        ctypes.memmove(self.base.ggml_get_data(w), np.ascontiguousarray(weights).ctypes.data, weights.nbytes)
        ctypes.memmove(self.base.ggml_get_data(x), act.ctypes.data, act.nbytes)
        out = self.base.ggml_mul_mat(ctx, w, x)
        graph = self.base.ggml_new_graph(ctx)
        self.base.ggml_build_forward_expand(graph, out)
        compute = self.cpu.ggml_graph_compute_with_ctx

        def run():
            if compute(ctx, graph, threads) != 0:
                raise RuntimeError("ggml_graph_compute failed")

        run.ctx = ctx  # freed with the process; benchmarks are short-lived
        return run
