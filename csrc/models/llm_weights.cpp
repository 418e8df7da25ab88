#include "models/llm_weights.h"

#include "base/error.h"

namespace quanta::models {
namespace {

std::string dims_string(const int64_t* ne, int n) {
    std::string s = "[";
    for (int d = 0; d < n; ++d) s += std::to_string(ne[d]) + (d + 1 < n ? ", " : "]");
    return s;
}

class Binder {
public:
    explicit Binder(const gguf::File& file) : file_(file) {}

    // `ne` in ggml order (row length first); a 0 entry accepts any size.
    Weight get(const std::string& name, std::vector<int64_t> ne, bool required = true) const {
        const gguf::TensorInfo* t = file_.find_tensor(name);
        if (!t) {
            if (required) fail(ErrorKind::Model, file_.label() + ": missing tensor '" + name + "'");
            return nullptr;
        }
        bool ok = t->n_dims <= (int)ne.size();
        for (size_t d = 0; d < ne.size() && ok; ++d) ok = ne[d] == 0 || t->ne[d] == ne[d];
        for (int d = (int)ne.size(); d < gguf::kMaxDims && ok; ++d) ok = t->ne[d] == 1;
        if (!ok)
            fail(ErrorKind::Model, file_.label() + ": tensor '" + name + "' has shape " +
                                       dims_string(t->ne, t->n_dims) + ", expected " +
                                       dims_string(ne.data(), (int)ne.size()));
        if (!type_info(t->type).can_dequantize)
            fail(ErrorKind::Unsupported, file_.label() + ": tensor '" + name + "' has type " + type_name(t->type) +
                                             ", which quanta cannot compute with");
        if (ne.size() == 1 && t->type != DType::F32)
            fail(ErrorKind::Model, file_.label() + ": tensor '" + name + "' must be f32, not " + type_name(t->type));
        return t;
    }

private:
    const gguf::File& file_;
};

}  // namespace

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

}  // namespace quanta::models
