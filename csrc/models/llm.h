// A loaded LLM (the mapped file, its config, and its weights placed once on a
// backend: shared, read-only) and a context that runs it for one or more
// sequences: the KV cache they share, the tokens each has evaluated, and the
// graphs built so far, one per batch shape, reused across steps.
#pragma once

#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "gguf/reader.h"
#include "models/kv_cache.h"
#include "models/llm_config.h"
#include "models/llm_graph.h"
#include "models/llm_weights.h"

namespace quanta::models {

struct LlmModel {
    std::shared_ptr<gguf::File> file;
    std::shared_ptr<Backend> backend;
    std::string device_note;  // why device "auto" chose the CPU (backends::load_on), else empty
    LlmConfig config;
    LlmWeights weights;
    std::unique_ptr<Buffer> weight_memory;  // the file's tensor data, placed on the backend
    std::map<Weight, std::unique_ptr<Buffer>> packed;  // the matrices the backend packed for MatMul

    // The address of a weight in the backend's memory, and of its packed copy (null: none).
    void* weight_data(Weight w) const { return weight_memory->base() + w->offset; }
    const void* packed_data(Weight w) const {
        const auto it = packed.find(w);
        return it == packed.end() ? nullptr : it->second->base();
    }

    // Reads the config and binds the weights (Model errors name the
    // architecture, key or tensor; Unsupported for types quanta cannot run),
    // then places the tensor data on `backend` once and lets it pack the matrices.
    static std::shared_ptr<LlmModel> load(std::shared_ptr<gguf::File> file, std::shared_ptr<Backend> backend);
    // load(), then, on any backend but the CPU's (which has every op), decodes one token in a small context and
    // checks that its logits are finite: a backend that cannot run this model (a missing kernel, a failing
    // device, too little memory) says so at load, where device "auto" can still fall back, not at the first prompt.
    static std::shared_ptr<LlmModel> load_checked(std::shared_ptr<gguf::File> file, std::shared_ptr<Backend> backend);
};

struct ContextParams {
    int n_ctx = 4096;   // KV cells, shared by all sequences
    int n_batch = 512;  // tokens evaluated per graph
    int n_seq = 1;      // sequences, ids 0..n_seq-1
    DType kv_type = DType::F16;
};

// One token of a batch: which sequence it extends, at which position (the
// sequence's next one), and whether its logits are wanted.
struct BatchToken {
    int32_t token;
    int32_t seq;
    int32_t pos;
    bool logits;
};

class LlmContext {
public:
    LlmContext(std::shared_ptr<const LlmModel> model, const ContextParams& params);

    const LlmModel& model() const { return *model_; }
    int n_ctx() const { return cache_.n_cells(); }
    int n_seq() const { return (int)seq_tokens_.size(); }
    int n_batch() const { return params_.n_batch; }
    int n_vocab() const { return model_->config.n_vocab; }
    int n_threads() const { return model_->backend->n_threads(); }
    size_t kv_bytes() const { return cache_.bytes(); }
    // Cells no sequence holds.
    int n_free() const { return cache_.n_free(); }
    // Graphs built so far: decode builds one per bucket of KV cells, not one per step.
    int graphs_built() const { return graphs_built_; }
    // The tokens whose keys and values the cache holds for `seq`, in order.
    const std::vector<int32_t>& tokens(int seq = 0) const;

    // Evaluates a batch of tokens of any sequences (in n_batch chunks) and
    // writes n_vocab logits for each token whose `logits` is set, in batch
    // order. Before anything is evaluated it throws InvalidArgument for a bad
    // id, sequence or position (each must be its sequence's next position,
    // counting earlier tokens of the batch) and ContextOverflow when the cache
    // lacks free cells. If evaluation fails, no token of the failed chunk is kept.
    void decode(const std::vector<BatchToken>& batch, float* logits);
    // Forgets every position from n on in `seq`, so it can reuse the prefix.
    void truncate(int seq, int n);
    // How many leading tokens of `ids` sequence `seq` already holds.
    size_t common_prefix(int seq, const std::vector<int32_t>& ids) const;

    // One sequence: appends `n` tokens and writes the logits of the last one,
    // or of all n when all_logits.
    void eval(const int32_t* ids, int n, bool all_logits, float* logits, int seq = 0);
    // Reuses the longest cached prefix of `ids` in `seq` and evaluates the rest
    // (at least the last token); writes the last token's logits.
    void eval_prompt(const std::vector<int32_t>& ids, float* logits, int seq = 0);

private:
    struct Prepared {
        std::unique_ptr<LlmGraph> graph;
        std::unique_ptr<Buffer> arena;
    };
    // The graph for `shape`: reused when it was built before, else built now.
    Prepared& prepared(const LlmShape& shape);
    void decode_chunk(const BatchToken* batch, int n, float* logits);
    void check_seq(int seq) const;

    std::shared_ptr<const LlmModel> model_;
    ContextParams params_;
    KvCache cache_;
    std::vector<std::vector<int32_t>> seq_tokens_;
    // Graphs by shape, most recently used first.
    std::list<std::pair<LlmShape, Prepared>> graphs_;
    int graphs_built_ = 0;
    // Host staging for the per-step inputs.
    std::vector<int32_t> ids_, positions_, out_rows_, visible_, visible_swa_;
    std::vector<std::vector<int32_t>> cell_of_pos_;  // per sequence: position -> cell
};

}  // namespace quanta::models
