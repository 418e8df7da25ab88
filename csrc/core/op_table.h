// The op table: every graph op declared once, with the sources it takes, the
// shape rule that checks a new node and sets its type and shape (so shapes
// are checked when the graph is built, with messages that name the tensors),
// and its scalar reference: plain single-threaded arithmetic on host memory
// that defines what the op computes. Each backend fills a kernel table indexed
// by the same ids (cpu/ops.cpp, kernels/cuda_api.cu), and the tests run every
// backend against the reference backend (reference_backend.h), which runs
// these functions. Adding an op touches its id (op_ids.h), its row here, its
// Graph builder method, and one kernel per backend.
//
// Parameters per op (Tensor::i / Tensor::f):
//   Scale    f[0] factor             RmsNorm  f[0] eps
//   Rope     i[0] n_rot, i[1] RopeMode, f[0] freq_base, f[1] freq_scale
//   SoftMax  f[0] scale              Concat   i[0] dimension
//   Attention f[0] scale of q.k
//   GroupNorm i[0] n_groups, f[0] eps        LayerNorm f[0] eps
//   Upsample  i[0] factor
//   TimestepEmbedding i[0] dim, i[1] 1: cos first (flip_sin_to_cos), f[0] downscale_freq_shift
//   Conv2d   i[0] stride, i[1] zero padding before and i[2] after (both dimensions alike),
//            i[3] kernel width, i[4] kernel height
//   DenseAttention f[0] scale of q.k
//   GroupMoments i[0] n_groups, i[1] the window's scale (x's pixels per window unit)
#pragma once

#include "core/tensor.h"

namespace quanta {

// QuickGelu's factor: CLIP's sigmoid fit of gelu, x * sigmoid(1.702 x).
constexpr float kQuickGeluScale = 1.702f;

struct OpInfo {
    const char* name;
    int min_src, max_src;  // sources src[0..max_src) it reads; the first min_src are required
    // Checks a node whose op, sources, parameters (and, for Copy, type) are
    // set, and sets its type, ne and n_dims. Throws InvalidArgument naming the
    // tensors. Null for leaves and views, which the Graph builds itself.
    void (*shape)(Tensor& node);
    // Computes the node from its sources on host memory. Returns false when
    // the data is bad (a row id out of range), never throws. Null for leaves and views.
    bool (*reference)(const Tensor& node);
};

const OpInfo& op_info(Op op);
const char* op_name(Op op);

}  // namespace quanta
