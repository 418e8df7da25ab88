// The part of a tokenizer that turns plain text (no special tokens) into ids.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace quanta::text {

class Encoder {
public:
    virtual ~Encoder() = default;
    // Appends the ids of `fragment`, a non-empty stretch of valid UTF-8 between special
    // tokens; `at_start` says it begins the whole input. Must be thread-safe.
    virtual void encode(std::string_view fragment, bool at_start, std::vector<int32_t>& out) const = 0;
};

}  // namespace quanta::text
