#include "text/special_tokens.h"

namespace quanta::text {

SpecialTokens::SpecialTokens() : nodes_(1) {}

void SpecialTokens::add(std::string_view text, int32_t id, bool control) {
    if (text.empty()) return;
    first_byte_[(unsigned char)text[0]] = true;
    int32_t node = 0;
    for (unsigned char b : text) {
        const uint64_t key = ((uint64_t)node << 8) | b;
        auto it = edges_.find(key);
        if (it == edges_.end()) {
            it = edges_.emplace(key, (int32_t)nodes_.size()).first;
            nodes_.emplace_back();
        }
        node = it->second;
    }
    nodes_[node] = {id, control};
}

int32_t SpecialTokens::match(std::string_view text, size_t pos, bool parse_special, size_t* len) const {
    if (!first_byte_[(unsigned char)text[pos]]) return -1;
    int32_t node = 0, best = -1;
    for (size_t i = pos; i < text.size(); ++i) {
        const auto it = edges_.find(((uint64_t)node << 8) | (unsigned char)text[i]);
        if (it == edges_.end()) break;
        node = it->second;
        const Node& n = nodes_[node];
        if (n.id >= 0 && (parse_special || !n.control)) {
            best = n.id;
            *len = i + 1 - pos;
        }
    }
    return best;
}

}  // namespace quanta::text
