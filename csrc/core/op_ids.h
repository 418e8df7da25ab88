// The ids of the graph ops: one list, shared by the core (whose op table,
// op_table.h, declares each op's sources, shape rule and reference) and by
// every backend's kernel table, libquanta_cuda.so's included (its ABI carries
// these numbers, so it includes this header rather than copying it). Append
// new ops before Count and bump QUANTA_CUDA_ABI_VERSION.
#pragma once

#include <cstdint>

namespace quanta {

enum class Op : int32_t {
    None,     // a leaf: External or Input
    View,     // reshape, transpose, permute, slice, after: new shape/strides over src[0]'s bytes
    Copy,     // src[0] into a new contiguous tensor of this tensor's type (or into a view: copy_into)
    Add,      // src[0] + src[1], src[1] broadcast over src[0]
    Mul,      // src[0] * src[1], broadcast likewise
    Scale,    // src[0] * f[0]
    MatMul,   // rows of src[0] (weights) dotted with rows of src[1] (activations)
    RmsNorm,  // src[0] / sqrt(mean(x^2) + f[0]) along rows
    Rope,     // rotary embedding of src[0] at positions src[1], frequency factors src[2]
    SoftMax,  // softmax(src[0] * f[0] + mask src[1]) along rows
    Silu,
    Gelu,     // tanh approximation
    GetRows,  // rows src[1] (i32 ids) of src[0], as f32
    SetRows,  // rows of src[1] written into rows src[2] (i32 ids) of the buffer src[0] views
    Concat,   // src[0] and src[1] joined along dimension i[0]
    Attention,  // softmax(q . k * f[0]) . v over the KV cells each query token lists (src[3])
    // Diffusion (Stable Diffusion's UNet, VAE and CLIP text encoder):
    GroupNorm,  // src[0] [W, H, C, N] normalized per image over each of i[0] channel groups, eps f[0]
                // (with src[1]: by the given mean and variance of each group instead of its own)
    LayerNorm,  // (src[0] - mean) / sqrt(var + f[0]) along rows
    Upsample,   // nearest neighbour: W and H of src[0] times i[0]
    GeluErf,    // exact gelu, x * Phi(x)
    QuickGelu,  // x * sigmoid(1.702 x)
    Geglu,      // first half of each row of src[0] times gelu_erf of the second half
    TimestepEmbedding,  // sinusoids of the timesteps src[0] (f32 [n]) -> [i[0], n]
    Conv2d,     // 2-d convolution of images src[0] with kernels src[1], plus bias src[2]
    DenseAttention,  // softmax(q . k * f[0]) . v over every key, per head (diffusion's self- and cross-attention)
    GroupMoments,    // count, mean and squared deviations of each of i[0] channel groups of src[0] in a window src[1]
    Glu,        // act(src[0]) * src[1], same shapes, act by i[0] (GluAct): a gated feed-forward's gate and up
                // in one pass
    Count
};

constexpr int kOpCount = static_cast<int>(Op::Count);

// Op::Glu's activation (its i[0]).
enum class GluAct : int32_t { Silu = 0, Gelu = 1 };

}  // namespace quanta
