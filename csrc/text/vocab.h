// A tokenizer's vocabulary as a GGUF file stores it (llama.cpp's
// tokenizer.ggml.* keys), read and validated once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace quanta::gguf {
class File;
}

namespace quanta::text {

// tokenizer.ggml.token_type values.
enum class TokenType : uint8_t {
    Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

struct Vocab {
    enum class Model { Spm, Bpe };  // tokenizer.ggml.model "llama" / "gpt2"

    Model model = Model::Spm;
    std::string source;              // the file it was read from, for error messages
    std::string architecture;        // general.architecture, "" if absent
    std::string pre;                 // tokenizer.ggml.pre, "default" if absent
    std::vector<std::string> text;   // tokenizer.ggml.tokens
    std::vector<TokenType> type;     // all Normal when the file has no token types
    std::vector<float> score;        // all 0 when the file has no scores
    std::vector<std::string> merges; // "left right", best first (BPE)
    int32_t bos = -1, eos = -1, eot = -1, eom = -1, unk = -1;  // -1: none
    bool add_bos = false;
    bool add_space_prefix = true;    // SentencePiece: a leading "▁" before the text

    int32_t size() const { return (int32_t)text.size(); }
};

// Throws a Model error naming the key when one is missing, mistyped or
// inconsistent (lengths, ids out of range, unknown model).
Vocab read_vocab(const gguf::File& file);

}  // namespace quanta::text
