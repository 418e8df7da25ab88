// Generated tokens to text pieces, with stop strings (text_out.h).
#include "engine/text_out.h"

#include <algorithm>

namespace quanta::engine {

TextOut::TextOut(const text::Tokenizer& tokenizer, std::vector<std::string> stops) : tokenizer_(tokenizer) {
    for (std::string& s : stops)
        if (!s.empty()) stops_.push_back(std::move(s));
}

bool TextOut::push(int32_t token) {
    if (tokenizer_.is_control(token)) return false;
    held_ += utf8_.push(tokenizer_.token_bytes(token));
    return release();
}

void TextOut::finish() {
    held_ += utf8_.finish();
    if (!release()) ready_ += held_;
    held_.clear();
}

std::string TextOut::take() {
    std::string out;
    out.swap(ready_);
    return out;
}

// Moves what is certainly not part of a stop string from held_ to ready_;
// true when a stop string was found (held_ is then dropped).
bool TextOut::release() {
    size_t first = std::string::npos;
    for (const std::string& s : stops_) first = std::min(first, held_.find(s));
    if (first != std::string::npos) {
        ready_ += held_.substr(0, first);
        held_.clear();
        return true;
    }
    // Keep the longest tail that is a proper prefix of some stop string.
    size_t keep = 0;
    for (const std::string& s : stops_)
        for (size_t n = std::min(s.size() - 1, held_.size()); n > keep; --n)
            if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
                keep = n;
                break;
            }
    ready_ += held_.substr(0, held_.size() - keep);
    held_.erase(0, held_.size() - keep);
    return false;
}

}  // namespace quanta::engine
