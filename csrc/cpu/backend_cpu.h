// The CPU backend: runs a graph on a thread pool, every thread walking the
// node list and taking its share of each node's rows, with a barrier between
// nodes. Arena memory is one aligned host buffer, grown to the largest plan
// seen and reused by every later graph.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "core/backend.h"
#include "core/threadpool.h"
#include "cpu/kernels.h"

namespace quanta::cpu {

class CpuBackend : public Backend {
public:
    // n_threads <= 0: one per hardware core.
    explicit CpuBackend(int n_threads = 0);
    ~CpuBackend() override;

    std::string name() const override;
    bool supports(const Tensor& node) const override;
    void prepare(Graph& graph) override;
    void set_tensor(Tensor* t, const void* src, size_t bytes) override;
    void get_tensor(const Tensor* t, void* dst, size_t bytes) override;
    void compute(Graph& graph) override;

    int n_threads() const { return pool_.size(); }
    size_t arena_bytes() const { return arena_bytes_; }

private:
    void reserve(size_t arena_bytes, size_t scratch_floats, size_t shared_bytes);

    ThreadPool pool_;
    void* arena_ = nullptr;
    size_t arena_bytes_ = 0;
    std::vector<float> scratch_;  // n_threads * scratch_per_thread_
    size_t scratch_per_thread_ = 0;
    std::vector<uint8_t> shared_;  // work memory all threads of a node share
    std::atomic<bool> bad_row_id_{false};
};

}  // namespace quanta::cpu
