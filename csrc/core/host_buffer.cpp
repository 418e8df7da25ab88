// Host buffers (host_buffer.h).
#include "core/host_buffer.h"

#include <cstdlib>

#include "base/error.h"
#include "core/planner.h"

namespace quanta {
namespace {

class HostBuffer : public Buffer {
public:
    HostBuffer(void* base, size_t size, bool owned) : Buffer(base, size), owned_(owned) {}
    ~HostBuffer() override {
        if (owned_) std::free(base());
    }

private:
    bool owned_;
};

}  // namespace

std::unique_ptr<Buffer> host_alloc(size_t bytes) {
    void* p = nullptr;
    // Pages are not touched here: only what is used becomes resident.
    if (posix_memalign(&p, kArenaAlignment, bytes ? bytes : kArenaAlignment) != 0)
        fail(ErrorKind::OutOfMemory, "cannot allocate " + std::to_string(bytes >> 20) + " MiB of host memory");
    return std::make_unique<HostBuffer>(p, bytes, true);
}

std::unique_ptr<Buffer> host_view(const void* data, size_t bytes) {
    return std::make_unique<HostBuffer>(const_cast<void*>(data), bytes, false);
}

}  // namespace quanta
