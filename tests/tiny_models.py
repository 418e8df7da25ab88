"""Tiny random transformers checkpoints of each architecture, written as f32
GGUF files with llama.cpp's tensor names and conventions (Q/K rows permuted
for llama, gemma norms stored as 1 + w), so the graphs can be checked
against transformers' own forward pass on CPU."""

import numpy as np

import quanta

ARCHS = ["llama", "qwen2", "gemma3"]
VOCAB = 160


def make_hf(arch, seed=0):
    import torch
    import transformers as tf

    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_attention_heads=4,
                  max_position_embeddings=512, rms_norm_eps=1e-6)
    if arch == "llama":
        cfg = tf.LlamaConfig(num_hidden_layers=2, num_key_value_heads=2, rope_theta=10000.0,
                             tie_word_embeddings=False, **common)
        cls = tf.LlamaForCausalLM
    elif arch == "qwen2":
        cfg = tf.Qwen2Config(num_hidden_layers=2, num_key_value_heads=2, rope_theta=1e6, tie_word_embeddings=False,
                             **common)
        cls = tf.Qwen2ForCausalLM
    else:
        # 7 layers: 0-4 and 6 attend to a window of 6 positions with rope base 1e4, layer 5 is global (1e6).
        cfg = tf.Gemma3TextConfig(num_hidden_layers=7, num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32,
                                  sliding_window=6, rope_theta=1e6, rope_local_base_freq=10000.0, **common)
        cls = tf.Gemma3ForCausalLM
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    with torch.no_grad():  # peaked logits: weights well above the default 0.02 init
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.15)
            elif arch == "gemma3":
                p.normal_(0, 0.3)  # gemma norms scale by 1 + w
            else:
                p.normal_(1, 0.3)
    return model


def _permute_rope_rows(w, n_head):
    """llama.cpp's converter order for llama Q/K: within each head, rows (i, i + d/2) become adjacent pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(model, arch, path, drop=(), reshape=None):
    """Writes `model` as an f32 GGUF. `drop` leaves tensors out; reshape={name: array} replaces one (tests)."""
    c = model.config
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    norm = (lambda w: w + 1.0) if arch == "gemma3" else (lambda w: w)
    t = {"token_embd.weight": sd["model.embed_tokens.weight"], "output_norm.weight": norm(sd["model.norm.weight"])}
    if "lm_head.weight" in sd and not c.tie_word_embeddings:
        t["output.weight"] = sd["lm_head.weight"]
    for i in range(c.num_hidden_layers):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        q, k = sd[p + "self_attn.q_proj.weight"], sd[p + "self_attn.k_proj.weight"]
        if arch == "llama":
            q, k = _permute_rope_rows(q, c.num_attention_heads), _permute_rope_rows(k, c.num_key_value_heads)
        t[b + "attn_q.weight"], t[b + "attn_k.weight"] = q, k
        t[b + "attn_v.weight"] = sd[p + "self_attn.v_proj.weight"]
        t[b + "attn_output.weight"] = sd[p + "self_attn.o_proj.weight"]
        for proj in ("q", "k", "v"):
            if p + f"self_attn.{proj}_proj.bias" in sd:
                t[b + f"attn_{proj}.bias"] = sd[p + f"self_attn.{proj}_proj.bias"]
        t[b + "ffn_gate.weight"] = sd[p + "mlp.gate_proj.weight"]
        t[b + "ffn_up.weight"] = sd[p + "mlp.up_proj.weight"]
        t[b + "ffn_down.weight"] = sd[p + "mlp.down_proj.weight"]
        t[b + "attn_norm.weight"] = norm(sd[p + "input_layernorm.weight"])
        if arch == "gemma3":
            t[b + "attn_q_norm.weight"] = norm(sd[p + "self_attn.q_norm.weight"])
            t[b + "attn_k_norm.weight"] = norm(sd[p + "self_attn.k_norm.weight"])
            t[b + "post_attention_norm.weight"] = norm(sd[p + "post_attention_layernorm.weight"])
            t[b + "ffn_norm.weight"] = norm(sd[p + "pre_feedforward_layernorm.weight"])
            t[b + "post_ffw_norm.weight"] = norm(sd[p + "post_feedforward_layernorm.weight"])
        else:
            t[b + "ffn_norm.weight"] = norm(sd[p + "post_attention_layernorm.weight"])
    t.update(reshape or {})

    with quanta.GGUFWriter(path) as w:
        w.add_metadata("general.architecture", arch)
        w.add_metadata(f"{arch}.context_length", 512, type="u32")
        w.add_metadata(f"{arch}.embedding_length", c.hidden_size, type="u32")
        w.add_metadata(f"{arch}.block_count", c.num_hidden_layers, type="u32")
        w.add_metadata(f"{arch}.feed_forward_length", c.intermediate_size, type="u32")
        w.add_metadata(f"{arch}.attention.head_count", c.num_attention_heads, type="u32")
        w.add_metadata(f"{arch}.attention.head_count_kv", c.num_key_value_heads, type="u32")
        w.add_metadata(f"{arch}.attention.key_length", head_dim, type="u32")
        w.add_metadata(f"{arch}.attention.value_length", head_dim, type="u32")
        w.add_metadata(f"{arch}.attention.layer_norm_rms_epsilon", c.rms_norm_eps, type="f32")
        w.add_metadata(f"{arch}.rope.freq_base", _rope_theta(c), type="f32")
        if arch == "gemma3":
            w.add_metadata(f"{arch}.attention.sliding_window", c.sliding_window, type="u32")
        _add_byte_tokenizer(w)
        for name, data in t.items():
            if name not in drop:
                w.add_tensor(name, np.ascontiguousarray(data, dtype=np.float32))


def _rope_theta(c):
    """The global layers' rope base (transformers 5 keeps it in rope_parameters)."""
    rope = c.rope_parameters
    return float(rope["full_attention"]["rope_theta"] if "full_attention" in rope else rope["rope_theta"])


def _add_byte_tokenizer(w):
    """A minimal SentencePiece-style vocabulary: control tokens, then one byte token per byte value."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens = tokens[:VOCAB]
    w.add_metadata("tokenizer.ggml.model", "llama")
    w.add_metadata("tokenizer.ggml.tokens", tokens)
    w.add_metadata("tokenizer.ggml.scores", [0.0] * len(tokens), type="array[f32]")
    w.add_metadata("tokenizer.ggml.token_type", [2, 3, 3] + [6] * (len(tokens) - 3), type="array[i32]")
    w.add_metadata("tokenizer.ggml.bos_token_id", 1, type="u32")
    w.add_metadata("tokenizer.ggml.eos_token_id", 2, type="u32")
