// The interface every backend implements: the reference backend here, the CPU
// (csrc/cpu) and CUDA (csrc/cuda over libquanta_cuda.so). Models receive one
// from the registry (backends/registry.h) and never know which it is.
//
// A backend owns its memory. Buffers hold addresses in its memory space (host
// memory on the CPU, device memory on a GPU), and tensors bound to them carry
// those addresses in `data`. Weights are placed once at load (`place`: a view
// of the mapped file where the backend computes in host memory, one upload on
// a GPU); the KV cache is a buffer the model allocates; each graph shape gets
// its own planned arena from `prepare`, kept and reused with the graph.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "core/graph.h"

namespace quanta {

class Buffer {
public:
    virtual ~Buffer() = default;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    // An address in the owning backend's memory space; never dereference it on
    // the host unless the backend computes in host memory.
    char* base() const { return base_; }
    size_t size() const { return size_; }

protected:
    Buffer(void* base, size_t size) : base_(static_cast<char*>(base)), size_(size) {}

private:
    char* base_;
    size_t size_;
};

struct BackendOptions {
    int n_threads = 0;  // CPU threads; <= 0: one per core
    int device = 0;     // GPU ordinal
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual std::string name() const = 0;  // "cpu/avx2", "cuda", ...
    // The device it runs on, the name up to its '/': "cpu", "cuda" or "reference".
    std::string device() const { return name().substr(0, name().find('/')); }
    // Host threads that run this backend's kernels.
    virtual int n_threads() const { return 1; }
    // Whether this backend has a kernel for `node` with its types and layout.
    virtual bool supports(const Tensor& node) const = 0;

    // Uninitialised memory. Throws OutOfMemory naming the size.
    virtual std::unique_ptr<Buffer> alloc(size_t bytes) = 0;
    // `bytes` of host memory at `data` (which the caller keeps alive and
    // unchanged while the buffer is used): a view, or one copy to the device.
    virtual std::unique_ptr<Buffer> place(const void* data, size_t bytes) = 0;
    // A copy of weight matrix `w` (placed, 2-D, contiguous) in a layout this backend's MatMul reads faster,
    // or null (the default) where it reads the rows as they are. Called once per matrix at load; the model
    // keeps the buffer as long as the weights, and points the MatMul's Tensor::packed at it. `copied(begin,
    // bytes)` is told of each part of w.data as soon as it has been copied, so that the caller can release
    // the file's pages of a large matrix while the rest is still being packed.
    using CopiedFn = std::function<void(const void* begin, size_t bytes)>;
    virtual std::unique_ptr<Buffer> pack_weight(const Tensor& /*w*/, const CopiedFn& /*copied*/) { return nullptr; }
    // Copies between host memory and this backend's; `at` lies in one of its buffers.
    virtual void write(void* at, const void* src, size_t bytes) = 0;
    virtual void read(const void* at, void* dst, size_t bytes) = 0;

    // Finalizes `graph`, checks that every node is supported (Unsupported
    // naming the first that is not) and places its arena tensors in a new
    // buffer, returned: keep it with the graph, which can then run any number
    // of times.
    std::unique_ptr<Buffer> prepare(Graph& graph);
    // Fills an input (or reads a result) of a prepared graph; the tensor must be contiguous.
    void set_tensor(Tensor* t, const void* src, size_t bytes);
    void get_tensor(const Tensor* t, void* dst, size_t bytes);
    // Runs a prepared graph. Bad data a kernel meets (a row id out of range)
    // is reported as InvalidArgument after the run.
    virtual void compute(const Graph& graph) = 0;

protected:
    // Work memory the backend needs for this graph beyond its arena (per-thread
    // scratch, quantized activations), reserved once per prepare.
    virtual void reserve(const Graph&) {}
};

}  // namespace quanta
