#include "text/unicode.h"

#include <algorithm>

namespace quanta::text {
namespace {

struct ClassRange {
    char32_t first, last;
    uint8_t bits;
};

constexpr ClassRange kRanges[] = {
#include "text/unicode_tables.inc"
};

// Latin-1 is looked up directly: it is most of what source code and English text hold.
struct Latin1Table {
    uint8_t bits[256] = {};
    constexpr Latin1Table() {
        for (const ClassRange& r : kRanges)
            for (char32_t cp = r.first; cp <= r.last && cp < 256; ++cp) bits[cp] = r.bits;
    }
};
constexpr Latin1Table kLatin1;

bool is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

// Well-formed UTF-8 (Unicode Table 3-7): the allowed range of the second byte
// depends on the lead byte; later bytes are any continuation byte.
struct LeadRule {
    size_t length;
    unsigned char second_lo, second_hi;
};

LeadRule lead_rule(unsigned char b) {
    if (b < 0x80) return {1, 0, 0};
    if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
    if (b == 0xE0) return {3, 0xA0, 0xBF};
    if (b == 0xED) return {3, 0x80, 0x9F};
    if (b >= 0xE1 && b <= 0xEF) return {3, 0x80, 0xBF};
    if (b == 0xF0) return {4, 0x90, 0xBF};
    if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
    if (b == 0xF4) return {4, 0x80, 0x8F};
    return {0, 0, 0};
}

// How many bytes of s[i..] match a prefix of a well-formed sequence (0 for a
// byte that cannot start one), and the full length that sequence needs.
size_t valid_prefix(std::string_view s, size_t i, size_t* needed) {
    const LeadRule rule = lead_rule((unsigned char)s[i]);
    *needed = rule.length;
    if (rule.length <= 1) return rule.length;
    size_t n = 1;
    while (n < rule.length && i + n < s.size()) {
        const unsigned char b = (unsigned char)s[i + n];
        const bool ok = n == 1 ? (b >= rule.second_lo && b <= rule.second_hi) : is_continuation(b);
        if (!ok) break;
        ++n;
    }
    return n;
}

}  // namespace

size_t utf8_sequence_length(std::string_view s, size_t i) {
    size_t needed = 0;
    const size_t n = valid_prefix(s, i, &needed);
    return n == needed ? n : 0;
}

char32_t utf8_decode(std::string_view s, size_t i, size_t* len) {
    const unsigned char b0 = (unsigned char)s[i];
    if (b0 < 0x80) {
        *len = 1;
        return b0;
    }
    const size_t n = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : 2;
    char32_t cp = b0 & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | ((unsigned char)s[i + k] & 0x3F);
    *len = n;
    return cp;
}

void utf8_append(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out += (char)cp;
    } else if (cp < 0x800) {
        out += (char)(0xC0 | (cp >> 6));
        out += (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += (char)(0xE0 | (cp >> 12));
        out += (char)(0x80 | ((cp >> 6) & 0x3F));
        out += (char)(0x80 | (cp & 0x3F));
    } else {
        out += (char)(0xF0 | (cp >> 18));
        out += (char)(0x80 | ((cp >> 12) & 0x3F));
        out += (char)(0x80 | ((cp >> 6) & 0x3F));
        out += (char)(0x80 | (cp & 0x3F));
    }
}

size_t utf8_first_invalid(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        const size_t n = utf8_sequence_length(s, i);
        if (n == 0) return i;
        i += n;
    }
    return std::string_view::npos;
}

size_t utf8_append_lossy(std::string& out, std::string_view s, bool final) {
    static constexpr char kReplacement[] = "\xEF\xBF\xBD";
    size_t i = 0;
    while (i < s.size()) {
        size_t needed = 0;
        const size_t n = valid_prefix(s, i, &needed);
        if (n > 0 && n == needed) {
            out.append(s.data() + i, n);
            i += n;
            continue;
        }
        if (!final && n > 0 && i + n == s.size()) break;  // may still be completed
        out += kReplacement;
        i += std::max<size_t>(n, 1);
    }
    return i;
}

uint8_t code_point_class(char32_t cp) {
    if (cp < 256) return kLatin1.bits[cp];
    const ClassRange* end = kRanges + sizeof(kRanges) / sizeof(kRanges[0]);
    const ClassRange* r = std::upper_bound(kRanges, end, cp, [](char32_t c, const ClassRange& x) { return c < x.first; });
    if (r == kRanges) return 0;
    --r;
    return cp <= r->last ? r->bits : 0;
}

}  // namespace quanta::text
