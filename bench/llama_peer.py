"""llama.cpp as a peer, through llama-cpp-python's low-level bindings (no
Python-side sampling or logit copies in the timed path): load a GGUF, decode
token batches into a KV cache, read logits, clear the cache."""

import ctypes

import numpy as np


class LlamaPeer:
    def __init__(self, path, n_ctx=4096, threads=2, n_batch=512, kv_type="f16", flash_attn=None, log=None, n_seq=1):
        """kv_type: "f16" (llama.cpp's default) or "f32" KV cache. flash_attn: None lets llama.cpp decide (its
        default, on for CPU), False/True force it. log: a list that collects llama.cpp's log lines (level, text)
        while the model loads; None discards them. n_seq: sequences one batch may hold (n_seq_max), sharing
        one unified KV cache of n_ctx cells, as quanta's do."""
        import llama_cpp

        self.lc = llama_cpp
        llama_cpp.llama_backend_init()
        if log is not None:
            global _sink  # kept alive: llama.cpp holds the pointer until the next llama_log_set
            _sink = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)(
                lambda level, text, user_data: log.append((level, text.decode(errors="replace"))))
            llama_cpp.llama_log_set(_sink, ctypes.c_void_p(0))
        else:
            llama_cpp.llama_log_set(_silence, ctypes.c_void_p(0))
        mp = llama_cpp.llama_model_default_params()
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), mp)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        cp = llama_cpp.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_batch
        cp.n_ubatch = n_batch
        cp.n_threads = threads
        cp.n_threads_batch = threads
        cp.n_seq_max = n_seq
        if hasattr(cp, "kv_unified"):  # otherwise llama.cpp splits n_ctx into n_seq parts
            cp.kv_unified = True
        kv = {"f16": llama_cpp.GGML_TYPE_F16, "f32": llama_cpp.GGML_TYPE_F32}[kv_type]
        cp.type_k = cp.type_v = kv
        if flash_attn is not None:
            cp.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else \
                llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.ctx = llama_cpp.llama_init_from_model(self.model, cp)
        if log is not None:
            llama_cpp.llama_log_set(_silence, ctypes.c_void_p(0))
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_past = 0

    def clear(self):
        self.lc.llama_memory_clear(self.lc.llama_get_memory(self.ctx), True)
        self.n_past = 0

    def decode(self, tokens, all_logits=False):
        """Appends tokens; returns the last token's logits, or all rows with all_logits."""
        n = len(tokens)
        self.decode_batch(tokens, [0] * n, range(self.n_past, self.n_past + n),
                          [all_logits or i == n - 1 for i in range(n)])
        self.n_past += n
        rows = n if all_logits else 1
        ptr = self.lc.llama_get_logits(self.ctx) if all_logits else self.lc.llama_get_logits_ith(self.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(rows * self.n_vocab,)).reshape(rows, self.n_vocab).copy()

    def decode_batch(self, tokens, seqs, positions, logits=None):
        """One llama_batch of tokens of any sequences; logits (left in llama.cpp's buffer) for those flagged,
        for every token when logits is None."""
        n = len(tokens)
        batch = self.lc.llama_batch_init(n, 0, 1)
        try:
            for i, (t, s, p) in enumerate(zip(tokens, seqs, positions)):
                batch.token[i] = int(t)
                batch.pos[i] = int(p)
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = int(s)
                batch.logits[i] = True if logits is None else bool(logits[i])
            batch.n_tokens = n
            rc = self.lc.llama_decode(self.ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
        finally:
            self.lc.llama_batch_free(batch)

    def tokenize(self, text, add_special=True):
        data = text.encode()
        buf = (self.lc.llama_token * (len(data) + 16))()
        n = self.lc.llama_tokenize(self.vocab, data, len(data), buf, len(buf), add_special, True)
        if n < 0:
            raise RuntimeError("llama_tokenize failed")
        return list(buf[:n])

    def greedy(self, tokens, n):
        """Greedy continuation of `tokens` by n tokens (stops at end of generation)."""
        self.clear()
        logits = self.decode(tokens)[0]
        out = []
        for _ in range(n):
            t = int(np.argmax(logits))
            if self.lc.llama_vocab_is_eog(self.vocab, t):
                break
            out.append(t)
            logits = self.decode([t])[0]
        return out


_sink = None


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _silence(level, text, user_data):
    pass
