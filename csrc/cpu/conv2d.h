// The CPU kernel of conv2d (op_table.h), in its own file: an implicit GEMM
// over tiles of output pixels, their patches gathered per thread.
#pragma once

#include "cpu/ops.h"

namespace quanta::cpu {

void conv2d(const Tensor& node, const OpContext& ctx);
// Per-thread scratch: one tile's patches and what its kernel rows need (conv2d.cpp).
size_t conv2d_scratch_floats(const Tensor& node);
// Shared by the threads: quantized kernels unpacked into GEMM panels, where the level has the GEMM tile.
size_t conv2d_shared_bytes(const Tensor& node, const Kernels& k);

}  // namespace quanta::cpu
