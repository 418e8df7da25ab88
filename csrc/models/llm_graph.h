// The one transformer graph every LLM architecture shares, built once per
// batch shape and reused: n_tokens new tokens (of any sequences) are
// embedded, written into their KV cells, run through the blocks (each token
// attending to the cells its list names: its own sequence's, up to itself),
// and the rows listed in out_rows are projected to logits. Everything that
// changes from step to step (ids, positions, cells, cell lists, output rows)
// is an input, so a finalized graph and its memory plan serve every step of
// that shape.
#pragma once

#include <memory>

#include "core/graph.h"
#include "models/kv_cache.h"
#include "models/llm_weights.h"

namespace quanta::models {

struct LlmModel;

struct LlmShape {
    int n_tokens = 0;
    int n_kv = 0;       // room in each token's cell list: a multiple of the bucket, or the whole cache
    int n_outputs = 0;  // rows projected to logits
    bool operator==(const LlmShape& o) const {
        return n_tokens == o.n_tokens && n_kv == o.n_kv && n_outputs == o.n_outputs;
    }
};

struct LlmGraph {
    LlmShape shape;
    Graph graph;
    // Inputs the caller fills before each run: token ids, positions and the
    // cells they are written to (i32 [n_tokens]), the cells each token attends
    // to (i32 [n_kv + 1, n_tokens]: a count, then the cells in position order;
    // visible_swa, for sliding-window layers, only when the model has them)
    // and the rows whose logits are wanted (i32 [n_outputs]).
    Tensor* tokens = nullptr;
    Tensor* positions = nullptr;
    Tensor* cells = nullptr;
    Tensor* visible = nullptr;
    Tensor* visible_swa = nullptr;
    Tensor* out_rows = nullptr;
    Tensor* logits = nullptr;  // f32 [n_vocab, n_outputs]
};

std::unique_ptr<LlmGraph> build_llm_graph(const LlmModel& model, const KvCache& cache, const LlmShape& shape);

}  // namespace quanta::models
