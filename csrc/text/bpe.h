// Byte-level BPE (tokenizer.ggml.model = "gpt2"): text (NFC-normalized for
// Qwen2) is split by the pre-tokenizer named in tokenizer.ggml.pre, each
// piece's bytes are spelled with GPT-2's byte-to-unicode alphabet, and the
// ranked merges of tokenizer.ggml.merges are applied, lowest rank first,
// leftmost on ties.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "text/encoder.h"
#include "text/pretokenize.h"
#include "text/vocab.h"

namespace quanta::text {

// GPT-2's byte-to-unicode alphabet: printable bytes (33-126, 161-172,
// 174-255) stand for themselves, the other 68 for U+0100 onwards in byte order.
char32_t byte_to_char(uint8_t b);

// Appends the bytes that `text` spells in that alphabet; false (and nothing
// appended) if it holds a code point outside it.
bool append_byte_level_bytes(std::string_view text, std::string& out);

class BpeEncoder : public Encoder {
public:
    // `vocab` must outlive the encoder. Throws a Model error for an unknown
    // tokenizer.ggml.pre or a merge that names tokens not in the vocabulary.
    explicit BpeEncoder(const Vocab& vocab);

    void encode(std::string_view fragment, bool at_start, std::vector<int32_t>& out) const override;

private:
    struct Merge {
        int32_t rank;
        int32_t id;
    };
    struct Scratch;

    void encode_word(std::string_view word, Scratch& s, std::vector<int32_t>& out) const;
    const Merge* find_merge(int32_t left, int32_t right) const;

    SplitRule rule_ = SplitRule::Gpt2;
    bool ignore_merges_ = false;   // a piece that is itself a token is emitted whole (Llama 3)
    bool nfc_ = false;             // text is normalized to NFC first (Qwen2)
    int32_t byte_token_[256];      // the token of each byte's character, -1 if absent
    std::unordered_map<std::string_view, int32_t> index_;  // token text -> id (views into the vocab)
    std::unordered_map<uint64_t, Merge> merges_;            // (left id << 32 | right id) -> merge
};

}  // namespace quanta::text
