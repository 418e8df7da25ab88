#include "models/llm.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "cpu/backend_cpu.h"
#include "models/llm_graph.h"

namespace quanta::models {

std::shared_ptr<LlmModel> LlmModel::load(const std::string& path) { return from_file(gguf::File::open(path)); }

std::shared_ptr<LlmModel> LlmModel::from_file(std::shared_ptr<gguf::File> file) {
    auto m = std::make_shared<LlmModel>();
    m->config = LlmConfig::from_gguf(*file);
    m->weights = LlmWeights::bind(*file, m->config);
    m->file = std::move(file);
    return m;
}

LlmContext::LlmContext(std::shared_ptr<const LlmModel> model, const ContextParams& params)
    : model_(std::move(model)),
      params_(params),
      cache_(model_->config, params.n_ctx, params.kv_type),
      backend_(std::make_unique<cpu::CpuBackend>(params.n_threads)) {
    QUANTA_CHECK_ARG(params.n_batch > 0, "n_batch must be positive");
}

LlmContext::~LlmContext() = default;

int LlmContext::n_threads() const { return static_cast<const cpu::CpuBackend&>(*backend_).n_threads(); }

void LlmContext::truncate(int n) {
    QUANTA_CHECK_ARG(n >= 0, "truncate: negative length");
    if (n < (int)tokens_.size()) tokens_.resize(n);
}

void LlmContext::eval(const int32_t* ids, int n, bool all_logits, float* logits) {
    QUANTA_CHECK_ARG(n > 0, "eval: no tokens");
    const int n_vocab = model_->config.n_vocab;
    for (int i = 0; i < n; ++i)
        QUANTA_CHECK_ARG(ids[i] >= 0 && ids[i] < n_vocab, "token id " + std::to_string(ids[i]) +
                                                              " is out of range (vocabulary of " +
                                                              std::to_string(n_vocab) + ")");
    if ((int64_t)tokens_.size() + n > n_ctx())
        fail(ErrorKind::ContextOverflow, "context overflow: " + std::to_string(tokens_.size()) + " cached + " +
                                             std::to_string(n) + " new tokens exceed n_ctx = " +
                                             std::to_string(n_ctx()));
    for (int done = 0; done < n;) {
        const int chunk = std::min(params_.n_batch, n - done);
        // Only the chunks whose logits are wanted write any: all of them, or the last.
        float* out = all_logits ? logits + (size_t)done * n_vocab : done + chunk == n ? logits : nullptr;
        eval_batch(ids + done, chunk, all_logits, out);
        done += chunk;
    }
}

void LlmContext::eval_prompt(const std::vector<int32_t>& ids, float* logits) {
    QUANTA_CHECK_ARG(!ids.empty(), "eval_prompt: empty prompt");
    size_t common = 0;
    while (common < tokens_.size() && common < ids.size() && tokens_[common] == ids[common]) ++common;
    common = std::min(common, ids.size() - 1);  // the last token is always evaluated, for its logits
    truncate((int)common);
    eval(ids.data() + common, (int)(ids.size() - common), false, logits);
}

void LlmContext::eval_batch(const int32_t* ids, int n, bool all_logits, float* logits) {
    const LlmConfig& c = model_->config;
    const int n_past = (int)tokens_.size(), n_kv = n_past + n;
    std::unique_ptr<LlmGraph> lg = build_llm_graph(*model_, cache_, {n, n_past, all_logits});
    backend_->prepare(lg->graph);

    positions_.resize(n);
    for (int i = 0; i < n; ++i) positions_[i] = n_past + i;
    // Causal masks: token i (at position n_past + i) sees positions j <= n_past + i,
    // and in sliding-window layers only the last `sliding_window` of them.
    auto fill_mask = [&](std::vector<float>& mask, int window) {
        mask.assign((size_t)n_kv * n, -INFINITY);
        for (int i = 0; i < n; ++i) {
            const int p = n_past + i, first = window > 0 ? std::max(0, p - window + 1) : 0;
            std::fill(mask.begin() + (size_t)i * n_kv + first, mask.begin() + (size_t)i * n_kv + p + 1, 0.0f);
        }
    };
    fill_mask(mask_, 0);
    backend_->set_tensor(lg->tokens, ids, sizeof(int32_t) * n);
    backend_->set_tensor(lg->positions, positions_.data(), sizeof(int32_t) * n);
    backend_->set_tensor(lg->mask, mask_.data(), sizeof(float) * mask_.size());
    if (lg->mask_swa) {
        fill_mask(mask_swa_, c.sliding_window);
        backend_->set_tensor(lg->mask_swa, mask_swa_.data(), sizeof(float) * mask_swa_.size());
    }
    // From here the cache holds the batch's positions; if compute fails they
    // are not counted (tokens_ unchanged), so the next call overwrites them.
    backend_->compute(lg->graph);
    tokens_.insert(tokens_.end(), ids, ids + n);
    if (logits) backend_->get_tensor(lg->logits, logits, lg->logits->n_bytes());
}

}  // namespace quanta::models
