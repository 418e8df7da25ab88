// The blocks Stable Diffusion's UNet and VAE are made of, each a weight struct
// bound by its GGUF names (one name table per block type: the UNet's and the
// VAE's resnets are the same block under different names) and a graph builder.
// Images are [W, H, C, N] (core/tensor.h); attention runs on tokens [C, T, N],
// a token's channels contiguous. Binding checks every shape against the
// channels flowing in, so a bound model always builds.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "core/graph.h"
#include "models/gguf_binding.h"

namespace quanta::models {

struct Affine {  // a norm's scale and shift, [C] each
    Weight w = nullptr, b = nullptr;
};
struct Linear {  // w [in, out] any type; b [out] or null
    Weight w = nullptr, b = nullptr;
    int64_t in() const { return w->ne[0]; }
    int64_t out() const { return w->ne[1]; }
};
// w [K, K, Cin, Cout] f32/f16/bf16, or any type as kernel rows [K * K * Cin, Cout]
// (quantized files: GGUF's blocks run along a tensor's first dimension); b [Cout].
struct Conv {
    Weight w = nullptr, b = nullptr;
    int kernel = 0;
    int64_t in = 0, out = 0;
    int k() const { return kernel; }
    int64_t c_in() const { return in; }
    int64_t c_out() const { return out; }
};

// Where a resnet block's pieces sit under its prefix.
struct ResBlockNames {
    const char *norm1, *conv1, *emb, *norm2, *conv2, *skip;  // emb null: no time embedding (the VAE)
};
constexpr ResBlockNames kUnetResBlock{"in_layers.0", "in_layers.2", "emb_layers.1", "out_layers.0", "out_layers.3",
                                      "skip_connection"};
constexpr ResBlockNames kVaeResBlock{"norm1", "conv1", nullptr, "norm2", "conv2", "nin_shortcut"};

struct ResBlock {
    Affine norm1, norm2;
    Conv conv1, conv2;
    Linear emb;  // time embedding -> c_out (UNet only)
    Conv skip;   // 1x1, when the channels change
    int64_t c_out() const { return conv2.c_out(); }
};

struct Attention {  // q from the tokens, k and v from the context (or the tokens: self-attention)
    Linear q, k, v, out;
    int n_head = 1;
};

struct TransformerBlock {  // diffusers' BasicTransformerBlock
    Affine norm1, norm2, norm3;
    Attention attn1, attn2;  // self, cross
    Linear ff_in, ff_out;    // GEGLU: ff_in projects to twice the hidden width
};

struct SpatialTransformer {  // LDM's SpatialTransformer (diffusers' Transformer2DModel)
    Affine norm;
    Linear proj_in_linear, proj_out_linear;  // SD2: linear projections on tokens
    Conv proj_in_conv, proj_out_conv;        // SD1: 1x1 convolutions on the image
    std::vector<TransformerBlock> blocks;
    bool linear_proj() const { return proj_in_linear.w != nullptr; }
};

struct VaeAttention {  // the VAE's one-head mid-block attention; q/k/v/proj_out are 1x1 convs in the file
    Affine norm;
    Linear q, k, v, proj_out;
};

// Binding, each checking shapes against the channels coming in.
Affine bind_affine(const Binder& b, const std::string& prefix, int64_t c);
Linear bind_linear(const Binder& b, const std::string& prefix, int64_t in, int64_t out, bool bias = true);
Conv bind_conv(const Binder& b, const std::string& prefix, int64_t c_in, int64_t c_out = 0, int k = 3);
ResBlock bind_res_block(const Binder& b, const std::string& prefix, const ResBlockNames& names, int64_t c_in,
                        int64_t emb_dim = 0);
// The context width is checked against every block's cross-attention.
SpatialTransformer bind_spatial_transformer(const Binder& b, const std::string& prefix, int64_t c, int n_head,
                                            int64_t context_dim);
VaeAttention bind_vae_attention(const Binder& b, const std::string& prefix, int64_t c);

// Weights whose data lives outside the file's placed tensor data (LoRA-merged
// copies, sd_lora.h): the backend address of each.
using MovedWeights = std::unordered_map<Weight, const char*>;

// Where a graph's group norms take their statistics from. Without one, each
// norm uses its own input's; a tiled VAE decode (vae_tiles.h) sets one to
// measure every norm's statistics in a tile or to impose the whole image's.
class GroupNormTap {
public:
    virtual ~GroupNormTap() = default;
    // The graph's next group norm, of x: x normalized, before the affine.
    virtual Tensor* normalize(Graph& g, Tensor* x, int n_groups, float eps) = 0;
};

// Builds the blocks into a graph. `weights` is the file's tensor data as
// placed on the backend: a weight lives at weights + its offset, unless
// `moved` gives it another address.
class BlockBuilder {
public:
    BlockBuilder(Graph& g, const char* weights, const MovedWeights* moved = nullptr)
        : g(g), weights_(weights), moved_(moved) {}

    Tensor* weight(Weight w);
    Tensor* linear(Tensor* x, const Linear& l);
    // Zero padding `pad` before and `pad_end` after (-1: the same), default k / 2.
    Tensor* conv(Tensor* x, const Conv& c, int stride = 1, int pad = -1, int pad_end = -1);
    Tensor* group_norm(Tensor* x, const Affine& a, int n_groups, float eps);
    Tensor* layer_norm(Tensor* x, const Affine& a, float eps);
    // x [W, H, C, N]; emb_act: the time embedding after SiLU, [emb_dim, N] (null in the VAE).
    Tensor* res_block(Tensor* x, const ResBlock& r, Tensor* emb_act, int n_groups, float eps);
    // Multi-head attention of tokens x [C, T, N] over ctx [Cc, Tc, N].
    Tensor* attention(Tensor* x, Tensor* ctx, const Attention& a);
    Tensor* spatial_transformer(Tensor* x, Tensor* context, const SpatialTransformer& t, int n_groups);
    // GEGLU feed-forward of tokens x [C, T, N], a few thousand tokens at a time.
    Tensor* feed_forward(Tensor* x, const TransformerBlock& b);
    Tensor* vae_attention(Tensor* x, const VaeAttention& a, int n_groups);
    // [W, H, C, N] <-> [C, W * H, N].
    Tensor* to_tokens(Tensor* x);
    Tensor* to_image(Tensor* t, int64_t w, int64_t h);

    Graph& g;
    GroupNormTap* tap = nullptr;

private:
    const char* weights_;
    const MovedWeights* moved_;
};

}  // namespace quanta::models
