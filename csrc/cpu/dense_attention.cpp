// dense_attention on the CPU (dense_attention.h). A task is a block of up to
// kQueryBlock query rows of one head of one batch entry; the level's kernel
// runs it over all of that head's keys (kernels.h: attend_dense).
#include "cpu/dense_attention.h"

#include <algorithm>

#include "core/elements.h"

namespace quanta::cpu {
namespace {

// Query rows per task: each key block is widened and transposed once per
// task (scalar work, about 20% of the time at 64 rows), so more rows spread
// that over more queries: 64 -> 128 -> 256 rows took SD 1.5's 4096-token,
// head size 40 self-attention from 79 to 87 to 94 GFLOP/s on one thread
// (torch's SDPA: 101). 256 rows of the largest head (160) keep the task's
// queries and outputs at 330 KiB, in L2.
constexpr int kQueryBlock = kDenseMaxQueries;

}  // namespace

void dense_attention(const Tensor& dst, const OpContext& c) {
    const Tensor *q = dst.src[0], *k = dst.src[1], *v = dst.src[2];
    const int64_t tq = q->ne[1], heads = q->ne[2], blocks = (tq + kQueryBlock - 1) / kQueryBlock;
    const bool f16 = k->type == DType::F16;
    int64_t begin, end;
    split(blocks * heads * q->ne[3], c, &begin, &end);
    for (int64_t task = begin; task < end; ++task) {
        const int64_t t0 = (task % blocks) * kQueryBlock, h = (task / blocks) % heads, n = task / (blocks * heads);
        c.k->attend_dense(f16, q->ne[0], v->ne[0], reinterpret_cast<const float*>(at(q, 0, t0, h, n)), q->nb[1] / 4,
                          (int)std::min<int64_t>(kQueryBlock, tq - t0), at(k, 0, 0, h, n), k->nb[1], at(v, 0, 0, h, n),
                          v->nb[1], k->ne[1], dst.f[0], c.scratch, reinterpret_cast<float*>(at(&dst, 0, h, t0, n)),
                          dst.nb[2] / 4);
    }
}

size_t dense_attention_scratch_floats(const Tensor& node) {
    return dense_attend_work(node.src[0]->ne[0], node.src[2]->ne[0], kQueryBlock);
}

}  // namespace quanta::cpu
