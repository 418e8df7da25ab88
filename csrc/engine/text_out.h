// The text side of one generation: generated tokens become UTF-8 text pieces
// (never a split character, control tokens left out), and stop strings end
// it: text that could still begin a stop string is held back until it is
// known not to, and a stop string is never emitted.
#pragma once

#include <string>
#include <vector>

#include "text/tokenizer.h"
#include "text/utf8_stream.h"

namespace quanta::engine {

class TextOut {
public:
    TextOut(const text::Tokenizer& tokenizer, std::vector<std::string> stops);

    // Adds a generated token; returns true when a stop string has appeared
    // (the text before it is ready; nothing after it ever will be).
    bool push(int32_t token);
    // The end of generation: whatever was held back is ready.
    void finish();
    // Text ready since the last call.
    std::string take();

private:
    bool release();

    const text::Tokenizer& tokenizer_;
    std::vector<std::string> stops_;
    text::Utf8Stream utf8_;
    std::string held_, ready_;
};

}  // namespace quanta::engine
