// The CLIP text encoder's binding and forward pass (clip_text.h).
#include "models/clip_text.h"

#include <cmath>

#include "base/error.h"
#include "core/elements.h"

namespace quanta::models {
namespace {

const std::string kPrefix = "cond_stage_model.transformer.text_model.";

// Self-attention of x [d, T, N] where token t sees tokens 0..t: with only 77
// tokens the scores are small, so they are built whole and masked.
Tensor* causal_attention(BlockBuilder& bb, Tensor* x, const Attention& a, Tensor* mask) {
    Graph& g = bb.g;
    const int64_t d = x->ne[0], T = x->ne[1], N = x->ne[2], H = a.n_head, dh = d / H;
    auto heads = [&](Tensor* t) { return g.permute(g.reshape(t, {dh, H, T, N}), 0, 2, 1, 3); };  // [dh, T, H, N]
    Tensor* q = heads(bb.linear(x, a.q));
    Tensor* k = heads(bb.linear(x, a.k));
    Tensor* v = heads(bb.linear(x, a.v));
    Tensor* probs = g.softmax(g.matmul(g.cont(k), g.cont(q)), mask, 1.0f / std::sqrt((float)dh));  // [Tk, Tq, H, N]
    Tensor* o = g.matmul(g.cont(g.transpose(v)), probs);                                         // [dh, Tq, H, N]
    o = g.reshape(g.cont(g.permute(o, 0, 2, 1, 3)), {d, T, N});
    return bb.linear(o, a.out);
}

}  // namespace

ClipTextWeights ClipTextWeights::bind(const Binder& b, int n_head, ClipActivation act, float norm_eps) {
    ClipTextWeights w;
    w.activation = act;
    w.norm_eps = norm_eps;
    w.token_embd = b.get(kPrefix + "embeddings.token_embedding.weight", {0, 0});
    w.n_embd = w.token_embd->ne[0];
    w.n_vocab = w.token_embd->ne[1];
    w.position_embd = b.get(kPrefix + "embeddings.position_embedding.weight", {w.n_embd, 0});
    if (!plain_float(w.position_embd->type))
        fail(ErrorKind::Unsupported, b.file().label() + ": the CLIP position embedding must be f32, f16 or bf16");
    w.n_ctx = w.position_embd->ne[1];
    if (n_head <= 0 || w.n_embd % n_head != 0)
        fail(ErrorKind::Model, b.file().label() + ": CLIP width " + std::to_string(w.n_embd) +
                                   " is not a multiple of its " + std::to_string(n_head) + " heads");
    const int64_t d = w.n_embd;
    for (int i = 0; b.has(kPrefix + "encoder.layers." + std::to_string(i) + ".layer_norm1.weight"); ++i) {
        const std::string p = kPrefix + "encoder.layers." + std::to_string(i) + ".";
        ClipLayer l;
        l.norm1 = bind_affine(b, p + "layer_norm1.", d);
        l.attn.q = bind_linear(b, p + "self_attn.q_proj.", d, d);
        l.attn.k = bind_linear(b, p + "self_attn.k_proj.", d, d);
        l.attn.v = bind_linear(b, p + "self_attn.v_proj.", d, d);
        l.attn.out = bind_linear(b, p + "self_attn.out_proj.", d, d);
        l.attn.n_head = n_head;
        l.norm2 = bind_affine(b, p + "layer_norm2.", d);
        l.fc1 = bind_linear(b, p + "mlp.fc1.", d, 0);
        l.fc2 = bind_linear(b, p + "mlp.fc2.", l.fc1.out(), d);
        w.layers.push_back(l);
    }
    if (w.layers.empty()) fail(ErrorKind::Model, b.file().label() + ": the CLIP text encoder has no layers");
    w.final_norm = bind_affine(b, kPrefix + "final_layer_norm.", d);
    return w;
}

Tensor* build_clip_text(BlockBuilder& bb, const ClipTextWeights& w, int n_layers, Tensor* tokens, Tensor* causal_mask) {
    Graph& g = bb.g;
    const int64_t T = w.n_ctx, N = tokens->ne[0] / T, d = w.n_embd;
    Tensor* x = g.reshape(g.get_rows(bb.weight(w.token_embd), tokens), {d, T, N});
    x = g.add(x, g.copy(bb.weight(w.position_embd), DType::F32));
    for (int il = 0; il < n_layers; ++il) {
        const ClipLayer& l = w.layers[il];
        x = g.add(x, causal_attention(bb, bb.layer_norm(x, l.norm1, w.norm_eps), l.attn, causal_mask));
        Tensor* h = bb.linear(bb.layer_norm(x, l.norm2, w.norm_eps), l.fc1);
        h = w.activation == ClipActivation::QuickGelu ? g.quick_gelu(h) : g.gelu_erf(h);
        x = g.add(x, bb.linear(h, l.fc2));
    }
    return bb.layer_norm(x, w.final_norm, w.norm_eps);
}

}  // namespace quanta::models
