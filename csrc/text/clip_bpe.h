// CLIP's BPE tokenizer, the one Stable Diffusion's text encoders read: transformers' CLIPTokenizer as
// diffusers loads it, rebuilt from a GGUF file's tokenizer.ggml.* metadata (model "clip") so that a
// diffusion file needs no tokenizer files beside it, and giving the same ids.
// All methods are const and thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "text/bpe.h"
#include "text/special_tokens.h"
#include "text/vocab.h"

namespace quanta::gguf {
class File;
}

namespace quanta::text {

class ClipTokenizer {
public:
    // The context of every CLIP text encoder in Stable Diffusion 1 and 2.
    static constexpr int32_t kContextLength = 77;

    // Throws a Model error naming the key when tokenizer metadata is missing, bad, or not CLIP's.
    static std::unique_ptr<ClipTokenizer> from_gguf(const gguf::File& file);
    explicit ClipTokenizer(Vocab vocab);
    ClipTokenizer(const ClipTokenizer&) = delete;
    ClipTokenizer& operator=(const ClipTokenizer&) = delete;

    // BOS, the ids of `text` cut to context_length - 2, EOS; with `pad`, then the pad id up to
    // context_length. BOS, EOS and pad tokens written in the text become their ids. Throws
    // InvalidArgument on invalid UTF-8 or a context_length below 2.
    std::vector<int32_t> encode(std::string_view text, int32_t context_length = kContextLength, bool pad = true) const;

    int32_t n_vocab() const { return vocab_.size(); }
    int32_t bos() const { return vocab_.bos; }
    int32_t eos() const { return vocab_.eos; }
    int32_t pad() const { return vocab_.pad; }

private:
    void encode_fragment(std::string_view fragment, std::vector<int32_t>& out) const;
    void encode_word(std::string_view word, BpeMerges::Scratch& s, std::vector<int32_t>& out) const;

    Vocab vocab_;
    BpeMerges merges_;
    SpecialTokens special_;
    int32_t byte_token_[256];      // the token of each byte's character
    int32_t word_end_token_[256];  // the same followed by "</w>", for a word's last byte
};

}  // namespace quanta::text
