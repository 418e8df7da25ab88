// The generation loop (generator.h).
#include "engine/generator.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace quanta::engine {

const char* finish_name(Finish f) {
    switch (f) {
        case Finish::Running: return "running";
        case Finish::Stop: return "stop";
        case Finish::Length: return "length";
        case Finish::Cancelled: return "cancelled";
    }
    return "?";
}

Generator::Generator(models::LlmContext& context, const text::Tokenizer& tokenizer)
    : ctx_(context), tokenizer_(tokenizer), seq_owner_(context.n_seq(), -1) {}

int Generator::add(std::vector<int32_t> prompt, const GenerateParams& params) {
    QUANTA_CHECK_ARG(!prompt.empty(), "generate: empty prompt (no tokens)");
    QUANTA_CHECK_ARG(params.max_tokens >= 0, "max_tokens must not be negative, not " + std::to_string(params.max_tokens));
    if ((int)prompt.size() > ctx_.n_ctx())
        fail(ErrorKind::ContextOverflow, "the prompt is " + std::to_string(prompt.size()) + " tokens; n_ctx is " +
                                             std::to_string(ctx_.n_ctx()));
    QUANTA_CHECK_ARG(params.top_logprobs <= kMaxTopLogprobs, "top_logprobs must be at most " +
                                                                 std::to_string(kMaxTopLogprobs) + ", not " +
                                                                 std::to_string(params.top_logprobs));
    for (int32_t t : prompt)
        QUANTA_CHECK_ARG(t >= 0 && t < ctx_.n_vocab(), "token id " + std::to_string(t) + " is out of range (vocabulary of " +
                                                           std::to_string(ctx_.n_vocab()) + ")");
    for (const auto& [t, bias] : params.sampling.logit_bias)
        QUANTA_CHECK_ARG(t >= 0 && t < ctx_.n_vocab(), "logit_bias: token id " + std::to_string(t) +
                                                           " is out of range (vocabulary of " +
                                                           std::to_string(ctx_.n_vocab()) + ")");
    const int id = next_id_++;
    Request& r = *(requests_[id] = std::make_unique<Request>(std::move(prompt), params, tokenizer_));
    for (int32_t t : r.prompt) r.sampler.accept(t);
    if (params.max_tokens == 0) end(r, Finish::Length);
    else waiting_.push_back(id);
    return id;
}

Generator::Request& Generator::get(int id) const {
    const auto it = requests_.find(id);
    QUANTA_CHECK_ARG(it != requests_.end(), "no generation request " + std::to_string(id));
    return *it->second;
}

void Generator::release(int id) {
    QUANTA_CHECK_ARG(get(id).finish != Finish::Running, "generation request " + std::to_string(id) + " is still running");
    requests_.erase(id);
}

void Generator::cancel(int id) { get(id).cancel.store(true); }
Finish Generator::finish(int id) const { return get(id).finish; }
std::string Generator::take(int id) { return get(id).text.take(); }
const std::vector<int32_t>& Generator::tokens(int id) const { return get(id).generated; }
const std::vector<TokenLogprob>& Generator::logprobs(int id) const { return get(id).logprobs; }
int Generator::cached_tokens(int id) const { return get(id).cached; }

void Generator::end(Request& r, Finish f) {
    r.finish = f;
    r.text.finish();
    if (r.seq >= 0) seq_owner_[r.seq] = -1;
    r.seq = -1;
}

void Generator::drop_finished() {
    running_.erase(std::remove_if(running_.begin(), running_.end(),
                                  [&](int id) { return requests_[id]->finish != Finish::Running; }),
                   running_.end());
}

bool Generator::step() {
    for (int id : running_)
        if (requests_[id]->cancel.load()) end(*requests_[id], Finish::Cancelled);
    for (auto it = waiting_.begin(); it != waiting_.end();)
        if (requests_[*it]->cancel.load()) {
            end(*requests_[*it], Finish::Cancelled);
            it = waiting_.erase(it);
        } else {
            ++it;
        }
    drop_finished();
    start_waiting();
    if (running_.empty()) return !waiting_.empty();
    prefill_running();
    sample_running();
    decode_running();
    return !running_.empty() || !waiting_.empty();
}

