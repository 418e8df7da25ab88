// A constraint on the tokens a request may sample (structured output: a JSON
// schema, a grammar). Before each draw the generator asks it which tokens may
// come next, and it tells it every token drawn. The engine knows no grammar:
// implementations live with the front end (the Python server wraps
// llguidance's token masks).
#pragma once

#include <cstdint>

namespace quanta::engine {

class TokenConstraint {
public:
    virtual ~TokenConstraint() = default;
    // Sets bit (id % 32) of words[id / 32] for every token allowed next. The
    // n_words = ceil(n_vocab / 32) words arrive zeroed. When no bit is set
    // (the constraint failed), the request ends.
    virtual void allowed(uint32_t* words, int n_words) = 0;
    // The token drawn.
    virtual void accept(int32_t token) = 0;
};

}  // namespace quanta::engine
