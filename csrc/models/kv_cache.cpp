// The KV cache (kv_cache.h): its cells and its layer buffers.
#include "models/kv_cache.h"

#include <algorithm>

#include "base/error.h"
#include "core/planner.h"

namespace quanta::models {

KvCache::KvCache(const LlmConfig& c, int n_cells, DType type, Backend& backend)
    : backend_(backend),
      type_(type),
      k_ne_{c.head_dim_k, n_cells, c.n_head_kv},
      v_ne_{n_cells, c.head_dim_v, c.n_head_kv} {
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

int KvCache::used_end() const {
    for (int c = n_cells(); c > 0; --c)
        if (cells_[c - 1].seq >= 0) return c;
    return 0;
}

void KvCache::clear_up_to(int n) {
    n = std::min(n, n_cells());
    if (n <= cleared_) return;
    const size_t es = type_info(type_).block_bytes;
    for (size_t layer = 0; layer * (k_bytes_ + v_bytes_) < bytes_; ++layer) {
        char* k = buffer_->base() + layer * (k_bytes_ + v_bytes_);
        // Keys: cells are rows of head_dim_k, one run per kv head.
        const size_t k_row = es * (size_t)k_ne_[0], k_head = k_row * (size_t)k_ne_[1];
        backend_.clear(k + cleared_ * k_row, (size_t)(n - cleared_) * k_row, (size_t)k_ne_[2], k_head);
        // Values: cells are columns, one run per (dim, kv head) row.
        const size_t v_row = es * (size_t)v_ne_[0];
        backend_.clear(k + k_bytes_ + cleared_ * es, (size_t)(n - cleared_) * es, (size_t)(v_ne_[1] * v_ne_[2]), v_row);
    }
    cleared_ = n;
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
