#include "models/llm_graph.h"

#include <cmath>

#include "models/llm.h"

namespace quanta::models {
namespace {

class Builder {
public:
    Builder(const LlmModel& m, const KvCache& cache, const LlmBatch& b, LlmGraph& out)
        : c_(m.config), w_(m.weights), cache_(cache), b_(b), n_kv_(b.n_past + b.n_tokens), out_(out), g_(out.graph) {}

    void build() {
        const int T = b_.n_tokens;
        out_.tokens = g_.input(DType::I32, {T}, "tokens");
        out_.positions = g_.input(DType::I32, {T}, "positions");
        out_.mask = g_.input(DType::F32, {n_kv_, T}, "mask");
        if (c_.sliding_window > 0) out_.mask_swa = g_.input(DType::F32, {n_kv_, T}, "mask_swa");
        rope_freqs_ = weight(w_.rope_freqs);

        Tensor* x = g_.get_rows(weight(w_.token_embd), out_.tokens);
        if (c_.traits->embed_scale) x = g_.scale(x, std::sqrt((float)c_.n_embd));
        for (int il = 0; il < c_.n_layer; ++il) {
            const LayerWeights& l = w_.layers[il];
            Tensor* attn = attention(norm(x, l.attn_norm), il, l);
            if (l.post_attention_norm) attn = norm(attn, l.post_attention_norm);
            if (il == c_.n_layer - 1 && !b_.all_logits && T > 1) {
                // Past the last attention only the last token's row is needed.
                x = last_row(x);
                attn = last_row(attn);
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
        return g_.external(w->type, Shape(w->ne, w->ne + std::max(1, w->n_dims)), w->data, w->name);
    }

    Tensor* last_row(Tensor* t) { return g_.view(t, {t->ne[0], 1}, {t->nb[1]}, (size_t)(t->ne[1] - 1) * t->nb[1]); }

    Tensor* norm(Tensor* x, Weight w) { return g_.mul(g_.rms_norm(x, c_.norm_eps), weight(w)); }

    Tensor* linear(Tensor* x, Weight w, Weight bias = nullptr) {
        Tensor* y = g_.matmul(weight(w), x);
        return bias ? g_.add(y, weight(bias)) : y;
    }

    Tensor* attention(Tensor* h, int il, const LayerWeights& l) {
        const int T = b_.n_tokens, hd = c_.head_dim_k, hdv = c_.head_dim_v;
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

        // Append this batch's keys and values at positions n_past.., then
        // read all n_kv positions back (ordered after the writes).
        Tensor* kc = cache_.keys(g_, il);
        Tensor* vc = cache_.values(g_, il);
        Tensor* k_write = g_.copy_into(
            g_.permute(k, 0, 2, 1, 3), g_.view(kc, {hd, T, c_.n_head_kv}, {kc->nb[1], kc->nb[2]}, b_.n_past * kc->nb[1]));
        Tensor* v_write = g_.copy_into(
            g_.permute(v, 1, 2, 0, 3), g_.view(vc, {T, hdv, c_.n_head_kv}, {vc->nb[1], vc->nb[2]}, b_.n_past * vc->nb[0]));
        Tensor* keys = g_.view(g_.after(kc, k_write), {hd, n_kv_, c_.n_head_kv}, {kc->nb[1], kc->nb[2]}, 0);
        Tensor* values = g_.view(g_.after(vc, v_write), {n_kv_, hdv, c_.n_head_kv}, {vc->nb[1], vc->nb[2]}, 0);

        // Per head: scores [n_kv, T] = keys . q; heads share kv heads in groups (GQA).
        Tensor* scores = g_.matmul(keys, g_.permute(q, 0, 2, 1, 3));
        Tensor* probs = g_.softmax(scores, c_.layer_is_swa(il) ? out_.mask_swa : out_.mask, c_.attn_scale);
        Tensor* heads = g_.matmul(values, probs);  // [hdv, T, n_head]
        Tensor* merged = g_.reshape(g_.cont(g_.permute(heads, 0, 2, 1, 3)), {hdv * c_.n_head, T});
        return linear(merged, l.wo);
    }

    Tensor* feed_forward(Tensor* h, const LayerWeights& l) {
        Tensor* gate = linear(h, l.ffn_gate);
        gate = c_.traits->activation == Activation::Silu ? g_.silu(gate) : g_.gelu(gate);
        return linear(g_.mul(gate, linear(h, l.ffn_up)), l.ffn_down);
    }

    const LlmConfig& c_;
    const LlmWeights& w_;
    const KvCache& cache_;
    const LlmBatch& b_;
    const int n_kv_;
    LlmGraph& out_;
    Graph& g_;
    Tensor* rope_freqs_ = nullptr;
};

}  // namespace

std::unique_ptr<LlmGraph> build_llm_graph(const LlmModel& model, const KvCache& cache, const LlmBatch& batch) {
    auto out = std::make_unique<LlmGraph>();
    Builder(model, cache, batch, *out).build();
    return out;
}

}  // namespace quanta::models
