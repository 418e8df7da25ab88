// SentencePiece-style BPE (tokenizer.ggml.model = "llama"): spaces become
// U+2581 "▁", the text is cut into code points, and adjacent pieces merge
// whenever their concatenation is a token, best merge first; code points
// that are no token become <0xNN> byte tokens (or the unknown token).
//
// "Best" follows Hugging Face, which rebuilds the merge list from the
// vocabulary: by the merged token's score (Gemma: its file position, since
// Gemma's scores do not follow its merge order), then the longer left piece,
// the longer right piece, the lower id, the leftmost pair.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/encoder.h"
#include "text/vocab.h"

namespace quanta::text {

// The byte a "<0xNN>" byte-fallback token stands for, -1 for any other text.
int byte_token_value(std::string_view text);

// A Gemma user-defined token made only of spaces ("  "): llama.cpp's converter
// stores these with spaces, but they stand for runs of "▁" and merge like
// ordinary pieces instead of being matched whole in the raw text.
bool is_gemma_space_token(const Vocab& vocab, int32_t id);

class SpmEncoder : public Encoder {
public:
    // `vocab` must outlive the encoder.
    explicit SpmEncoder(const Vocab& vocab);

    void encode(std::string_view fragment, bool at_start, std::vector<int32_t>& out) const override;

private:
    struct Scratch;
    void consider(Scratch& s, int32_t left) const;

    const Vocab& vocab_;
    bool rank_by_position_ = false;
    std::vector<std::string> respelled_;                    // storage for "▁▁"-spelled space tokens
    std::unordered_map<std::string_view, int32_t> index_;  // piece text -> id
    int32_t byte_token_[256];                               // <0xNN> tokens, -1 if absent
};

}  // namespace quanta::text
