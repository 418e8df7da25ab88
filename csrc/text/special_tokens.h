// Finds special tokens written out in text: control tokens ("<|im_start|>")
// and user-defined ones ("<tool_call>", Gemma's "\n\n"), whole, leftmost
// first and longest first, as Hugging Face's added-token matcher does.
#pragma once

#include <cstdint>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace quanta::text {

class SpecialTokens {
public:
    SpecialTokens();

    // `control`: matched only when the caller parses special tokens; user-defined
    // tokens are always matched (llama.cpp and Hugging Face both do so).
    void add(std::string_view text, int32_t id, bool control);

    // The longest token allowed by `parse_special` that `text` has at `pos`, with
    // its byte length in *len; -1 if none.
    int32_t match(std::string_view text, size_t pos, bool parse_special, size_t* len) const;

private:
    struct Node {
        int32_t id = -1;
        bool control = false;
    };
    // A byte trie: edges keyed by (node << 8) | byte.
    std::vector<Node> nodes_;
    std::unordered_map<uint64_t, int32_t> edges_;
    bool first_byte_[256] = {};  // skips positions no token starts at without a hash lookup
};

}  // namespace quanta::text
