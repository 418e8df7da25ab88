// The CPU backend (backend_cpu.h): kernels from the per-op table (ops.h) at
// the active instruction-set level.
#include "cpu/backend_cpu.h"

#include <algorithm>

#include "base/error.h"
#include "core/op_table.h"
#include "cpu/ops.h"

namespace quanta::cpu {

CpuBackend::CpuBackend(int n_threads) : pool_(n_threads) {}

std::string CpuBackend::name() const { return std::string("cpu/") + active_kernels().name; }

bool CpuBackend::supports(const Tensor& node) const {
    const CpuKernel& k = cpu_kernel(node.op);
    return k.compute && (!k.supports || k.supports(node));
}

void CpuBackend::reserve(const Graph& graph) {
    // Sized for every level, so switching levels between runs needs no new prepare.
    size_t scratch = 0, shared = 0;
    for (const Tensor* t : graph.order()) {
        const CpuKernel& k = cpu_kernel(t->op);
        if (k.scratch_floats) scratch = std::max(scratch, k.scratch_floats(*t));
        if (k.shared_bytes)
            for (Level level : available_levels()) shared = std::max(shared, k.shared_bytes(*t, kernels_for(level)));
    }
    if (scratch > scratch_per_thread_) {
        scratch_per_thread_ = scratch;
        scratch_.assign(scratch_per_thread_ * (size_t)pool_.size(), 0.0f);
    }
    if (shared > shared_.size()) shared_.resize(shared);
}

void CpuBackend::compute(const Graph& graph) {
    QUANTA_CHECK_ARG(graph.finalized(), "compute: prepare the graph first");
    const Kernels* k = &active_kernels();
    bad_row_id_.store(false);
    pool_.run([&](int ith, int nth) {
        OpContext ctx;
        ctx.ith = ith;
        ctx.nth = nth;
        ctx.k = k;
        ctx.scratch = scratch_.empty() ? nullptr : scratch_.data() + (size_t)ith * scratch_per_thread_;
        ctx.shared = shared_.data();
        ctx.pool = &pool_;
        ctx.bad_row_id = &bad_row_id_;
        for (const Tensor* node : graph.order()) {
            const CpuKernel& kernel = cpu_kernel(node->op);
            if (!kernel.compute) continue;  // leaves and views
            kernel.compute(*node, ctx);
            pool_.barrier();
            if (pool_.failed()) return;
        }
    });
    if (bad_row_id_.load()) fail(ErrorKind::InvalidArgument, "a row or cell id (get_rows, set_rows, attention) is out of range");
}

}  // namespace quanta::cpu
