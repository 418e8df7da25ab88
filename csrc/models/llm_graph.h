// The one transformer graph every LLM architecture shares. A batch of
// n_tokens new tokens at positions [n_past, n_past + n_tokens) is embedded,
// run through the blocks (attending to the cache's first n_past + n_tokens
// positions, which the graph itself extends), and projected to logits: for
// every token, or only the last one (generation needs no more).
#pragma once

#include <memory>

#include "core/graph.h"
#include "models/kv_cache.h"
#include "models/llm_weights.h"

namespace quanta::models {

struct LlmModel;

struct LlmBatch {
    int n_tokens = 0;
    int n_past = 0;
    bool all_logits = false;
};

struct LlmGraph {
    Graph graph;
    // Inputs the caller fills: token ids and positions (i32 [n_tokens]) and
    // the additive attention masks (f32 [n_kv, n_tokens]; mask_swa only when
    // the model has sliding-window layers).
    Tensor* tokens = nullptr;
    Tensor* positions = nullptr;
    Tensor* mask = nullptr;
    Tensor* mask_swa = nullptr;
    Tensor* logits = nullptr;  // f32 [n_vocab, n_tokens or 1]
};

std::unique_ptr<LlmGraph> build_llm_graph(const LlmModel& model, const KvCache& cache, const LlmBatch& batch);

}  // namespace quanta::models
