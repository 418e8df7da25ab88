// Regex-free pre-tokenizers for byte-level BPE: each splits text into the
// pieces that a pre-tokenizer regex of Hugging Face tokenizers / llama.cpp
// matches, by hand-written matchers over code point classes.
#pragma once

#include <string_view>
#include <vector>

namespace quanta::text {

enum class SplitRule {
    // GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    Gpt2,
    // Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
    //          | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    Llama3,
    // Qwen 2: as Llama 3 with \p{N} (one digit per piece).
    Qwen2,
    // CLIP (transformers' CLIPTokenizer): <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}
    //                                      |[^\s\p{L}\p{N}]+, and each run of whitespace between matches as a piece
    //                                      of its own (CLIP's tokenizer drops those).
    Clip,
};

// Appends to `out` the consecutive pieces `text` (valid UTF-8) splits into;
// together they cover `text` exactly.
void split_words(std::string_view text, SplitRule rule, std::vector<std::string_view>& out);

}  // namespace quanta::text
