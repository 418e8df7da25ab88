// The CPU kernel of conv2d (op_table.h), in its own file: an implicit GEMM
// over tiles of output pixels on the matmul's inner kernels.
#pragma once

#include "cpu/ops.h"

namespace quanta::cpu {

void conv2d(const Tensor& node, const OpContext& ctx);
// Per-thread scratch: one tile's patches (f32 and, for quantized kernels, 8-bit) and a dequantized kernel row.
size_t conv2d_scratch_floats(const Tensor& node);

}  // namespace quanta::cpu
