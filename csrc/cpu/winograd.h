// 3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3)
// (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2015):
// each 2x2 block of outputs comes from a 4x4 block of inputs through 16
// products instead of 36, so the GEMM that dominates a UNet's convolutions
// does 2.25x less work. conv2d (conv2d.cpp) takes this path for the layers
// where it pays: plain float kernels, enough output pixels to amortize the
// transforms, and transformed kernels that fit kMaxTransformedBytes.
#pragma once

#include "cpu/ops.h"

namespace quanta::cpu {

bool winograd_applies(const Tensor& node);
void conv2d_winograd(const Tensor& node, const OpContext& ctx);
size_t winograd_scratch_floats(const Tensor& node);
size_t winograd_shared_bytes(const Tensor& node);

}  // namespace quanta::cpu
