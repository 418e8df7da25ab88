// Byte-level BPE (tokenizer.ggml.model = "gpt2"): text (NFC-normalized for
// Qwen2) is split by the pre-tokenizer named in tokenizer.ggml.pre, each
// piece's bytes are spelled with GPT-2's byte-to-unicode alphabet, and the
// ranked merges of tokenizer.ggml.merges are applied, lowest rank first,
// leftmost on ties (BpeMerges, which CLIP's tokenizer uses too).
#pragma once

#include <cstdint>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

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

// A vocabulary's ranked merges (tokenizer.ggml.merges, "left right", best first), applied as Hugging Face's
// BPE model applies them: lowest rank first, leftmost on ties. Byte-level BPE and CLIP's BPE share it; they
// differ only in the symbols a word starts as.
class BpeMerges {
public:
    // `vocab` must outlive it. Throws a Model error for a merge that names tokens not in the vocabulary.
    explicit BpeMerges(const Vocab& vocab);

    // The id of the token spelled `text`, -1 if none.
    int32_t find(std::string_view text) const;

    // The working memory of merge, kept by the caller across the words of a text so that each word
    // does not allocate afresh.
    struct Scratch {
        struct Symbol {
            int32_t id;
            int32_t prev, next;  // -1 at the ends; a merged-away symbol has id -1
        };
        struct Candidate {
            int32_t rank, left, right, left_id, right_id, merged;
            bool operator<(const Candidate& o) const {  // priority_queue pops the largest: lowest rank, then leftmost
                return rank != o.rank ? rank > o.rank : left > o.left;
            }
        };
        std::vector<Symbol> symbols;
        std::priority_queue<Candidate> queue;
    };

    // Merges the token ids `word` starts as, then appends what is left to `out`.
    void merge(const std::vector<int32_t>& word, Scratch& s, std::vector<int32_t>& out) const;

private:
    struct Merge {
        int32_t rank;
        int32_t id;
    };

    const Merge* find_merge(int32_t left, int32_t right) const;
    void consider(Scratch& s, int32_t left) const;

    std::unordered_map<std::string_view, int32_t> index_;  // token text -> id (views into the vocab)
    std::unordered_map<uint64_t, Merge> merges_;            // (left id << 32 | right id) -> merge
};

class BpeEncoder : public Encoder {
public:
    // `vocab` must outlive the encoder. Throws a Model error for an unknown
    // tokenizer.ggml.pre or a merge that names tokens not in the vocabulary.
    explicit BpeEncoder(const Vocab& vocab);

    void encode(std::string_view fragment, bool at_start, std::vector<int32_t>& out) const override;

private:
    struct Scratch;

    void encode_word(std::string_view word, Scratch& s, std::vector<int32_t>& out) const;

    SplitRule rule_ = SplitRule::Gpt2;
    bool ignore_merges_ = false;   // a piece that is itself a token is emitted whole (Llama 3)
    bool nfc_ = false;             // text is normalized to NFC first (Qwen2)
    int32_t byte_token_[256];      // the token of each byte's character, -1 if absent
    BpeMerges merges_;
};

}  // namespace quanta::text
