#include "sample/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "base/error.h"

namespace quanta::sample {

Sampler::Sampler(const SamplerParams& params) : p_(params), rng_(params.seed) {
    QUANTA_CHECK_ARG(std::isfinite(p_.temperature), "temperature must be a finite number");
    QUANTA_CHECK_ARG(p_.top_p > 0.0f, "top_p must be positive");
    QUANTA_CHECK_ARG(p_.min_p >= 0.0f && p_.min_p <= 1.0f, "min_p must be in [0, 1]");
    QUANTA_CHECK_ARG(p_.repeat_penalty > 0.0f, "repeat_penalty must be positive");
    QUANTA_CHECK_ARG(p_.penalty_last_n >= 0, "penalty_last_n must not be negative");
    for (const auto& [id, bias] : p_.logit_bias) {
        QUANTA_CHECK_ARG(id >= 0, "logit_bias: token id " + std::to_string(id) + " is negative");
        QUANTA_CHECK_ARG(!std::isnan(bias), "logit_bias: the bias of token " + std::to_string(id) + " is not a number");
    }
}

void Sampler::reset() {
    recent_.clear();
    rng_.seed(p_.seed);
}

void Sampler::accept(int32_t token) {
    if (p_.penalty_last_n == 0) return;
    recent_.push_back(token);
    if ((int)recent_.size() > p_.penalty_last_n) recent_.pop_front();
}

double Sampler::uniform() {
    // 53 random bits: the same draw for a seed on every platform (the
    // standard distributions are implementation-defined).
    return (double)(rng_() >> 11) * (1.0 / 9007199254740992.0);
}

const Sampler::Candidate& Sampler::best(const std::vector<Candidate>& c) {
    return *std::max_element(c.begin(), c.end(), [](const Candidate& a, const Candidate& b) { return a.logit < b.logit; });
}

void Sampler::apply_penalties(std::vector<Candidate>& c) const {
    const bool off = p_.repeat_penalty == 1.0f && p_.presence_penalty == 0.0f && p_.frequency_penalty == 0.0f;
    if (off || recent_.empty()) return;
    std::unordered_map<int32_t, int> counts;
    for (int32_t t : recent_) ++counts[t];
    for (const auto& [id, n] : counts) {
        if (id < 0 || id >= (int32_t)c.size()) continue;
        float& l = c[id].logit;  // candidates are still in id order here
        l = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
        l -= (float)n * p_.frequency_penalty + p_.presence_penalty;
    }
}

void Sampler::truncate(std::vector<Candidate>& c) const {
    auto better = [](const Candidate& a, const Candidate& b) {
        return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
    };
    if (p_.top_k > 0 && (size_t)p_.top_k < c.size()) {
        std::partial_sort(c.begin(), c.begin() + p_.top_k, c.end(), better);
        c.resize(p_.top_k);
    }
    if (p_.top_p < 1.0f) {
        // Top-p over what is left (renormalised, as llama.cpp): the smallest
        // best-first prefix whose mass reaches top_p. Only that prefix needs
        // sorting, so a growing prefix is sorted until the mass is reached.
        const float top = best(c).logit;
        double total = 0;
        for (const Candidate& x : c) total += std::exp((double)(x.logit - top));
        for (size_t sorted = std::min(c.size(), (size_t)256);; sorted = std::min(c.size(), sorted * 4)) {
            std::partial_sort(c.begin(), c.begin() + sorted, c.end(), better);
            double mass = 0;
            size_t keep = 0;
            while (keep < sorted && mass < p_.top_p * total) mass += std::exp((double)(c[keep++].logit - top));
            if (mass >= p_.top_p * total || sorted == c.size()) {
                c.resize(std::max<size_t>(keep, 1));
                break;
            }
        }
    }
    if (p_.min_p > 0.0f) {  // p_i >= min_p * p_max  <=>  logit_i >= logit_max + log(min_p)
        const float cut = best(c).logit + std::log(p_.min_p);
        c.erase(std::remove_if(c.begin(), c.end(), [cut](const Candidate& x) { return x.logit < cut; }), c.end());
    }
}

const std::vector<Sampler::Choice>& Sampler::distribution(const float* logits, int n_vocab, const uint32_t* allowed) {
    QUANTA_CHECK_ARG(n_vocab > 0, "sample: empty logits");
    candidates_.resize(n_vocab);
    for (int i = 0; i < n_vocab; ++i) candidates_[i] = {i, std::isnan(logits[i]) ? -INFINITY : logits[i]};
    for (const auto& [id, bias] : p_.logit_bias)
        if (id < n_vocab) candidates_[id].logit += bias;
    apply_penalties(candidates_);
    if (allowed) {  // after the penalties, which index candidates by id
        candidates_.erase(std::remove_if(candidates_.begin(), candidates_.end(),
                                         [&](const Candidate& c) { return !(allowed[c.id / 32] >> (c.id % 32) & 1u); }),
                          candidates_.end());
        QUANTA_CHECK_ARG(!candidates_.empty(), "sample: the constraint allows no token");
    }
    choices_.clear();
    if (p_.temperature <= 0.0f) {
        choices_.push_back({best(candidates_).id, 1.0});
        return choices_;
    }
    truncate(candidates_);
    const float top = best(candidates_).logit;
    double total = 0;
    for (const Candidate& x : candidates_) {
        const double w = std::exp((double)(x.logit - top) / p_.temperature);
        choices_.push_back({x.id, w});
        total += w;
    }
    for (Choice& ch : choices_) ch.p /= total;
    return choices_;
}

int32_t Sampler::sample(const float* logits, int n_vocab, const uint32_t* allowed) {
    const std::vector<Choice>& d = distribution(logits, n_vocab, allowed);
    double r = uniform();
    for (const Choice& ch : d) {
        r -= ch.p;
        if (r < 0) return ch.id;
    }
    return d.back().id;  // r was within rounding of 1
}

}  // namespace quanta::sample
