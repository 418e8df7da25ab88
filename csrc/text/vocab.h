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
    enum class Model { Spm, Bpe, Clip };  // tokenizer.ggml.model "llama" / "gpt2" / "clip"

    Model model = Model::Spm;
    std::string source;              // the file it was read from, for error messages
    std::string architecture;        // general.architecture, "" if absent
    std::string pre;                 // tokenizer.ggml.pre, "default" if absent
    std::vector<std::string> text;   // tokenizer.ggml.tokens
    std::vector<TokenType> type;     // all Normal when the file has no token types
    std::vector<float> score;        // all 0 when the file has no scores
    std::vector<std::string> merges; // "left right", best first (BPE)
    int32_t bos = -1, eos = -1, eot = -1, eom = -1, unk = -1, pad = -1;  // -1: none
    bool add_bos = false;
    bool add_space_prefix = true;    // SentencePiece: a leading "▁" before the text

    // How that "▁" meets text that already starts with a space ("▁"), or with a user-defined piece.
    //   Metaspace: no "▁" is added before a space, and none before a user-defined piece at the start: Hugging
    //     Face's Metaspace pre-tokenizer, and so the tokenizer transformers builds from any GGUF file.
    //   SentencePiece: one "▁" before the whole text, always (" hi" -> "▁▁hi", "<tool>x" -> "▁" "<tool>" "x"):
    //     SentencePiece's own add_dummy_prefix (llama.cpp agrees on leading spaces, not on user-defined pieces).
    // A GGUF names the second with tokenizer.quanta.space_prefix = "sentencepiece" (quanta's converter writes it
    // for a tokenizer.model, whose own tokenizer is SentencePiece); without the key it is the first, so files
    // from elsewhere keep matching transformers.
    enum class SpacePrefix { Metaspace, SentencePiece };
    SpacePrefix space_prefix = SpacePrefix::Metaspace;

    int32_t size() const { return (int32_t)text.size(); }
};

// Throws a Model error naming the key when one is missing, mistyped or
// inconsistent (lengths, ids out of range, unknown model).
Vocab read_vocab(const gguf::File& file);

}  // namespace quanta::text
