// The generation loop, in C++: many requests decoding together on one
// context, one batch per step (continuous batching). Each request gets a
// sequence of the context while it runs; requests beyond the free sequences
// wait in order and start as others finish. A step evaluates one n_batch
// chunk of each starting request's prompt (after the prefix its sequence
// already caches), samples one token per request whose prompt is done, with
// its own sampler chain, turns tokens into text (stop strings included), and
// decodes all new tokens in one batch. So a cancel, or a new request, never
// waits for more than a chunk of someone's long prompt.
//
// Threads: one thread drives a Generator (add, step, take); cancel() may be
// called from any thread.
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/constraint.h"
#include "engine/text_out.h"
#include "models/llm.h"
#include "sample/sampler.h"

namespace quanta::engine {

struct GenerateParams {
    sample::SamplerParams sampling;
    int max_tokens = 256;
    std::vector<std::string> stop;
    // When the sequence would outgrow the context: drop its older half (after
    // the first token) and go on, instead of finishing.
    bool context_shift = false;
    // < 0: no log-probabilities. 0..kMaxTopLogprobs: each generated token's
    // log-probability, and this many most likely alternatives.
    int top_logprobs = -1;
    // Limits what may be sampled (structured output); none when null.
    std::shared_ptr<TokenConstraint> constraint;
};

// OpenAI's limit on top_logprobs.
constexpr int kMaxTopLogprobs = 20;

// A generated token's log-probability under the model (the log-softmax of its
// logits, before logit bias, penalties and constraints), and the most likely
// alternatives, best first.
struct TokenLogprob {
    int32_t token;
    float logprob;
    std::vector<std::pair<int32_t, float>> top;
};

enum class Finish {
    Running,
    Stop,       // an end-of-generation token or a stop string
    Length,     // max_tokens, or the context is full
    Cancelled,
};
const char* finish_name(Finish f);  // "running", "stop", "length", "cancelled"

class Generator {
public:
    Generator(models::LlmContext& context, const text::Tokenizer& tokenizer);

    // Queues a request; returns its id. Throws InvalidArgument for an empty
    // prompt or negative max_tokens and ContextOverflow for a prompt the
    // context could never hold.
    int add(std::vector<int32_t> prompt, const GenerateParams& params);
    // Forgets a finished request (its id is then unknown), so a long-lived
    // generator (a server's) keeps no memory per past request.
    void release(int id);
    // Runs one step; false when no request is running or waiting.
    bool step();
    // Stops a request at the next step (any thread).
    void cancel(int id);

    Finish finish(int id) const;
    // Text generated since the last take(id).
    std::string take(int id);
    // The tokens generated so far (end-of-generation tokens excluded).
    const std::vector<int32_t>& tokens(int id) const;
    // Their log-probabilities, when the request asked for them (top_logprobs >= 0).
    const std::vector<TokenLogprob>& logprobs(int id) const;
    // Prompt tokens its sequence already held when it started (not evaluated again).
    int cached_tokens(int id) const;

    int n_running() const { return (int)running_.size(); }
    int n_waiting() const { return (int)waiting_.size(); }

private:
    struct Request {
        std::vector<int32_t> prompt;
        GenerateParams params;
        sample::Sampler sampler;
        TextOut text;
        std::vector<int32_t> generated;
        std::vector<TokenLogprob> logprobs;
        std::vector<float> logits;  // of the last evaluated token, once evaluated
        int seq = -1;
        size_t prompt_done = 0;  // prompt tokens its sequence holds
        int cached = 0;          // prompt tokens it found cached
        Finish finish = Finish::Running;
        std::atomic<bool> cancel{false};

        Request(std::vector<int32_t> p, const GenerateParams& gp, const text::Tokenizer& tok)
            : prompt(std::move(p)), params(gp), sampler(gp.sampling), text(tok, gp.stop) {}
    };

    void start_waiting();
    void prefill_running();
    void sample_running();
    void decode_running();
    void shift(Request& r);
    int cells_still_needed(const Request& r) const;
    void end(Request& r, Finish f);
    int32_t draw(Request& r);
    void drop_finished();
    Request& get(int id) const;

    models::LlmContext& ctx_;
    const text::Tokenizer& tokenizer_;
    std::unordered_map<int, std::unique_ptr<Request>> requests_;
    int next_id_ = 0;
    std::deque<int> waiting_;
    std::vector<int> running_;
    std::vector<int> seq_owner_;  // sequence -> running request id, or -1
    std::vector<float> logits_;   // a batch's logits, before they are handed to requests
    std::vector<uint32_t> allowed_;  // a constraint's token mask
};

}  // namespace quanta::engine
