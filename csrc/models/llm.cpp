// The model loader and the context (llm.h): batches of many sequences, KV
// cells and the cell lists attention reads, and the cache of graphs by shape.
#include "models/llm.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace quanta::models {
namespace {

// Room in the graphs' per-token cell lists comes in buckets of this many
// cells, so decode reuses one graph for 256 steps instead of building one per
// step (measured in bench/README.md: graph reuse).
constexpr int kKvBucket = 256;
// Graphs for batches up to this many tokens are kept for reuse (decode,
// batched decode, short turns); longer prompt chunks are built for one use,
// where building costs far less than computing them.
constexpr int kReuseMaxTokens = 64;
constexpr size_t kMaxKeptGraphs = 4;

}  // namespace

std::shared_ptr<LlmModel> LlmModel::load(std::shared_ptr<gguf::File> file, std::shared_ptr<Backend> backend) {
    QUANTA_CHECK_ARG(backend != nullptr, "LlmModel::load: no backend");
    auto m = std::make_shared<LlmModel>();
    m->config = LlmConfig::from_gguf(*file);
    m->weights = LlmWeights::bind(*file, m->config);
    m->weight_memory = backend->place(file->tensor_data(), file->tensor_data_size());
    for (Weight w : m->weights.matrices()) {
        Tensor t;
        t.type = w->type;
        t.n_dims = w->n_dims;
        for (int d = 0; d < w->n_dims; ++d) t.ne[d] = w->ne[d];
        set_contiguous_strides(t);
        t.data = m->weight_data(w);
        t.kind = TensorKind::External;
        // MatMul reads the packed copy from now on (get_rows of tied embeddings reads a few rows per token),
        // so the file's pages go back to the page cache as they are copied: the weights take their size in
        // memory once.
        std::unique_ptr<Buffer> p = backend->pack_weight(t, [&](const void* begin, size_t bytes) {
            file->drop_pages(static_cast<const uint8_t*>(begin), bytes);
        });
        if (p) m->packed.emplace(w, std::move(p));
    }
    m->file = std::move(file);
    m->backend = std::move(backend);
    return m;
}

std::shared_ptr<LlmModel> LlmModel::load_checked(std::shared_ptr<gguf::File> file, std::shared_ptr<Backend> backend) {
    std::shared_ptr<LlmModel> m = load(std::move(file), std::move(backend));
    if (m->backend->device() == "cpu") return m;
    ContextParams small;
    small.n_ctx = 8;
    small.n_batch = 1;
    LlmContext probe(m, small);
    std::vector<float> logits(m->config.n_vocab);
    probe.decode({BatchToken{0, 0, 0, true}}, logits.data());
    for (float v : logits)
        if (!std::isfinite(v))
            fail(ErrorKind::Internal, "the " + m->backend->name() + " backend computed a non-finite logit for this model");
    return m;
}

LlmContext::LlmContext(std::shared_ptr<const LlmModel> model, const ContextParams& params)
    : model_(std::move(model)), params_(params), cache_(model_->config, params.n_ctx, params.kv_type, *model_->backend) {
    QUANTA_CHECK_ARG(params.n_batch > 0, "n_batch must be positive");
    QUANTA_CHECK_ARG(params.n_seq > 0 && params.n_seq <= params.n_ctx, "n_seq must be in 1..n_ctx");
    seq_tokens_.resize(params.n_seq);
}

void LlmContext::check_seq(int seq) const {
    QUANTA_CHECK_ARG(seq >= 0 && seq < n_seq(),
                     "sequence " + std::to_string(seq) + " does not exist (the context has " + std::to_string(n_seq()) + ")");
}

const std::vector<int32_t>& LlmContext::tokens(int seq) const {
    check_seq(seq);
    return seq_tokens_[seq];
}

void LlmContext::truncate(int seq, int n) {
    check_seq(seq);
    QUANTA_CHECK_ARG(n >= 0, "truncate: negative length");
    std::vector<int32_t>& t = seq_tokens_[seq];
    if (n >= (int)t.size()) return;
    cache_.remove(seq, n);
    t.resize(n);
}

size_t LlmContext::common_prefix(int seq, const std::vector<int32_t>& ids) const {
    const std::vector<int32_t>& cached = tokens(seq);
    size_t n = 0;
    while (n < cached.size() && n < ids.size() && cached[n] == ids[n]) ++n;
    return n;
}

void LlmContext::decode(const std::vector<BatchToken>& batch, float* logits) {
    QUANTA_CHECK_ARG(!batch.empty(), "decode: no tokens");
    const int n_vocab = model_->config.n_vocab;
    std::vector<int32_t> next(n_seq());
    for (int s = 0; s < n_seq(); ++s) next[s] = (int32_t)seq_tokens_[s].size();
    for (const BatchToken& b : batch) {
        QUANTA_CHECK_ARG(b.token >= 0 && b.token < n_vocab, "token id " + std::to_string(b.token) +
                                                                " is out of range (vocabulary of " +
                                                                std::to_string(n_vocab) + ")");
        check_seq(b.seq);
        QUANTA_CHECK_ARG(b.pos == next[b.seq], "decode: sequence " + std::to_string(b.seq) + " is at position " +
                                                   std::to_string(next[b.seq]) + ", not " + std::to_string(b.pos));
        ++next[b.seq];
    }
    if ((int)batch.size() > cache_.n_free())
        fail(ErrorKind::ContextOverflow, "context overflow: " + std::to_string(n_ctx() - cache_.n_free()) +
                                             " cached + " + std::to_string(batch.size()) +
                                             " new tokens exceed n_ctx = " + std::to_string(n_ctx()));
    for (size_t done = 0; done < batch.size();) {
        const int chunk = (int)std::min<size_t>(params_.n_batch, batch.size() - done);
        decode_chunk(batch.data() + done, chunk, logits);
        if (logits)
            for (int i = 0; i < chunk; ++i) logits += batch[done + i].logits ? n_vocab : 0;
        done += chunk;
    }
}

