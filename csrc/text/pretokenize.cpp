#include "text/pretokenize.h"

#include <algorithm>
#include <cstdint>

#include "text/unicode.h"

namespace quanta::text {
namespace {

// The text as code points with their classes; every matcher returns the
// length in code points of the piece starting at i (at least 1).
class Matcher {
public:
    explicit Matcher(std::string_view text) {
        for (size_t i = 0; i < text.size();) {
            size_t len = 0;
            const char32_t c = utf8_decode(text, i, &len);
            cp_.push_back(c);
            cls_.push_back(code_point_class(c));
            offset_.push_back(i);
            i += len;
        }
        offset_.push_back(text.size());
    }

    size_t size() const { return cp_.size(); }
    size_t byte_offset(size_t i) const { return offset_[i]; }

    size_t match(SplitRule rule, size_t i) const {
        if (rule == SplitRule::Gpt2) return match_gpt2(i);
        if (rule == SplitRule::Clip) return match_clip(i);
        return match_llama3(i, rule == SplitRule::Qwen2 ? 1 : 3);
    }

private:
    bool letter(size_t i) const { return i < size() && (cls_[i] & kLetter); }
    bool number(size_t i) const { return i < size() && (cls_[i] & kNumber); }
    bool space(size_t i) const { return i < size() && (cls_[i] & kWhitespace); }
    bool crlf(size_t i) const { return i < size() && (cp_[i] == '\r' || cp_[i] == '\n'); }
    // [^\s\p{L}\p{N}]
    bool other(size_t i) const { return i < size() && !(cls_[i] & (kLetter | kNumber | kWhitespace)); }

    template <class Pred>
    size_t run(size_t i, Pred pred) const {
        size_t j = i;
        while (pred(j)) ++j;
        return j - i;
    }
    size_t letters(size_t i) const { return run(i, [this](size_t k) { return letter(k); }); }
    size_t numbers(size_t i) const { return run(i, [this](size_t k) { return number(k); }); }
    size_t others(size_t i) const { return run(i, [this](size_t k) { return other(k); }); }
    size_t spaces(size_t i) const { return run(i, [this](size_t k) { return space(k); }); }

    // 's|'t|'re|'ve|'m|'ll|'d; case-insensitive folds ASCII only (Oniguruma
    // does not fold U+017F "ſ" to "s" here: tokenizers splits "'ſt" as one piece).
    size_t contraction(size_t i, bool ignore_case) const {
        if (cp_[i] != '\'' || i + 1 >= size()) return 0;
        auto at = [&](size_t k) -> char32_t {
            const char32_t c = k < size() ? cp_[k] : 0;
            return ignore_case && c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
        };
        const char32_t a = at(i + 1), b = at(i + 2);
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
        return 0;
    }

    // \s*[\r\n]+ | \s+(?!\S) | \s+ at a whitespace code point.
    size_t whitespace(size_t i, bool newline_rule) const {
        const size_t n = spaces(i);
        if (newline_rule) {
            // \s* backtracks to the last CR/LF of the run; [\r\n]+ then takes just that one.
            for (size_t k = i + n; k > i; --k)
                if (crlf(k - 1)) return k - i;
        }
        // (?!\S): the run may not end right before a non-space, so it leaves its last
        // code point to the next piece, unless that would leave nothing or the text ends.
        if (i + n < size() && n >= 2) return n - 1;
        return n;
    }

    size_t match_llama3(size_t i, size_t max_digits) const {
        if (size_t n = contraction(i, true)) return n;
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if (letter(i)) return letters(i);
        if (!crlf(i) && !number(i) && letter(i + 1)) return 1 + letters(i + 1);
        if (number(i)) return std::min(numbers(i), max_digits);
        //  ?[^\s\p{L}\p{N}]+[\r\n]*
        const size_t start = cp_[i] == ' ' && other(i + 1) ? i + 1 : i;
        if (other(start)) {
            const size_t end = start + others(start);
            return end + run(end, [this](size_t k) { return crlf(k); }) - i;
        }
        return whitespace(i, true);
    }

    size_t match_gpt2(size_t i) const {
        if (size_t n = contraction(i, false)) return n;
        //  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+ : the optional space joins what follows unless it is a space.
        const size_t start = cp_[i] == ' ' && i + 1 < size() && !space(i + 1) ? i + 1 : i;
        if (letter(start)) return start - i + letters(start);
        if (number(start)) return start - i + numbers(start);
        if (other(start)) return start - i + others(start);
        return whitespace(i, false);
    }

    // CLIP's regex spells its two special tokens first, so that one written in the text (in upper case,
    // which lower-casing turned into the token's text) ends its piece: "<|endoftext|>!" is two pieces.
    size_t special_literal(size_t i) const {
        for (std::string_view lit : {std::string_view("<|startoftext|>"), std::string_view("<|endoftext|>")}) {
            size_t k = 0;
            while (k < lit.size() && i + k < size() && cp_[i + k] == (unsigned char)lit[k]) ++k;
            if (k == lit.size()) return k;
        }
        return 0;
    }

    size_t match_clip(size_t i) const {
        if (size_t n = special_literal(i)) return n;
        if (size_t n = contraction(i, false)) return n;
        if (letter(i)) return letters(i);
        if (number(i)) return 1;
        if (other(i)) return others(i);
        return spaces(i);
    }

    std::vector<char32_t> cp_;
    std::vector<uint8_t> cls_;
    std::vector<size_t> offset_;
};

}  // namespace

void split_words(std::string_view text, SplitRule rule, std::vector<std::string_view>& out) {
    const Matcher m(text);
    for (size_t i = 0; i < m.size();) {
        const size_t n = m.match(rule, i);
        out.push_back(text.substr(m.byte_offset(i), m.byte_offset(i + n) - m.byte_offset(i)));
        i += n;
    }
}

}  // namespace quanta::text