// Gives waiting requests free sequences: the free sequence whose cached
// tokens match the prompt best, so a chat turn reuses its history.
void Generator::start_waiting() {
    while (!waiting_.empty()) {
        const int id = waiting_.front();
        Request& r = *requests_[id];
        int best = -1;
        size_t best_common = 0;
        for (int s = 0; s < ctx_.n_seq(); ++s) {
            if (seq_owner_[s] >= 0) continue;
            const size_t common = ctx_.common_prefix(s, r.prompt);
            if (best < 0 || common > best_common) best = s, best_common = common;
        }
        if (best < 0) break;  // every sequence is busy
        // The last prompt token is always evaluated, for its logits.
        r.prompt_done = std::min(best_common, r.prompt.size() - 1);
        r.cached = (int)r.prompt_done;
        ctx_.truncate(best, (int)r.prompt_done);
        // A request starts only when the cells for its prompt and all the tokens
        // it may generate are free beyond what running requests may still
        // take, so no running request ever finds the cache full because others
        // started (it would end early, unlike alone). Cells idle sequences
        // cache are given up first. Alone, a request starts anyway and ends
        // when the context is full, as it would alone.
        r.seq = best;
        int need = cells_still_needed(r);
        for (int other : running_) need += cells_still_needed(*requests_[other]);
        for (int s = 0; s < ctx_.n_seq() && need > ctx_.n_free(); ++s)
            if (seq_owner_[s] < 0 && s != best) ctx_.truncate(s, 0);
        if (need > ctx_.n_free() && !running_.empty()) {
            r.seq = -1;
            break;  // wait until running requests finish
        }
        waiting_.pop_front();
        seq_owner_[best] = id;
        running_.push_back(id);
    }
}

// One n_batch chunk of each unfinished prompt, in its own batch. Quantized
// weights in octets round alike at every batch size (the octet kernels repeat
// the panel GEMM's float steps), but float weights' tiles and levels without
// octet kernels round differently from 16 rows on, so a prompt chunk
// evaluated with others' could get logits a little unlike its own alone.
// These are the chunks LlmContext::eval_prompt would evaluate, so a request
// computes what it would alone.
void Generator::prefill_running() {
    for (int id : running_) {
        Request& r = *requests_[id];
        if (r.prompt_done == r.prompt.size()) continue;
        const size_t n = std::min(r.prompt.size() - r.prompt_done, (size_t)ctx_.n_batch());
        const bool last = r.prompt_done + n == r.prompt.size();
        if (last) r.logits.resize(ctx_.n_vocab());
        ctx_.eval(r.prompt.data() + r.prompt_done, (int)n, false, last ? r.logits.data() : nullptr, r.seq);
        r.prompt_done += n;
    }
}

// The cells a request may still fill: the rest of its prompt, then a token
// per step until max_tokens or the context is full.
int Generator::cells_still_needed(const Request& r) const {
    const int prompt_left = (int)(r.prompt.size() - r.prompt_done);
    const int len = (int)ctx_.tokens(r.seq).size() + prompt_left;
    return prompt_left + std::max(0, std::min(r.params.max_tokens - (int)r.generated.size(), ctx_.n_ctx() - len));
}

// One token per request whose prompt is done, from its own sampler chain.
void Generator::sample_running() {
    for (int id : running_) {
        Request& r = *requests_[id];
        if (r.prompt_done < r.prompt.size()) continue;
        const int32_t token = draw(r);
        if (token < 0) {
            end(r, Finish::Stop);
            continue;
        }
        if (tokenizer_.is_end_of_generation(token)) {
            end(r, Finish::Stop);
            continue;
        }
        r.sampler.accept(token);
        r.generated.push_back(token);
        if (r.text.push(token)) end(r, Finish::Stop);
        else if ((int)r.generated.size() >= r.params.max_tokens) end(r, Finish::Length);
    }
    drop_finished();
}

