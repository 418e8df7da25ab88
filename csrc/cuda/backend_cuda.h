// The CUDA backend: the Backend interface over one instance of
// libquanta_cuda.so's backend table (kernels/quanta_cuda_abi.h). Its buffers
// are device memory: weights are uploaded once when placed, arenas and the KV
// cache are device allocations, and a graph crosses to the library as an
// array of node descriptions whose addresses are all device addresses.
#pragma once

#include "core/backend.h"
#include "cuda/loader.h"

namespace quanta::cuda {

class CudaBackend : public Backend {
public:
    // Throws Unsupported with the loader's reason when CUDA is not usable.
    explicit CudaBackend(int device = 0);
    ~CudaBackend() override;

    std::string name() const override { return "cuda"; }
    bool supports(const Tensor& node) const override;
    std::unique_ptr<Buffer> alloc(size_t bytes) override;
    std::unique_ptr<Buffer> place(const void* data, size_t bytes) override;
    void write(void* at, const void* src, size_t bytes) override;
    void read(const void* at, void* dst, size_t bytes) override;
    void compute(const Graph& graph) override;

private:
    void check(int rc, const char* what) const;

    const quanta_cuda_api* api_;
    void* instance_ = nullptr;
};

}  // namespace quanta::cuda
