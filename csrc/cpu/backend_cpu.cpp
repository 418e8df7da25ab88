#include "cpu/backend_cpu.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "core/planner.h"
#include "cpu/ops.h"

namespace quanta::cpu {

CpuBackend::CpuBackend(int n_threads) : pool_(n_threads) {}

CpuBackend::~CpuBackend() { std::free(arena_); }

std::string CpuBackend::name() const {
    return std::string("cpu/") + active_kernels().name;
}

bool CpuBackend::supports(const Tensor& node) const { return cpu_supports(node); }

void CpuBackend::reserve(size_t arena_bytes, size_t scratch_floats, size_t shared_bytes) {
    if (arena_bytes > arena_bytes_) {
        void* p = nullptr;
        if (posix_memalign(&p, kArenaAlignment, arena_bytes) != 0)
            fail(ErrorKind::OutOfMemory, "cannot allocate a " + std::to_string(arena_bytes >> 20) + " MiB compute arena");
        std::free(arena_);
        arena_ = p;
        arena_bytes_ = arena_bytes;
    }
    if (scratch_floats > scratch_per_thread_) {
        scratch_per_thread_ = scratch_floats;
        scratch_.assign(scratch_per_thread_ * (size_t)pool_.size(), 0.0f);
    }
    if (shared_bytes > shared_.size()) shared_.resize(shared_bytes);
}

void CpuBackend::prepare(Graph& graph) {
    check_graph(graph);
    // Sized for every level, so switching levels between runs needs no new prepare.
    size_t scratch = 0, shared = 0;
    for (const Tensor* t : graph.order()) {
        scratch = std::max(scratch, scratch_floats(*t));
        for (Level level : available_levels()) shared = std::max(shared, shared_bytes(*t, kernels_for(level)));
    }
    reserve(graph.plan().arena_bytes, scratch, shared);
    bind_memory(graph.plan(), graph.order(), static_cast<char*>(arena_));
}

void CpuBackend::set_tensor(Tensor* t, const void* src, size_t bytes) {
    QUANTA_CHECK_ARG(t->data && bytes == t->n_bytes() && t->is_contiguous(),
                     "set_tensor: tensor '" + t->name + "' is unbound, strided, or not " + std::to_string(bytes) + " bytes");
    std::memcpy(t->data, src, bytes);
}

void CpuBackend::get_tensor(const Tensor* t, void* dst, size_t bytes) {
    QUANTA_CHECK_ARG(t->data && bytes == t->n_bytes() && t->is_contiguous(),
                     "get_tensor: tensor is unbound, strided, or not " + std::to_string(bytes) + " bytes");
    std::memcpy(dst, t->data, bytes);
}

void CpuBackend::compute(Graph& graph) {
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
            if (node->op == Op::None || node->op == Op::View) continue;
            compute_node(*node, ctx);
            pool_.barrier();
            if (pool_.failed()) return;
        }
    });
    if (bad_row_id_.load()) fail(ErrorKind::InvalidArgument, "get_rows: a row id is out of range");
}

}  // namespace quanta::cpu
