// The one transformer graph every LLM architecture shares, built once per
// batch shape and reused: n_tokens new tokens (of any sequences) are
// embedded, written into their KV cells, run through the blocks attending to
// the first n_kv cells (the mask says which cells each token sees), and the
// rows listed in out_ids are projected to logits. Everything that changes
// from step to step (ids, positions, cells, mask, output rows) is an input,
// so a finalized graph and its memory plan serve every step of that shape.
#pragma once

#include <memory>

#include "core/graph.h"
#include "models/kv_cache.h"
#include "models/llm_weights.h"

namespace quanta::models {

struct LlmModel;

struct LlmShape {
    int n_tokens = 0;
    int n_kv = 0;       // cells attended to, a multiple of the bucket (or the whole cache)
    int n_outputs = 0;  // rows projected to logits
    bool operator<(const LlmShape& o) const {
        return n_tokens != o.n_tokens ? n_tokens < o.n_tokens
                                      : n_kv != o.n_kv ? n_kv < o.n_kv : n_outputs < o.n_outputs;
    }
};

struct LlmGraph {
    LlmShape shape;
    Graph graph;
    // Inputs the caller fills before each run: token ids, positions and KV
    // cells (i32 [n_tokens]), the additive attention masks (f32
    // [n_kv, n_tokens]; mask_swa only when the model has sliding-window
    // layers) and the rows whose logits are wanted (i32 [n_outputs]).
    Tensor* tokens = nullptr;
    Tensor* positions = nullptr;
    Tensor* cells = nullptr;
    Tensor* mask = nullptr;
    Tensor* mask_swa = nullptr;
    Tensor* out_rows = nullptr;
    Tensor* logits = nullptr;  // f32 [n_vocab, n_outputs]
};

std::unique_ptr<LlmGraph> build_llm_graph(const LlmModel& model, const KvCache& cache, const LlmShape& shape);

}  // namespace quanta::models
