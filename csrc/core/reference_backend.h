// The reference backend: runs every node with the op table's scalar
// reference (op_table.h), one thread, in host memory. Slow on purpose; the
// tests run the CPU kernels at every level, and the CUDA kernels, against it.
#pragma once

#include "core/host_buffer.h"

namespace quanta {

class ReferenceBackend : public HostMemoryBackend {
public:
    std::string name() const override { return "reference"; }
    bool supports(const Tensor& node) const override;
    void compute(const Graph& graph) override;
};

}  // namespace quanta
