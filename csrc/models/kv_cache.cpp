#include "models/kv_cache.h"

#include <cstdlib>

#include "core/error.h"
#include "core/planner.h"

namespace quanta::models {

KvCache::KvCache(const LlmConfig& c, int n_ctx, DType type)
    : n_ctx_(n_ctx),
      type_(type),
      k_ne_{c.head_dim_k, n_ctx, c.n_head_kv},
      v_ne_{n_ctx, c.head_dim_v, c.n_head_kv} {
    QUANTA_CHECK_ARG(type == DType::F16 || type == DType::F32, "the KV cache type must be f16 or f32");
    QUANTA_CHECK_ARG(n_ctx > 0, "n_ctx must be positive");
    const size_t es = type_info(type).block_bytes;
    auto aligned = [](size_t b) { return (b + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment; };
    k_bytes_ = aligned(es * (size_t)c.head_dim_k * n_ctx * c.n_head_kv);
    v_bytes_ = aligned(es * (size_t)c.head_dim_v * n_ctx * c.n_head_kv);
    bytes_ = (k_bytes_ + v_bytes_) * (size_t)c.n_layer;
    // Pages are not touched here: only the positions used become resident.
    void* p = nullptr;
    if (posix_memalign(&p, kArenaAlignment, bytes_) != 0)
        fail(ErrorKind::OutOfMemory, "cannot allocate a " + std::to_string(bytes_ >> 20) + " MiB KV cache for " +
                                         std::to_string(n_ctx) + " positions (lower n_ctx)");
    data_ = static_cast<char*>(p);
}

KvCache::~KvCache() { std::free(data_); }

Tensor* KvCache::keys(Graph& graph, int layer) const {
    return graph.external(type_, {k_ne_[0], k_ne_[1], k_ne_[2]}, data_ + (k_bytes_ + v_bytes_) * layer,
                          "cache_k." + std::to_string(layer));
}

Tensor* KvCache::values(Graph& graph, int layer) const {
    return graph.external(type_, {v_ne_[0], v_ne_[1], v_ne_[2]}, data_ + (k_bytes_ + v_bytes_) * layer + k_bytes_,
                          "cache_v." + std::to_string(layer));
}

}  // namespace quanta::models
