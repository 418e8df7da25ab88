#include "models/llm_weights.h"

#include "base/error.h"

namespace quanta::models {

LlmWeights LlmWeights::bind(const gguf::File& file, LlmConfig& c) {
    const Binder b(file);
    const ArchTraits& tr = *c.traits;
    LlmWeights w;
    w.token_embd = b.get("token_embd.weight", {c.n_embd, 0});
    c.n_vocab = (int)w.token_embd->ne[1];
    w.output_norm = b.get("output_norm.weight", {c.n_embd});
    w.output = b.get("output.weight", {c.n_embd, c.n_vocab}, false);
    if (!w.output) w.output = w.token_embd;
    w.rope_freqs = b.get("rope_freqs.weight", {c.n_rot / 2}, false);

    const int64_t q_rows = (int64_t)c.n_head * c.head_dim_k, k_rows = (int64_t)c.n_head_kv * c.head_dim_k,
                  v_rows = (int64_t)c.n_head_kv * c.head_dim_v, o_cols = (int64_t)c.n_head * c.head_dim_v;
    for (int il = 0; il < c.n_layer; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        LayerWeights l{};
        l.attn_norm = b.get(p + "attn_norm.weight", {c.n_embd});
        l.wq = b.get(p + "attn_q.weight", {c.n_embd, q_rows});
        l.wk = b.get(p + "attn_k.weight", {c.n_embd, k_rows});
        l.wv = b.get(p + "attn_v.weight", {c.n_embd, v_rows});
        l.wo = b.get(p + "attn_output.weight", {o_cols, c.n_embd});
        // Biases are optional everywhere (qwen2 has them on q/k/v).
        l.bq = b.get(p + "attn_q.bias", {q_rows}, false);
        l.bk = b.get(p + "attn_k.bias", {k_rows}, false);
        l.bv = b.get(p + "attn_v.bias", {v_rows}, false);
        if (tr.qk_norm) {
            l.q_norm = b.get(p + "attn_q_norm.weight", {c.head_dim_k});
            l.k_norm = b.get(p + "attn_k_norm.weight", {c.head_dim_k});
        }
        if (tr.sandwich_norm) {
            l.post_attention_norm = b.get(p + "post_attention_norm.weight", {c.n_embd});
            l.post_ffw_norm = b.get(p + "post_ffw_norm.weight", {c.n_embd});
        }
        l.ffn_norm = b.get(p + "ffn_norm.weight", {c.n_embd});
        l.ffn_gate = b.get(p + "ffn_gate.weight", {c.n_embd, c.n_ff});
        l.ffn_up = b.get(p + "ffn_up.weight", {c.n_embd, c.n_ff});
        l.ffn_down = b.get(p + "ffn_down.weight", {c.n_ff, c.n_embd});
        w.layers.push_back(l);
    }
    return w;
}

std::vector<Weight> LlmWeights::matrices() const {
    std::vector<Weight> out{output};
    for (const LayerWeights& l : layers)
        for (Weight w : {l.wq, l.wk, l.wv, l.wo, l.ffn_gate, l.ffn_up, l.ffn_down}) out.push_back(w);
    return out;
}

}  // namespace quanta::models
