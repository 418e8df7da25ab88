// The tokenizer of an LLM, built from a GGUF file's tokenizer.ggml.* metadata
// and matching the Hugging Face tokenizer of the same file token for token.
// All methods are const and thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "text/encoder.h"
#include "text/special_tokens.h"
#include "text/vocab.h"

namespace quanta::gguf {
class File;
}

namespace quanta::text {

class Tokenizer {
public:
    // Throws a Model error naming the key when tokenizer metadata is missing or bad.
    static std::unique_ptr<Tokenizer> from_gguf(const gguf::File& file);
    explicit Tokenizer(Vocab vocab);
    Tokenizer(const Tokenizer&) = delete;
    Tokenizer& operator=(const Tokenizer&) = delete;

    // `add_bos`: put the BOS token first if the model asks for one (add_bos(); like
    // HF's add_special_tokens). `parse_special`: control tokens written in the text
    // ("<|im_start|>") become their ids; otherwise they are tokenized as text.
    // User-defined tokens are always matched whole. Throws InvalidArgument on invalid UTF-8.
    std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const;

    // The bytes token `id` stands for: "▁" as a space, <0xNN> as its byte,
    // byte-level BPE characters as their bytes; control tokens give their text.
    const std::string& token_bytes(int32_t id) const;
    // Valid UTF-8: ill-formed byte sequences become U+FFFD. `skip_special` leaves out control tokens.
    std::string decode(const std::vector<int32_t>& ids, bool skip_special) const;

    int32_t n_vocab() const { return vocab_.size(); }
    int32_t bos() const { return vocab_.bos; }  // -1 if none
    int32_t eos() const { return vocab_.eos; }  // -1 if none
    bool add_bos() const { return vocab_.add_bos; }
    // eos, eot, eom, and tokens whose text is a known end-of-turn marker, as llama.cpp treats them.
    bool is_end_of_generation(int32_t id) const;
    bool is_control(int32_t id) const;
    const std::string& token_text(int32_t id) const;

private:
    void check_id(int32_t id) const;
    bool skipped_in_decode(int32_t id) const;

    Vocab vocab_;
    std::unique_ptr<Encoder> encoder_;
    SpecialTokens special_;
    std::vector<std::string> bytes_;  // token_bytes of every token
    std::vector<bool> end_of_generation_;
};

}  // namespace quanta::text
