// The interface every backend implements: CPU now, CUDA in libquanta_cuda.so.
// A backend places a finalized graph's arena tensors in its own memory
// (prepare), lets the caller fill inputs and read results (set/get_tensor),
// and runs the ops in order (compute).
#pragma once

#include <cstddef>
#include <string>

#include "core/graph.h"

namespace quanta {

class Backend {
public:
    virtual ~Backend() = default;
    virtual std::string name() const = 0;
    // Whether this backend has a kernel for `node` with its types and layout.
    virtual bool supports(const Tensor& node) const = 0;
    // Finalizes the graph if needed, checks every node is supported (throws
    // Unsupported naming the first that is not) and binds its memory.
    virtual void prepare(Graph& graph) = 0;
    virtual void set_tensor(Tensor* t, const void* src, size_t bytes) = 0;
    virtual void get_tensor(const Tensor* t, void* dst, size_t bytes) = 0;
    virtual void compute(Graph& graph) = 0;

protected:
    // Shared by implementations: finalize and check support.
    void check_graph(Graph& graph) const;
};

}  // namespace quanta
