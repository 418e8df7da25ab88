// The CUDA backend, driving libquanta_cuda.so through its C table. Arena
// tensors live in one device buffer; External tensors (weights) are uploaded
// once per graph and kept. Its op set grows kernel by kernel; supports()
// tells the truth about what it has today (elementwise add).
#pragma once

#include <unordered_map>

#include "core/backend.h"
#include "cuda/loader.h"

namespace quanta::cuda {

class CudaBackend : public Backend {
public:
    // Throws Unsupported with the loader's reason when CUDA is not usable.
    CudaBackend();
    ~CudaBackend() override;

    std::string name() const override { return "cuda"; }
    bool supports(const Tensor& node) const override;
    void prepare(Graph& graph) override;
    void set_tensor(Tensor* t, const void* src, size_t bytes) override;
    void get_tensor(const Tensor* t, void* dst, size_t bytes) override;
    void compute(Graph& graph) override;

private:
    void check(int rc, const char* what) const;
    void* device_ptr(const Tensor* t) const;

    const quanta_cuda_api* api_;
    void* arena_ = nullptr;
    size_t arena_bytes_ = 0;
    std::unordered_map<const Tensor*, void*> uploaded_;  // External tensor -> device copy
};

}  // namespace quanta::cuda
