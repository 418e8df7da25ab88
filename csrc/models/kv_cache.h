// The key/value cache of a transformer, in backend memory, shared by every
// sequence of a context. It is a set of cells; each holds one token's keys and
// values in every layer and records which sequence and position it belongs
// to, so tokens of many sequences can be written in one batch and attention
// keeps them apart (each token attends to the list of its own sequence's
// cells, built from these records). Per layer the keys are
// [head_dim_k, n_cells, n_head_kv] and the values [head_dim_v, n_cells,
// n_head_kv]: one contiguous row per cell and head, which is what the fused
// attention op reads. The graph writes new tokens into their cells in place
// (set_rows); nothing is copied per step.
#pragma once

#include <climits>
#include <cstddef>
#include <memory>
#include <vector>

#include "core/backend.h"
#include "models/llm_config.h"

namespace quanta::models {

class KvCache {
public:
    struct Cell {
        int32_t seq = -1;  // -1: free
        int32_t pos = -1;
    };

    // type: f16 (as llama.cpp, half the memory) or f32.
    KvCache(const LlmConfig& config, int n_cells, DType type, Backend& backend);

    int n_cells() const { return (int)cells_.size(); }
    DType type() const { return type_; }
    size_t bytes() const { return bytes_; }
    const std::vector<Cell>& cells() const { return cells_; }
    int n_free() const { return n_free_; }

    // The n lowest free cells (which keeps the used extent compact); throws
    // ContextOverflow when fewer are free.
    std::vector<int32_t> find_free(int n) const;
    void assign(int32_t cell, int32_t seq, int32_t pos);
    // Frees the cells of `seq` whose position is in [p0, p1).
    void remove(int32_t seq, int32_t p0, int32_t p1 = INT32_MAX);

    // The whole layer buffers as External leaves of `graph`.
    Tensor* keys(Graph& graph, int layer) const;
    Tensor* values(Graph& graph, int layer) const;

private:
    DType type_;
    int64_t k_ne_[3], v_ne_[3];
    size_t k_bytes_, v_bytes_, bytes_;
    std::unique_ptr<Buffer> buffer_;
    std::vector<Cell> cells_;
    int n_free_;
};

}  // namespace quanta::models
