// UTF-8 decoding, encoding and validation, and the code point classes the
// pre-tokenizers split on (generated from Unicode data, see unicode_tables.inc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace quanta::text {

// Length of the well-formed UTF-8 sequence at s[i], or 0 if the bytes there do
// not start one (bad lead byte, bad or missing continuation, overlong form,
// surrogate, or beyond U+10FFFF). Needs i < s.size().
size_t utf8_sequence_length(std::string_view s, size_t i);

// Decodes the sequence at s[i]; `s` must be valid UTF-8 there. Sets *len.
char32_t utf8_decode(std::string_view s, size_t i, size_t* len);

void utf8_append(std::string& out, char32_t cp);

// Offset of the first byte that is not part of well-formed UTF-8, or npos.
size_t utf8_first_invalid(std::string_view s);

// Appends `s` to `out` with every maximal ill-formed subsequence replaced by
// U+FFFD, the rule Python's errors="replace" and Rust's from_utf8_lossy follow.
// With `final` false an incomplete sequence at the end is left unconsumed, for
// a later call to complete. Returns the number of bytes consumed.
size_t utf8_append_lossy(std::string& out, std::string_view s, bool final);

enum CodePointClass : uint8_t {
    kLetter = 1,      // \p{L}
    kNumber = 2,      // \p{N}
    kWhitespace = 4,  // \s (White_Space)
    kNfcMaybe = 8,    // NFC may change it or its neighbours; text without any is already NFC
};

// The CodePointClass bits of `cp`.
uint8_t code_point_class(char32_t cp);

}  // namespace quanta::text
