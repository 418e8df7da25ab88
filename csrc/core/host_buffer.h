// Buffers in host memory, for the backends that compute there (CPU,
// reference): aligned allocations, and views of memory someone else owns
// (weights in a file mapping), which is how such backends place weights.
#pragma once

#include <cstring>
#include <memory>

#include "core/backend.h"

namespace quanta {

// Aligned to kArenaAlignment; throws OutOfMemory naming the size.
std::unique_ptr<Buffer> host_alloc(size_t bytes);
std::unique_ptr<Buffer> host_view(const void* data, size_t bytes);

// The memory half of a backend that computes in host memory.
class HostMemoryBackend : public Backend {
public:
    std::unique_ptr<Buffer> alloc(size_t bytes) override { return host_alloc(bytes); }
    std::unique_ptr<Buffer> place(const void* data, size_t bytes) override { return host_view(data, bytes); }
    void write(void* at, const void* src, size_t bytes) override { std::memcpy(at, src, bytes); }
    void read(const void* at, void* dst, size_t bytes) override { std::memcpy(dst, at, bytes); }
};

}  // namespace quanta
