// Stable Diffusion's building blocks (sd_blocks.h): binding by name, then the
// graph of each block, written as diffusers' forward passes read.
#include "models/sd_blocks.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "core/elements.h"

namespace quanta::models {
namespace {

std::string join(const std::string& prefix, const char* name) { return prefix + name + "."; }

void require(bool ok, const Binder& b, const std::string& what) {
    if (!ok) fail(ErrorKind::Model, b.file().label() + ": " + what);
}

// Diffusion's epsilons, as diffusers sets them.
constexpr float kLayerNormEps = 1e-5f;        // BasicTransformerBlock's norms
constexpr float kTransformerGroupEps = 1e-6f;  // Transformer2DModel's group norm

}  // namespace

Affine bind_affine(const Binder& b, const std::string& prefix, int64_t c) {
    return {b.get(prefix + "weight", {c}), b.get(prefix + "bias", {c})};
}

Linear bind_linear(const Binder& b, const std::string& prefix, int64_t in, int64_t out, bool bias) {
    Linear l;
    l.w = b.get(prefix + "weight", {in, out});
    require(l.w->n_dims == 2, b, "tensor '" + prefix + "weight' must be a 2-D linear weight");
    if (bias) l.b = b.get(prefix + "bias", {out});
    return l;
}

Conv bind_conv(const Binder& b, const std::string& prefix, int64_t c_in, int64_t c_out, int k) {
    Conv c;
    const std::string name = prefix + "weight";
    const gguf::TensorInfo* t = b.file().find_tensor(name);
    c.kernel = k;
    if (t && t->n_dims <= 2) {  // kernel rows
        c.w = b.get(name, {c_in * k * k, c_out});
        require(c.w->ne[0] % (k * k) == 0, b, "convolution '" + name + "' has rows of " +
                                                  std::to_string(c.w->ne[0]) + ", not Cin x " + std::to_string(k) +
                                                  " x " + std::to_string(k));
        c.in = c.w->ne[0] / (k * k);
        c.out = c.w->ne[1];
    } else {
        c.w = b.get(name, {k, k, c_in, c_out});
        if (!plain_float(c.w->type))
            fail(ErrorKind::Unsupported, b.file().label() + ": convolution '" + name + "' is " +
                                             type_name(c.w->type) + " in 4-D; quantized kernels are stored as rows " +
                                             "[KW * KH * Cin, Cout]");
        c.in = c.w->ne[2];
        c.out = c.w->ne[3];
    }
    c.b = b.get(prefix + "bias", {c.out});
    return c;
}

ResBlock bind_res_block(const Binder& b, const std::string& p, const ResBlockNames& n, int64_t c_in, int64_t emb_dim) {
    ResBlock r;
    r.norm1 = bind_affine(b, join(p, n.norm1), c_in);
    r.conv1 = bind_conv(b, join(p, n.conv1), c_in);
    const int64_t c_out = r.conv1.c_out();
    if (n.emb) r.emb = bind_linear(b, join(p, n.emb), emb_dim, c_out);
    r.norm2 = bind_affine(b, join(p, n.norm2), c_out);
    r.conv2 = bind_conv(b, join(p, n.conv2), c_out, c_out);
    const bool has_skip = b.has(join(p, n.skip) + "weight");
    require(has_skip || c_in == c_out, b, "resnet '" + p + "' changes channels " + std::to_string(c_in) + " -> " +
                                              std::to_string(c_out) + " but has no '" + n.skip + "'");
    if (has_skip) r.skip = bind_conv(b, join(p, n.skip), c_in, c_out, 1);
    return r;
}

SpatialTransformer bind_spatial_transformer(const Binder& b, const std::string& p, int64_t c, int n_head,
                                            int64_t context_dim) {
    SpatialTransformer t;
    t.norm = bind_affine(b, p + "norm.", c);
    const bool linear = b.has(p + "proj_in.weight") && b.file().find_tensor(p + "proj_in.weight")->n_dims == 2;
    int64_t inner;
    if (linear) {
        t.proj_in_linear = bind_linear(b, p + "proj_in.", c, 0);
        inner = t.proj_in_linear.out();
        t.proj_out_linear = bind_linear(b, p + "proj_out.", inner, c);
    } else {
        t.proj_in_conv = bind_conv(b, p + "proj_in.", c, 0, 1);
        inner = t.proj_in_conv.c_out();
        t.proj_out_conv = bind_conv(b, p + "proj_out.", inner, c, 1);
    }
    require(n_head > 0 && inner % n_head == 0, b,
            "'" + p + "' has " + std::to_string(inner) + " channels, not a multiple of its " + std::to_string(n_head) + " heads");
    for (int i = 0; b.has(p + "transformer_blocks." + std::to_string(i) + ".norm1.weight"); ++i) {
        const std::string q = p + "transformer_blocks." + std::to_string(i) + ".";
        TransformerBlock k;
        k.norm1 = bind_affine(b, q + "norm1.", inner);
        k.norm2 = bind_affine(b, q + "norm2.", inner);
        k.norm3 = bind_affine(b, q + "norm3.", inner);
        for (auto [a, src, name] : {std::tuple{&k.attn1, inner, "attn1."}, std::tuple{&k.attn2, context_dim, "attn2."}}) {
            a->q = bind_linear(b, q + name + "to_q.", inner, inner, false);
            a->k = bind_linear(b, q + name + "to_k.", src, inner, false);
            a->v = bind_linear(b, q + name + "to_v.", src, inner, false);
            a->out = bind_linear(b, q + name + "to_out.0.", inner, inner);
            a->n_head = n_head;
        }
        k.ff_in = bind_linear(b, q + "ff.net.0.proj.", inner, 0);
        require(k.ff_in.out() % 2 == 0, b, "'" + q + "ff.net.0.proj.weight' must have an even width (GEGLU)");
        k.ff_out = bind_linear(b, q + "ff.net.2.", k.ff_in.out() / 2, inner);
        t.blocks.push_back(k);
    }
    require(!t.blocks.empty(), b, "'" + p + "' has no transformer_blocks");
    return t;
}

VaeAttention bind_vae_attention(const Binder& b, const std::string& p, int64_t c) {
    // 1x1 convolutions in the file ([1, 1, C, C]), linear maps on tokens here.
    auto one_by_one = [&](const char* name) {
        Conv conv = bind_conv(b, p + name + ".", c, c, 1);
        return Linear{conv.w, conv.b};
    };
    return {bind_affine(b, p + "norm.", c), one_by_one("q"), one_by_one("k"), one_by_one("v"), one_by_one("proj_out")};
}

// ---- graphs ---------------------------------------------------------------------

Tensor* BlockBuilder::weight(Weight w) {
    const char* data = weights_ + w->offset;
    if (moved_) {
        const auto it = moved_->find(w);
        if (it != moved_->end()) data = it->second;
    }
    return g.external(w->type, Shape(w->ne, w->ne + std::max(1, w->n_dims)), data, w->name);
}

Tensor* BlockBuilder::linear(Tensor* x, const Linear& l) {
    Tensor* w = weight(l.w);
    if (w->n_dims > 2) w = g.reshape(w, {w->ne[0] * w->ne[1] * w->ne[2], w->ne[3]});  // a 1x1 conv's [1, 1, C, C]
    Tensor* y = g.matmul(w, x);
    return l.b ? g.add(y, weight(l.b)) : y;
}

Tensor* BlockBuilder::conv(Tensor* x, const Conv& c, int stride, int pad, int pad_end) {
    if (pad < 0) pad = c.k() / 2;
    return g.conv2d(x, weight(c.w), weight(c.b), stride, pad, pad_end);
}

Tensor* BlockBuilder::group_norm(Tensor* x, const Affine& a, int n_groups, float eps) {
    const int64_t c = a.w->ne[0];
    Tensor* y = tap ? tap->normalize(g, x, n_groups, eps) : g.group_norm(x, n_groups, eps);
    return g.add(g.mul(y, g.reshape(weight(a.w), {1, 1, c, 1})), g.reshape(weight(a.b), {1, 1, c, 1}));
}

Tensor* BlockBuilder::layer_norm(Tensor* x, const Affine& a, float eps) {
    return g.add(g.mul(g.layer_norm(x, eps), weight(a.w)), weight(a.b));
}

Tensor* BlockBuilder::res_block(Tensor* x, const ResBlock& r, Tensor* emb_act, int n_groups, float eps) {
    Tensor* h = conv(g.silu(group_norm(x, r.norm1, n_groups, eps)), r.conv1);
    if (r.emb.w) {
        // The time embedding, one value per channel and image, added everywhere in the image.
        Tensor* e = linear(emb_act, r.emb);
        h = g.add(h, g.reshape(e, {1, 1, e->ne[0], e->ne[1]}));
    }
    h = conv(g.silu(group_norm(h, r.norm2, n_groups, eps)), r.conv2);
    return g.add(r.skip.w ? conv(x, r.skip) : x, h);
}

Tensor* BlockBuilder::to_tokens(Tensor* x) {
    Tensor* planes = g.reshape(x, {x->ne[0] * x->ne[1], x->ne[2], x->ne[3]});
    return g.cont(g.transpose(planes));
}

Tensor* BlockBuilder::to_image(Tensor* t, int64_t w, int64_t h) {
    return g.reshape(g.cont(g.transpose(t)), {w, h, t->ne[0], t->ne[2]});
}

Tensor* BlockBuilder::attention(Tensor* x, Tensor* ctx, const Attention& a) {
    if (!ctx) ctx = x;  // self-attention
    const int64_t inner = a.q.out(), d = inner / a.n_head;
    // [inner, T, N] -> [d, T, heads, N]: each head's rows, a view.
    auto heads = [&](Tensor* t) { return g.permute(g.reshape(t, {d, a.n_head, t->ne[1], t->ne[2]}), 0, 2, 1, 3); };
    Tensor* q = heads(linear(x, a.q));
    Tensor* k = heads(linear(ctx, a.k));
    Tensor* v = heads(linear(ctx, a.v));
    Tensor* o = g.dense_attention(q, k, v, 1.0f / std::sqrt((float)d));  // [d, heads, T, N]
    return linear(g.reshape(o, {inner, x->ne[1], x->ne[2]}), a.out);
}

// Tokens are independent here, so the feed-forward runs on runs of
// kFeedForwardTokens of them, each run's GEGLU projection (8x the block's
// width: 335 MB for the 16384 tokens of a 1024x1024 image at batch 2, the
// UNet's largest activation) freed before the next run's is made.
constexpr int64_t kFeedForwardTokens = 4096;

Tensor* BlockBuilder::feed_forward(Tensor* x, const TransformerBlock& b) {
    const int64_t tokens = x->ne[1] * x->ne[2];
    Tensor* rows = g.reshape(x, {x->ne[0], tokens});
    Tensor* out = nullptr;
    for (int64_t t0 = 0; t0 < tokens; t0 += kFeedForwardTokens) {
        const int64_t n = std::min(kFeedForwardTokens, tokens - t0);
        Tensor* run = g.view(rows, {x->ne[0], n}, {rows->nb[1]}, (size_t)t0 * rows->nb[1]);
        Tensor* y = linear(g.geglu(linear(run, b.ff_in)), b.ff_out);
        out = out ? g.concat(out, y, 1) : y;
    }
    return g.reshape(out, {out->ne[0], x->ne[1], x->ne[2]});
}

Tensor* BlockBuilder::spatial_transformer(Tensor* x, Tensor* context, const SpatialTransformer& t, int n_groups) {
    const int64_t w = x->ne[0], h = x->ne[1];
    Tensor* y = group_norm(x, t.norm, n_groups, kTransformerGroupEps);
    y = t.linear_proj() ? linear(to_tokens(y), t.proj_in_linear) : to_tokens(conv(y, t.proj_in_conv));
    for (const TransformerBlock& b : t.blocks) {
        y = g.add(y, attention(layer_norm(y, b.norm1, kLayerNormEps), nullptr, b.attn1));
        y = g.add(y, attention(layer_norm(y, b.norm2, kLayerNormEps), context, b.attn2));
        y = g.add(y, feed_forward(layer_norm(y, b.norm3, kLayerNormEps), b));
    }
    y = t.linear_proj() ? to_image(linear(y, t.proj_out_linear), w, h) : conv(to_image(y, w, h), t.proj_out_conv);
    return g.add(y, x);
}

Tensor* BlockBuilder::vae_attention(Tensor* x, const VaeAttention& a, int n_groups) {
    constexpr float kEps = 1e-6f;  // AutoencoderKL's norms
    Tensor* t = to_tokens(group_norm(x, a.norm, n_groups, kEps));
    const int64_t c = t->ne[0];
    auto one_head = [&](Tensor* y) { return g.reshape(y, {c, y->ne[1], 1, y->ne[2]}); };
    Tensor* o = g.dense_attention(one_head(linear(t, a.q)), one_head(linear(t, a.k)), one_head(linear(t, a.v)),
                                  1.0f / std::sqrt((float)c));
    o = linear(g.reshape(o, {c, t->ne[1], t->ne[2]}), a.proj_out);
    return g.add(to_image(o, x->ne[0], x->ne[1]), x);
}

}  // namespace quanta::models
