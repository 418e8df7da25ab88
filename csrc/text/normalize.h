// The Hugging Face normalizers tokenizers need: Unicode Normalization Form C
// (Qwen2's, CLIP's) and lower-casing (CLIP's).
#pragma once

#include <string>
#include <string_view>

namespace quanta::text {

// True when `text` (valid UTF-8) may differ from its NFC form; false means it is NFC.
bool may_need_nfc(std::string_view text);

// The NFC form of `text` (valid UTF-8): canonical decomposition, canonical
// ordering of combining marks, then canonical composition.
std::string to_nfc(std::string_view text);

// `text` (valid UTF-8) with every code point replaced by its full lowercase mapping, one code point at a
// time as the Lowercase normalizer does (Rust's char::to_lowercase): "İ" becomes "i" + U+0307, and a
// final "Σ" becomes "σ", not "ς".
std::string to_lowercase(std::string_view text);

}  // namespace quanta::text
