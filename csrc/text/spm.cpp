#include "text/spm.h"

#include <queue>

#include "text/unicode.h"

namespace quanta::text {
namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581

// The architectures whose GGUF tokenizer Hugging Face rebuilds the Gemma way
// (merges in file order, space-run tokens spelled with "▁").
bool gemma_family(const Vocab& v) {
    return v.architecture == "gemma" || v.architecture == "gemma2" || v.architecture == "gemma3";
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

}  // namespace

int byte_token_value(std::string_view t) {
    if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
    const int hi = hex_digit(t[3]), lo = hex_digit(t[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

bool is_gemma_space_token(const Vocab& vocab, int32_t id) {
    const std::string& t = vocab.text[id];
    return gemma_family(vocab) && vocab.type[id] == TokenType::UserDefined && !t.empty() &&
           t.find_first_not_of(' ') == std::string::npos;
}

SpmEncoder::SpmEncoder(const Vocab& vocab) : vocab_(vocab), rank_by_position_(gemma_family(vocab)) {
    for (int32_t id = 0; id < vocab.size(); ++id) {
        if (!is_gemma_space_token(vocab, id)) continue;
        std::string piece;
        for (size_t k = 0; k < vocab.text[id].size(); ++k) piece += kSpace;
        respelled_.push_back(std::move(piece));
    }
    index_.reserve(vocab.text.size());
    size_t next_respelled = 0;
    for (int32_t id = 0; id < vocab.size(); ++id)  // a later duplicate wins, as in HF
        index_[is_gemma_space_token(vocab, id) ? respelled_[next_respelled++] : vocab.text[id]] = id;
    for (int32_t& t : byte_token_) t = -1;
    for (int32_t id = 0; id < vocab.size(); ++id) {
        const int byte = byte_token_value(vocab.text[id]);
        if (vocab.type[id] == TokenType::Byte && byte >= 0) byte_token_[byte] = id;
    }
}

struct SpmEncoder::Scratch {
    struct Symbol {
        uint32_t start, len;  // bytes of `text`; len 0 once merged away
        int32_t chars;        // code points
        int32_t id;
        int32_t prev, next;
        bool mergeable;       // false for byte and unknown fallbacks
    };
    struct Candidate {
        double primary;  // lower is better: -score, or the file position
        int32_t id, left_chars, right_chars, left, right;
        uint32_t len;
        bool operator<(const Candidate& o) const {  // true when *this is the worse one
            if (primary != o.primary) return primary > o.primary;
            if (left_chars != o.left_chars) return left_chars < o.left_chars;
            if (right_chars != o.right_chars) return right_chars < o.right_chars;
            if (id != o.id) return id > o.id;
            return left > o.left;
        }
    };
    std::string text;
    std::vector<Symbol> symbols;
    std::priority_queue<Candidate> queue;
};

void SpmEncoder::consider(Scratch& s, int32_t left) const {
    const Scratch::Symbol& l = s.symbols[left];
    if (l.next < 0) return;
    const Scratch::Symbol& r = s.symbols[l.next];
    if (!l.mergeable || !r.mergeable) return;
    const auto it = index_.find(std::string_view(s.text).substr(l.start, l.len + r.len));
    if (it == index_.end()) return;
    const int32_t id = it->second;
    const double primary = rank_by_position_ ? (double)id : -(double)vocab_.score[id];
    s.queue.push({primary, id, l.chars, r.chars, left, l.next, l.len + r.len});
}

void SpmEncoder::encode(std::string_view fragment, bool at_start, std::vector<int32_t>& out) const {
    Scratch s;
    // The "▁" prefix goes only before text at the very start. Hugging Face's Metaspace adds none to text that
    // already begins with a space; SentencePiece adds it regardless (vocab.h, Vocab::SpacePrefix).
    const bool starts_with_space = !fragment.empty() && (fragment[0] == ' ' || fragment.substr(0, 3) == kSpace);
    const bool always = vocab_.space_prefix == Vocab::SpacePrefix::SentencePiece;
    if (vocab_.add_space_prefix && at_start && (always || !starts_with_space)) s.text += kSpace;
    for (char c : fragment) {
        if (c == ' ') s.text += kSpace;
        else s.text += c;
    }

    auto push = [&](uint32_t start, uint32_t len, int32_t chars, int32_t id, bool mergeable) {
        const int32_t i = (int32_t)s.symbols.size();
        s.symbols.push_back({start, len, chars, id, i - 1, -1, mergeable});
        if (i > 0) s.symbols[i - 1].next = i;
    };
    const std::string_view text = s.text;
    for (size_t i = 0; i < text.size();) {
        const size_t len = utf8_sequence_length(text, i);
        const auto it = index_.find(text.substr(i, len));
        if (it != index_.end()) {
            push((uint32_t)i, (uint32_t)len, 1, it->second, true);
        } else {
            bool all_bytes = true;
            for (size_t k = i; k < i + len; ++k) all_bytes = all_bytes && byte_token_[(unsigned char)text[k]] >= 0;
            if (all_bytes) {
                for (size_t k = i; k < i + len; ++k) push((uint32_t)k, 1, 1, byte_token_[(unsigned char)text[k]], false);
            } else if (vocab_.unk >= 0) {
                // Consecutive unknown code points become one unknown token (HF's fuse_unk).
                if (!s.symbols.empty() && !s.symbols.back().mergeable && s.symbols.back().id == vocab_.unk)
                    s.symbols.back().len += (uint32_t)len;
                else
                    push((uint32_t)i, (uint32_t)len, 1, vocab_.unk, false);
            }
        }
        i += len;
    }

    for (int32_t i = 0; i + 1 < (int32_t)s.symbols.size(); ++i) consider(s, i);
    while (!s.queue.empty()) {
        const Scratch::Candidate c = s.queue.top();
        s.queue.pop();
        Scratch::Symbol& l = s.symbols[c.left];
        Scratch::Symbol& r = s.symbols[c.right];
        // Stale when either side has changed since it was queued.
        if (l.len == 0 || r.len == 0 || l.next != c.right || l.len + r.len != c.len) continue;
        l.len += r.len;
        l.chars += r.chars;
        l.id = c.id;
        l.next = r.next;
        if (r.next >= 0) s.symbols[r.next].prev = c.left;
        r.len = 0;
        if (l.prev >= 0) consider(s, l.prev);
        consider(s, c.left);
    }
    for (int32_t i = s.symbols.empty() ? -1 : 0; i >= 0; i = s.symbols[i].next) out.push_back(s.symbols[i].id);
}

}  // namespace quanta::text
