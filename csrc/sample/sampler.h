// Token sampling from logits, as llama.cpp's default chain: penalties over
// the recent tokens, then top-k, top-p and min-p (on the untempered
// distribution), then temperature and a seeded draw. Temperature <= 0 is
// greedy: the penalised argmax.
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <utility>
#include <vector>

namespace quanta::sample {

struct SamplerParams {
    float temperature = 0.8f;
    int top_k = 40;             // <= 0: all tokens
    float top_p = 0.95f;        // >= 1: off
    float min_p = 0.05f;        // <= 0: off; keeps tokens with p >= min_p * p_max
    float repeat_penalty = 1.0f;     // 1: off; divides positive logits, multiplies negative ones
    float presence_penalty = 0.0f;   // subtracted once from every token seen
    float frequency_penalty = 0.0f;  // subtracted per occurrence
    int penalty_last_n = 64;         // how many recent tokens the penalties look at
    uint64_t seed = 0;
    // Added to these tokens' logits before anything else (-inf bans a token),
    // as OpenAI's logit_bias.
    std::vector<std::pair<int32_t, float>> logit_bias;
};

class Sampler {
public:
    explicit Sampler(const SamplerParams& params);

    struct Choice {
        int32_t id;
        double p;
    };
    // The distribution the chain leaves: the surviving tokens and their
    // probabilities (one token with p = 1 when greedy). Valid until the next call.
    // allowed, when given, is a bitmask of ceil(n_vocab / 32) words (bit id % 32
    // of word id / 32): other tokens are out before the chain starts.
    const std::vector<Choice>& distribution(const float* logits, int n_vocab, const uint32_t* allowed = nullptr);
    // Draws the next token from that distribution; does not record it.
    int32_t sample(const float* logits, int n_vocab, const uint32_t* allowed = nullptr);
    // Records a token (prompt or generated) for the penalties.
    void accept(int32_t token);
    void reset();

    const SamplerParams& params() const { return p_; }

private:
    struct Candidate {
        int32_t id;
        float logit;
    };
    // The candidate with the highest logit (the first of equals).
    static const Candidate& best(const std::vector<Candidate>& c);
    void apply_penalties(std::vector<Candidate>& c) const;
    // Sorts the candidates by logit, best first, far enough for top-k/top-p
    // (a partial sort that grows until the kept mass is reached).
    void truncate(std::vector<Candidate>& c) const;
    double uniform();

    SamplerParams p_;
    std::deque<int32_t> recent_;
    std::mt19937_64 rng_;
    std::vector<Candidate> candidates_;
    std::vector<Choice> choices_;
};

}  // namespace quanta::sample