LlmContext::Prepared& LlmContext::prepared(const LlmShape& shape) {
    for (auto it = graphs_.begin(); it != graphs_.end(); ++it)
        if (it->first == shape) {
            graphs_.splice(graphs_.begin(), graphs_, it);
            return graphs_.front().second;
        }
    // A graph not worth keeping is dropped as soon as another shape is needed.
    graphs_.remove_if([](const auto& g) { return g.first.n_tokens > kReuseMaxTokens; });
    Prepared p;
    p.graph = build_llm_graph(*model_, cache_, shape);
    p.arena = model_->backend->prepare(p.graph->graph);
    ++graphs_built_;
    graphs_.emplace_front(shape, std::move(p));
    while (graphs_.size() > kMaxKeptGraphs) graphs_.pop_back();
    return graphs_.front().second;
}

void LlmContext::decode_chunk(const BatchToken* batch, int n, float* logits) {
    const LlmConfig& c = model_->config;
    const std::vector<int32_t> slots = cache_.find_free(n);
    ids_.resize(n);
    positions_.resize(n);
    out_rows_.clear();
    for (int i = 0; i < n; ++i) {
        ids_[i] = batch[i].token;
        positions_[i] = batch[i].pos;
        cache_.assign(slots[i], batch[i].seq, batch[i].pos);
        if (batch[i].logits) out_rows_.push_back(i);
    }
    const bool want_logits = logits && !out_rows_.empty();
    if (out_rows_.empty()) out_rows_.push_back(n - 1);  // a graph has an output; its logits are not returned
    // Token i (of sequence s, at position p) attends to the cells of s at
    // positions <= p, in position order; in sliding-window layers only to the
    // last `sliding_window` of them.
    cell_of_pos_.resize(n_seq());
    for (int i = 0; i < n; ++i) cell_of_pos_[batch[i].seq].clear();
    int longest = 0;
    for (int i = 0; i < n; ++i) {
        std::vector<int32_t>& at = cell_of_pos_[batch[i].seq];
        at.resize(std::max<size_t>(at.size(), batch[i].pos + 1), -1);
        longest = std::max(longest, batch[i].pos + 1);
    }
    const std::vector<KvCache::Cell>& cells = cache_.cells();
    for (int j = 0; j < n_ctx(); ++j)
        if (cells[j].seq >= 0 && cells[j].pos < (int)cell_of_pos_[cells[j].seq].size())
            cell_of_pos_[cells[j].seq][cells[j].pos] = j;
    const int n_kv = std::min(n_ctx(), (longest + kKvBucket - 1) / kKvBucket * kKvBucket);
    auto fill_lists = [&](std::vector<int32_t>& lists, int window) {
        lists.assign((size_t)(n_kv + 1) * n, 0);
        for (int i = 0; i < n; ++i) {
            const int32_t p = batch[i].pos, first = window > 0 ? std::max(0, p - window + 1) : 0;
            int32_t* list = lists.data() + (size_t)i * (n_kv + 1);
            list[0] = p - first + 1;
            std::copy(cell_of_pos_[batch[i].seq].begin() + first, cell_of_pos_[batch[i].seq].begin() + p + 1, list + 1);
        }
    };

    try {
        LlmGraph& g = *prepared({n, n_kv, (int)out_rows_.size()}).graph;
        Backend& be = *model_->backend;
        fill_lists(visible_, 0);
        be.set_tensor(g.tokens, ids_.data(), sizeof(int32_t) * n);
        be.set_tensor(g.positions, positions_.data(), sizeof(int32_t) * n);
        be.set_tensor(g.cells, slots.data(), sizeof(int32_t) * n);
        be.set_tensor(g.visible, visible_.data(), sizeof(int32_t) * visible_.size());
        if (g.visible_swa) {
            fill_lists(visible_swa_, c.sliding_window);
            be.set_tensor(g.visible_swa, visible_swa_.data(), sizeof(int32_t) * visible_swa_.size());
        }
        if (g.out_rows) be.set_tensor(g.out_rows, out_rows_.data(), sizeof(int32_t) * out_rows_.size());
        be.compute(g.graph);
        if (want_logits) be.get_tensor(g.logits, logits, g.logits->n_bytes());
    } catch (...) {
        // The failed chunk's cells hold nothing valid: free them.
        for (int i = 0; i < n; ++i) cache_.remove(batch[i].seq, batch[i].pos, batch[i].pos + 1);
        throw;
    }
    for (int i = 0; i < n; ++i) seq_tokens_[batch[i].seq].push_back(batch[i].token);
}

void LlmContext::eval(const int32_t* ids, int n, bool all_logits, float* logits, int seq) {
    QUANTA_CHECK_ARG(n > 0, "eval: no tokens");
    check_seq(seq);
    const int32_t start = (int32_t)seq_tokens_[seq].size();
    std::vector<BatchToken> batch(n);
    for (int i = 0; i < n; ++i) batch[i] = {ids[i], seq, start + i, all_logits || i == n - 1};
    decode(batch, logits);
}

void LlmContext::eval_prompt(const std::vector<int32_t>& ids, float* logits, int seq) {
    QUANTA_CHECK_ARG(!ids.empty(), "eval_prompt: empty prompt");
    // The last token is always evaluated, for its logits.
    const size_t common = std::min(common_prefix(seq, ids), ids.size() - 1);
    truncate(seq, (int)common);
    eval(ids.data() + common, (int)(ids.size() - common), false, logits, seq);
}

}  // namespace quanta::models
