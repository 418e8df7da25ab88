// Unicode Normalization Form C, for tokenizers whose Hugging Face
// normalizer is NFC (Qwen2's).
#pragma once

#include <string>
#include <string_view>

namespace quanta::text {

// True when `text` (valid UTF-8) may differ from its NFC form; false means it is NFC.
bool may_need_nfc(std::string_view text);

// The NFC form of `text` (valid UTF-8): canonical decomposition, canonical
// ordering of combining marks, then canonical composition.
std::string to_nfc(std::string_view text);

}  // namespace quanta::text
