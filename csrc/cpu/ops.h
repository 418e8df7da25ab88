// CPU implementations of the graph ops, as the CPU's kernel table. Each runs on thread `ith` of `nth`
// over its share of the rows; the level-specific inner loops come from the
// kernel table. Kernels never throw (a throw mid-graph would strand the other
// threads at a barrier): anything checkable is checked when the graph is
// built or prepared, and bad data (an out-of-range row id) is flagged.
#pragma once

#include <algorithm>
#include <atomic>

#include "core/tensor.h"
#include "core/threadpool.h"
#include "cpu/kernels.h"

namespace quanta::cpu {

struct OpContext {
    int ith = 0, nth = 1;
    const Kernels* k = nullptr;
    float* scratch = nullptr;   // this thread's scratch, scratch_floats(node) long
    uint8_t* shared = nullptr;  // one buffer for all threads, shared_bytes(node) long
    ThreadPool* pool = nullptr; // for barriers between phases of one op
    std::atomic<bool>* bad_row_id = nullptr;
};

// Thread ith's share [begin, end) of n items.
inline void split(int64_t n, const OpContext& c, int64_t* begin, int64_t* end) {
    const int64_t per = (n + c.nth - 1) / c.nth;
    *begin = std::min<int64_t>(n, per * c.ith);
    *end = std::min<int64_t>(n, *begin + per);
}

// The CPU's row of the kernel table for one op. Null members: no kernel
// (compute), every node of the op (supports), no work memory (the sizes).
struct CpuKernel {
    void (*compute)(const Tensor& node, const OpContext& ctx);
    bool (*supports)(const Tensor& node);
    // Per-thread scratch a node needs, in floats.
    size_t (*scratch_floats)(const Tensor& node);
    // Work memory shared by all threads of a node (quantized activations), in bytes.
    size_t (*shared_bytes)(const Tensor& node, const Kernels& k);
};

// Indexed by op id; leaves and views have no kernel.
const CpuKernel& cpu_kernel(Op op);

}  // namespace quanta::cpu