// The model's log-probabilities of a token and of the k likeliest (a
// log-softmax of the logits).
static TokenLogprob logprob_of(const std::vector<float>& logits, int32_t token, int k) {
    const float top = *std::max_element(logits.begin(), logits.end());
    double sum = 0;
    for (float l : logits) sum += std::exp((double)(l - top));
    const float log_z = top + (float)std::log(sum);
    TokenLogprob lp{token, logits[token] - log_z, {}};
    std::vector<int32_t> ids(logits.size());
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = (int32_t)i;
    k = std::min<int>(k, (int)ids.size());
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    for (int i = 0; i < k; ++i) lp.top.push_back({ids[i], logits[ids[i]] - log_z});
    return lp;
}

// The request's next token from its sampler chain, within its constraint;
// -1 when the constraint allows nothing.
int32_t Generator::draw(Request& r) {
    const int n_vocab = ctx_.n_vocab();
    const uint32_t* allowed = nullptr;
    if (r.params.constraint) {
        allowed_.assign((size_t)(n_vocab + 31) / 32, 0u);
        r.params.constraint->allowed(allowed_.data(), (int)allowed_.size());
        if (std::all_of(allowed_.begin(), allowed_.end(), [](uint32_t w) { return w == 0; })) return -1;
        allowed = allowed_.data();
    }
    const int32_t token = r.sampler.sample(r.logits.data(), n_vocab, allowed);
    if (r.params.constraint) r.params.constraint->accept(token);
    if (r.params.top_logprobs >= 0) r.logprobs.push_back(logprob_of(r.logits, token, r.params.top_logprobs));
    return token;
}

// Keeps the first token and the newer half of the sequence and evaluates it
// again (the cache holds the kept tokens at their new positions).
void Generator::shift(Request& r) {
    std::vector<int32_t> seq = ctx_.tokens(r.seq);
    seq.push_back(r.generated.back());
    const size_t keep = std::max(1, (ctx_.n_ctx() - 1) / 2);
    std::vector<int32_t> kept(seq.begin(), seq.begin() + 1);
    kept.insert(kept.end(), seq.end() - (ptrdiff_t)std::min(keep, seq.size() - 1), seq.end());
    r.logits.resize(ctx_.n_vocab());
    ctx_.eval_prompt(kept, r.logits.data(), r.seq);
}

// Decodes the new token of every request that sampled one in one batch. A
// sequence that would outgrow the context (or find no free cell) shifts, if
// allowed, or ends.
void Generator::decode_running() {
    std::vector<int> batch_ids;
    for (int id : running_) {
        Request& r = *requests_[id];
        if (r.prompt_done < r.prompt.size()) continue;
        const int len = (int)ctx_.tokens(r.seq).size() + 1;
        const bool full = len >= ctx_.n_ctx() || (int)batch_ids.size() + 1 > ctx_.n_free();
        if (!full) batch_ids.push_back(id);
        else if (r.params.context_shift) shift(r);
        else end(r, Finish::Length);
    }
    drop_finished();
    if (batch_ids.empty()) return;
    std::vector<models::BatchToken> batch;
    for (int id : batch_ids) {
        const Request& r = *requests_[id];
        batch.push_back({r.generated.back(), r.seq, (int32_t)ctx_.tokens(r.seq).size(), true});
    }
    const size_t n_vocab = (size_t)ctx_.n_vocab();
    logits_.resize(batch.size() * n_vocab);
    ctx_.decode(batch, logits_.data());
    for (size_t i = 0; i < batch_ids.size(); ++i) {
        Request& r = *requests_[batch_ids[i]];
        r.logits.assign(logits_.begin() + i * n_vocab, logits_.begin() + (i + 1) * n_vocab);
    }
}

}  // namespace quanta::engine
