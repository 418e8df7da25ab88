// A loaded LLM (the mapped file, its config and weights: shared, read-only)
// and a context to run it (KV cache, backend, the tokens evaluated so far).
// Several contexts may share one model.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "gguf/reader.h"
#include "models/kv_cache.h"
#include "models/llm_config.h"
#include "models/llm_weights.h"

namespace quanta::models {

struct LlmModel {
    std::shared_ptr<gguf::File> file;
    LlmConfig config;
    LlmWeights weights;

    // Throws Io, Format (bad bytes), Model (not a model we can run: the
    // architecture, key or tensor is named) or Unsupported.
    static std::shared_ptr<LlmModel> load(const std::string& path);
    static std::shared_ptr<LlmModel> from_file(std::shared_ptr<gguf::File> file);
};

struct ContextParams {
    int n_ctx = 4096;    // positions the KV cache holds
    int n_batch = 512;   // prompt tokens evaluated per graph
    int n_threads = 0;   // <= 0: one per core
    DType kv_type = DType::F16;
};

class LlmContext {
public:
    LlmContext(std::shared_ptr<const LlmModel> model, const ContextParams& params);
    ~LlmContext();

    const LlmModel& model() const { return *model_; }
    int n_ctx() const { return cache_.n_ctx(); }
    int n_vocab() const { return model_->config.n_vocab; }
    int n_threads() const;
    size_t kv_bytes() const { return cache_.bytes(); }
    // The tokens whose keys and values the cache holds, in order.
    const std::vector<int32_t>& tokens() const { return tokens_; }

    // Appends `n` tokens (in n_batch chunks) and writes the logits of the last
    // one, or of all n when all_logits, to `logits` (n_vocab floats each).
    // Throws ContextOverflow when they do not fit and InvalidArgument for an id
    // out of range, before touching the cache.
    void eval(const int32_t* ids, int n, bool all_logits, float* logits);
    // Forgets every position from n on, so a new sequence can reuse the prefix.
    void truncate(int n);
    // Reuses the longest cached prefix of `ids` and evaluates the rest (at
    // least the last token); writes the last token's logits.
    void eval_prompt(const std::vector<int32_t>& ids, float* logits);

private:
    void eval_batch(const int32_t* ids, int n, bool all_logits, float* logits);

    std::shared_ptr<const LlmModel> model_;
    ContextParams params_;
    KvCache cache_;
    std::unique_ptr<Backend> backend_;
    std::vector<int32_t> tokens_;
    std::vector<int32_t> positions_;
    std::vector<float> mask_, mask_swa_;
};

}  // namespace quanta::models
