// The CPU backend: runs a graph on a thread pool, every thread walking the
// node list and taking its share of each node's rows, with a barrier between
// nodes. Memory is host memory: weights stay in the file mapping (place is a
// view), and where the kernel level has octet kernels the quantized matrices
// also get a copy in octets (octets.h) for MatMul; arenas and the KV cache are
// aligned allocations. Per-thread scratch
// and the shared quantized-activation buffer grow to the largest graph
// prepared and are reused by every later run.
#pragma once

#include <atomic>
#include <vector>

#include "core/host_buffer.h"
#include "core/threadpool.h"

namespace quanta::cpu {

class CpuBackend : public HostMemoryBackend {
public:
    // n_threads <= 0: one per hardware core.
    explicit CpuBackend(int n_threads = 0);

    std::string name() const override;
    int n_threads() const override { return pool_.size(); }
    bool supports(const Tensor& node) const override;
    void compute(const Graph& graph) override;
    // Octets of a quantized matrix, unless QUANTA_REPACK=0 or the active level has no octet kernels.
    std::unique_ptr<Buffer> pack_weight(const Tensor& w, const CopiedFn& copied) override;

protected:
    void reserve(const Graph& graph) override;

private:
    ThreadPool pool_;
    std::unique_ptr<Buffer> scratch_;  // n_threads * scratch_per_thread_ floats
    size_t scratch_per_thread_ = 0;
    std::unique_ptr<Buffer> shared_;  // work memory all threads of a node share
    std::atomic<bool> bad_row_id_{false};
};

}  // namespace quanta::cpu
