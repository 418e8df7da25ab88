// Host buffers (host_buffer.h).
#include "core/host_buffer.h"

#include <cstdlib>

#if defined(__linux__)
#include <sys/mman.h>
#endif

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

// Buffers from this size on (packed weights, KV caches, large arenas) go on 2 MiB pages where Linux has
// transparent huge pages in madvise mode, as numpy's large arrays do: decode streams every weight once per
// token, and on 4 KiB pages two threads read octets at about 19 GB/s where numpy's dot over huge pages
// read 30 (Xeon, 2 threads, bench/matmul_bench.py).
constexpr size_t kHugePage = 2u << 20, kHugeFrom = 2 * kHugePage;

}  // namespace

std::unique_ptr<Buffer> host_alloc(size_t bytes) {
    void* p = nullptr;
    const bool huge = bytes >= kHugeFrom;
    const size_t align = huge ? kHugePage : kArenaAlignment;
    // Pages are not touched here: only what is used becomes resident.
    if (posix_memalign(&p, align, bytes ? bytes : kArenaAlignment) != 0)
        fail(ErrorKind::OutOfMemory, "cannot allocate " + std::to_string(bytes >> 20) + " MiB of host memory");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (huge) madvise(p, bytes / kHugePage * kHugePage, MADV_HUGEPAGE);  // a hint: refused, nothing changes
#endif
    return std::make_unique<HostBuffer>(p, bytes, true);
}

std::unique_ptr<Buffer> host_view(const void* data, size_t bytes) {
    return std::make_unique<HostBuffer>(const_cast<void*>(data), bytes, false);
}

}  // namespace quanta
