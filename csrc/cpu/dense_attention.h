// The CPU kernel of dense_attention (op_table.h), in its own file: blocks of
// query rows per head shared by the threads, each on the level's attend_dense.
#pragma once

#include "cpu/ops.h"

namespace quanta::cpu {

void dense_attention(const Tensor& node, const OpContext& ctx);
size_t dense_attention_scratch_floats(const Tensor& node);

}  // namespace quanta::cpu
