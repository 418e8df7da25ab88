// The key/value cache of a transformer: one buffer holding, per layer, the
// keys as [head_dim_k, n_ctx, n_head_kv] and the values transposed as
// [n_ctx, head_dim_v, n_head_kv], so attention reads both as matmul weights
// with contiguous rows (q.k over head_dim, probs.v over positions). The
// graph writes the new positions in place; nothing is copied per step.
#pragma once

#include <cstddef>
#include <vector>

#include "core/graph.h"
#include "models/llm_config.h"

namespace quanta::models {

class KvCache {
public:
    // type: f16 (as llama.cpp, half the memory) or f32.
    KvCache(const LlmConfig& config, int n_ctx, DType type);
    ~KvCache();
    KvCache(const KvCache&) = delete;
    KvCache& operator=(const KvCache&) = delete;

    int n_ctx() const { return n_ctx_; }
    DType type() const { return type_; }
    size_t bytes() const { return bytes_; }

    // The whole layer buffers as External leaves of `graph`.
    Tensor* keys(Graph& graph, int layer) const;
    Tensor* values(Graph& graph, int layer) const;

private:
    int n_ctx_;
    DType type_;
    int64_t k_ne_[3], v_ne_[3];
    size_t k_bytes_, v_bytes_, bytes_;
    char* data_ = nullptr;
};

}  // namespace quanta::models
