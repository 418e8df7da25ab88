// The transformer block graph (llm_graph.h), one forward pass read top to bottom.
#include "models/llm_graph.h"

#include <cmath>

#include "models/llm.h"

namespace quanta::models {
namespace {

class Builder {
public:
    Builder(const LlmModel& m, const KvCache& cache, const LlmShape& s, LlmGraph& out)
        : m_(m), c_(m.config), w_(m.weights), cache_(cache), s_(s), n_kv_(s.n_kv), out_(out), g_(out.graph) {}

    void build() {
        const int T = s_.n_tokens;
        out_.shape = s_;
        out_.tokens = g_.input(DType::I32, {T}, "tokens");
        out_.positions = g_.input(DType::I32, {T}, "positions");
        out_.cells = g_.input(DType::I32, {T}, "kv_cells");
        out_.visible = g_.input(DType::I32, {n_kv_ + 1, T}, "kv_visible");
        if (c_.sliding_window > 0) out_.visible_swa = g_.input(DType::I32, {n_kv_ + 1, T}, "kv_visible_swa");
        if (s_.n_outputs < T) out_.out_rows = g_.input(DType::I32, {s_.n_outputs}, "out_rows");
        rope_freqs_ = weight(w_.rope_freqs);

        Tensor* x = g_.get_rows(weight(w_.token_embd), out_.tokens);
        if (c_.traits->embed_scale) x = g_.scale(x, std::sqrt((float)c_.n_embd));
        for (int il = 0; il < c_.n_layer; ++il) {
            const LayerWeights& l = w_.layers[il];
            Tensor* attn = attention(norm(x, l.attn_norm), il, l);
            if (l.post_attention_norm) attn = norm(attn, l.post_attention_norm);
            if (il == c_.n_layer - 1 && out_.out_rows) {
                // Past the last attention only the rows whose logits are wanted are needed.
                x = g_.get_rows(x, out_.out_rows);
                attn = g_.get_rows(attn, out_.out_rows);
            }
            x = g_.add(x, attn);
            Tensor* ffn = feed_forward(norm(x, l.ffn_norm), l);
            if (l.post_ffw_norm) ffn = norm(ffn, l.post_ffw_norm);
            x = g_.add(x, ffn);
        }
        x = norm(x, w_.output_norm);
        out_.logits = g_.matmul(weight(w_.output), x);
        g_.mark_output(out_.logits);
    }

private:
    Tensor* weight(Weight w) {
        if (!w) return nullptr;
        Tensor* t = g_.external(w->type, Shape(w->ne, w->ne + std::max(1, w->n_dims)), m_.weight_data(w), w->name);
        t->packed = m_.packed_data(w);
        return t;
    }

    Tensor* norm(Tensor* x, Weight w) { return g_.mul(g_.rms_norm(x, c_.norm_eps), weight(w)); }

    Tensor* linear(Tensor* x, Weight w, Weight bias = nullptr) {
        Tensor* y = g_.matmul(weight(w), x);
        return bias ? g_.add(y, weight(bias)) : y;
    }

    Tensor* attention(Tensor* h, int il, const LayerWeights& l) {
        const int T = s_.n_tokens, hd = c_.head_dim_k, hdv = c_.head_dim_v;
        Tensor* q = g_.reshape(linear(h, l.wq, l.bq), {hd, c_.n_head, T});
        Tensor* k = g_.reshape(linear(h, l.wk, l.bk), {hd, c_.n_head_kv, T});
        Tensor* v = g_.reshape(linear(h, l.wv, l.bv), {hdv, c_.n_head_kv, T});
        if (l.q_norm) {
            q = norm(q, l.q_norm);
            k = norm(k, l.k_norm);
        }
        const float base = c_.layer_rope_base(il), scale = c_.layer_rope_scale(il);
        q = g_.rope(q, out_.positions, c_.n_rot, c_.traits->rope_mode, base, scale, rope_freqs_);
        k = g_.rope(k, out_.positions, c_.n_rot, c_.traits->rope_mode, base, scale, rope_freqs_);

        // Write this batch's keys and values into their cells, then attend
        // (ordered after the writes) to the cells each token lists.
        Tensor* kc = cache_.keys(g_, il);
        Tensor* vc = cache_.values(g_, il);
        Tensor* k_write = g_.set_rows(kc, g_.permute(k, 0, 2, 1, 3), out_.cells);
        Tensor* v_write = g_.set_rows(vc, g_.permute(v, 0, 2, 1, 3), out_.cells);
        Tensor* visible = c_.layer_is_swa(il) ? out_.visible_swa : out_.visible;
        Tensor* heads = g_.attention(q, g_.after(kc, k_write), g_.after(vc, v_write), visible, c_.attn_scale);
        Tensor* merged = g_.reshape(heads, {hdv * c_.n_head, T});
        return linear(merged, l.wo);
    }

    Tensor* feed_forward(Tensor* h, const LayerWeights& l) {
        Tensor* gate = linear(h, l.ffn_gate);
        Tensor* up = linear(h, l.ffn_up);
        const GluAct act = c_.traits->activation == Activation::Silu ? GluAct::Silu : GluAct::Gelu;
        return linear(g_.glu(gate, up, act), l.ffn_down);
    }

    const LlmModel& m_;
    const LlmConfig& c_;
    const LlmWeights& w_;
    const KvCache& cache_;
    const LlmShape& s_;
    const int n_kv_;
    LlmGraph& out_;
    Graph& g_;
    Tensor* rope_freqs_ = nullptr;
};

}  // namespace

std::unique_ptr<LlmGraph> build_llm_graph(const LlmModel& model, const KvCache& cache, const LlmShape& shape) {
    auto out = std::make_unique<LlmGraph>();
    Builder(model, cache, shape, *out).build();
    return out;
}

}  // namespace quanta::models
