// The KV cache (kv_cache.h): its cells and its layer buffers.
#include "models/kv_cache.h"

#include <algorithm>

#include "base/error.h"
#include "core/planner.h"

namespace quanta::models {

KvCache::KvCache(const LlmConfig& c, int n_cells, DType type, Backend& backend)
    : type_(type), k_ne_{c.head_dim_k, n_cells, c.n_head_kv}, v_ne_{c.head_dim_v, n_cells, c.n_head_kv} {
    QUANTA_CHECK_ARG(type == DType::F16 || type == DType::F32, "the KV cache type must be f16 or f32");
    QUANTA_CHECK_ARG(n_cells > 0, "n_ctx must be positive");
    const size_t es = type_info(type).block_bytes;
    auto aligned = [](size_t b) { return (b + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment; };
    k_bytes_ = aligned(es * (size_t)c.head_dim_k * n_cells * c.n_head_kv);
    v_bytes_ = aligned(es * (size_t)c.head_dim_v * n_cells * c.n_head_kv);
    bytes_ = (k_bytes_ + v_bytes_) * (size_t)c.n_layer;
    try {
        buffer_ = backend.alloc(bytes_);
    } catch (const Error& e) {
        if (e.kind() != ErrorKind::OutOfMemory) throw;
        fail(ErrorKind::OutOfMemory, "cannot allocate a " + std::to_string(bytes_ >> 20) + " MiB KV cache for " +
                                         std::to_string(n_cells) + " positions (lower n_ctx)");
    }
    cells_.resize(n_cells);
    n_free_ = n_cells;
}

std::vector<int32_t> KvCache::find_free(int n) const {
    if (n > n_free_)
        fail(ErrorKind::ContextOverflow, "context overflow: " + std::to_string(n) + " new tokens, but only " +
                                             std::to_string(n_free_) + " of n_ctx = " + std::to_string(n_cells()) +
                                             " cells are free");
    std::vector<int32_t> out;
    out.reserve(n);
    for (int32_t c = 0; c < n_cells() && (int)out.size() < n; ++c)
        if (cells_[c].seq < 0) out.push_back(c);
    return out;
}

void KvCache::assign(int32_t cell, int32_t seq, int32_t pos) {
    if (cells_[cell].seq < 0) --n_free_;
    cells_[cell] = {seq, pos};
}

void KvCache::remove(int32_t seq, int32_t p0, int32_t p1) {
    for (Cell& c : cells_)
        if (c.seq == seq && c.pos >= p0 && c.pos < p1) {
            c = Cell{};
            ++n_free_;
        }
}

Tensor* KvCache::keys(Graph& graph, int layer) const {
    return graph.external(type_, {k_ne_[0], k_ne_[1], k_ne_[2]}, buffer_->base() + (k_bytes_ + v_bytes_) * layer,
                          "cache_k." + std::to_string(layer));
}

Tensor* KvCache::values(Graph& graph, int layer) const {
    return graph.external(type_, {v_ne_[0], v_ne_[1], v_ne_[2]},
                          buffer_->base() + (k_bytes_ + v_bytes_) * layer + k_bytes_, "cache_v." + std::to_string(layer));
}

}  // namespace quanta::models
