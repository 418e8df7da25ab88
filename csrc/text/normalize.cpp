#include "text/normalize.h"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <tuple>
#include <vector>

#include "text/unicode.h"

namespace quanta::text {
namespace {

struct CombiningRange {
    char32_t first, last;
    uint8_t ccc;
};
struct Decomposition {
    char32_t cp, to[4];  // 0-padded
};
struct Composition {
    char32_t first, second, composite;
};
struct Lowercase {
    char32_t cp, to[2];  // 0-padded
};

#include "text/nfc_tables.inc"
#include "text/lowercase_tables.inc"

// Hangul syllables are composed and decomposed arithmetically (Unicode 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kSCount = kLCount * kVCount * kTCount;

int combining_class(char32_t cp) {
    const auto* end = std::end(kCombiningClasses);
    const auto* r = std::upper_bound(std::begin(kCombiningClasses), end, cp,
                                     [](char32_t c, const CombiningRange& x) { return c < x.first; });
    if (r == std::begin(kCombiningClasses)) return 0;
    --r;
    return cp <= r->last ? r->ccc : 0;
}

void decompose(char32_t cp, std::vector<char32_t>& out) {
    if (cp >= kSBase && cp < kSBase + kSCount) {
        const char32_t s = cp - kSBase;
        out.push_back(kLBase + s / (kVCount * kTCount));
        out.push_back(kVBase + (s % (kVCount * kTCount)) / kTCount);
        if (s % kTCount) out.push_back(kTBase + s % kTCount);
        return;
    }
    const auto* end = std::end(kDecompositions);
    const auto* d = std::lower_bound(std::begin(kDecompositions), end, cp,
                                     [](const Decomposition& x, char32_t c) { return x.cp < c; });
    if (d == end || d->cp != cp) {
        out.push_back(cp);
        return;
    }
    for (char32_t c : d->to)
        if (c) out.push_back(c);
}

// The primary composite of a starter and a following code point, or 0.
char32_t compose(char32_t a, char32_t b) {
    if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
        return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
    if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
        return a + (b - kTBase);
    const auto* end = std::end(kCompositions);
    const auto* c = std::lower_bound(std::begin(kCompositions), end, std::make_pair(a, b),
                                     [](const Composition& x, const std::pair<char32_t, char32_t>& k) {
                                         return x.first != k.first ? x.first < k.first : x.second < k.second;
                                     });
    return c != end && c->first == a && c->second == b ? c->composite : 0;
}

void append_lowercase(std::string& out, char32_t cp) {
    const auto* end = std::end(kLowercase);
    const auto* l = std::lower_bound(std::begin(kLowercase), end, cp,
                                     [](const Lowercase& x, char32_t c) { return x.cp < c; });
    if (l == end || l->cp != cp) {
        utf8_append(out, cp);
        return;
    }
    for (char32_t c : l->to)
        if (c) utf8_append(out, c);
}

}  // namespace

bool may_need_nfc(std::string_view text) {
    for (size_t i = 0; i < text.size();) {
        if ((unsigned char)text[i] < 0xCC) {  // below U+0300 nothing is affected by NFC
            ++i;
            continue;
        }
        size_t len = 0;
        if (code_point_class(utf8_decode(text, i, &len)) & kNfcMaybe) return true;
        i += len;
    }
    return false;
}

std::string to_nfc(std::string_view text) {
    std::vector<char32_t> cps;
    for (size_t i = 0; i < text.size();) {
        size_t len = 0;
        decompose(utf8_decode(text, i, &len), cps);
        i += len;
    }
    std::vector<int> ccc(cps.size());
    for (size_t i = 0; i < cps.size(); ++i) ccc[i] = combining_class(cps[i]);
    // Canonical ordering: each run of non-starters sorted stably by class.
    for (size_t i = 0; i < cps.size();) {
        size_t j = i;
        while (j < cps.size() && ccc[j] != 0) ++j;
        if (j - i > 1) {
            std::vector<std::pair<int, char32_t>> run;
            for (size_t k = i; k < j; ++k) run.emplace_back(ccc[k], cps[k]);
            std::stable_sort(run.begin(), run.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
            for (size_t k = i; k < j; ++k) std::tie(ccc[k], cps[k]) = run[k - i];
        }
        i = j == i ? i + 1 : j;
    }
    // Canonical composition: a code point joins the last starter unless a code point
    // between them has class 0 or a class not below its own (it is blocked).
    size_t kept = 0;
    long starter = -1;
    int last_class = -1;  // class of the last kept code point; -1 before any
    for (size_t i = 0; i < cps.size(); ++i) {
        const char32_t c = cps[i];
        const bool adjacent = starter >= 0 && (size_t)starter + 1 == kept;
        const char32_t composite =
            starter >= 0 && (adjacent || (last_class != 0 && last_class < ccc[i])) ? compose(cps[starter], c) : 0;
        if (composite) {
            cps[starter] = composite;
            continue;
        }
        if (ccc[i] == 0) starter = (long)kept;
        last_class = ccc[i];
        cps[kept++] = c;
    }
    std::string out;
    for (size_t i = 0; i < kept; ++i) utf8_append(out, cps[i]);
    return out;
}

std::string to_lowercase(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        const unsigned char b = (unsigned char)text[i];
        if (b < 0x80) {  // ASCII, most prompts, without a table search
            out += b >= 'A' && b <= 'Z' ? (char)(b + ('a' - 'A')) : (char)b;
            ++i;
            continue;
        }
        size_t len = 0;
        append_lowercase(out, utf8_decode(text, i, &len));
        i += len;
    }
    return out;
}

}  // namespace quanta::text
