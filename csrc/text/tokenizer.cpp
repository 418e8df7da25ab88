#include "text/tokenizer.h"

#include "base/error.h"
#include "text/bpe.h"
#include "text/spm.h"
#include "text/unicode.h"

namespace quanta::text {
namespace {

// Texts of end-of-turn tokens that llama.cpp treats as end of generation
// even where the file names another token as eos, and (last line) the
// fill-in-the-middle pad, repository and file-separator tokens, which end
// generation too (Qwen2.5-Coder).
constexpr const char* kEndOfTurnTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>",
    "<|end_of_text|>", "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", "<|return|>", "<|call|>",
    "<end_of_utterance>",
    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
};

std::string spm_bytes(const std::string& text, TokenType type) {
    const int byte = type == TokenType::Byte ? byte_token_value(text) : -1;
    if (byte >= 0) return std::string(1, (char)byte);
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
        if (text.compare(i, 3, "\xE2\x96\x81") == 0) {
            out += ' ';
            i += 2;
        } else {
            out += text[i];
        }
    }
    return out;
}

void append_byte_run(std::string& out, const std::string& run) {
    // Hugging Face's ByteFallback decoder: a run of byte tokens that is not valid
    // UTF-8 becomes one U+FFFD per byte.
    if (utf8_first_invalid(run) == std::string::npos) {
        out += run;
        return;
    }
    for (size_t i = 0; i < run.size(); ++i) out += "\xEF\xBF\xBD";
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const gguf::File& file) {
    return std::make_unique<Tokenizer>(read_vocab(file));
}

Tokenizer::Tokenizer(Vocab vocab) : vocab_(std::move(vocab)) {
    // Read as byte-level BPE a CLIP vocabulary would give wrong ids without a word of warning (no "</w>"
    // word ends, no lower-casing): its tokenizer is ClipTokenizer.
    if (vocab_.model == Vocab::Model::Clip)
        fail(ErrorKind::Model,
             vocab_.source + ": tokenizer.ggml.model is 'clip', a text encoder's tokenizer, not an LLM's");
    const bool spm = vocab_.model == Vocab::Model::Spm;
    if (spm) encoder_ = std::make_unique<SpmEncoder>(vocab_);
    else encoder_ = std::make_unique<BpeEncoder>(vocab_);

    const int32_t n = vocab_.size();
    bytes_.resize(n);
    end_of_generation_.assign(n, false);
    for (int32_t id = 0; id < n; ++id) {
        const std::string& text = vocab_.text[id];
        const TokenType type = vocab_.type[id];
        if (type == TokenType::Control || type == TokenType::Unknown) special_.add(text, id, true);
        if (type == TokenType::UserDefined && !is_gemma_space_token(vocab_, id)) special_.add(text, id, false);

        if (spm) bytes_[id] = spm_bytes(text, type);
        else if (!append_byte_level_bytes(text, bytes_[id])) bytes_[id] = text;  // text outside the alphabet is literal

        for (const char* t : kEndOfTurnTexts)
            if (text == t) end_of_generation_[id] = true;
    }
    for (int32_t id : {vocab_.eos, vocab_.eot, vocab_.eom})
        if (id >= 0) end_of_generation_[id] = true;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
    const size_t bad = utf8_first_invalid(text);
    QUANTA_CHECK_ARG(bad == std::string_view::npos, "text is not valid UTF-8 (byte " + std::to_string(bad) + ")");
    std::vector<int32_t> out;
    if (add_bos && vocab_.add_bos) out.push_back(vocab_.bos);
    // SentencePiece matches user-defined pieces inside its own text, after the "▁" prefix, so one at the very
    // start still gets a "▁" first. Control tokens it never matches in text: no prefix before those.
    const bool prefix_before_user_defined = vocab_.model == Vocab::Model::Spm && vocab_.add_space_prefix &&
                                            vocab_.space_prefix == Vocab::SpacePrefix::SentencePiece;
    size_t start = 0;
    for (size_t pos = 0; pos < text.size();) {
        size_t len = 0;
        const int32_t id = special_.match(text, pos, parse_special, &len);
        if (id < 0) {
            ++pos;
            continue;
        }
        if (pos > start) encoder_->encode(text.substr(start, pos - start), start == 0, out);
        else if (pos == 0 && prefix_before_user_defined && vocab_.type[id] == TokenType::UserDefined)
            encoder_->encode({}, true, out);  // the lone "▁" SentencePiece puts before a piece it matches itself
        out.push_back(id);
        pos += len;
        start = pos;
    }
    if (text.size() > start) encoder_->encode(text.substr(start), start == 0, out);
    return out;
}

void Tokenizer::check_id(int32_t id) const {
    QUANTA_CHECK_ARG(id >= 0 && id < vocab_.size(),
                     "token id " + std::to_string(id) + " is outside the " + std::to_string(vocab_.size()) + "-token vocabulary");
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
    check_id(id);
    return bytes_[id];
}

const std::string& Tokenizer::token_text(int32_t id) const {
    check_id(id);
    return vocab_.text[id];
}

bool Tokenizer::is_control(int32_t id) const {
    check_id(id);
    return vocab_.type[id] == TokenType::Control;
}

bool Tokenizer::is_end_of_generation(int32_t id) const {
    check_id(id);
    return end_of_generation_[id];
}

bool Tokenizer::skipped_in_decode(int32_t id) const {
    return vocab_.type[id] == TokenType::Control || vocab_.type[id] == TokenType::Unknown;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
    for (int32_t id : ids) check_id(id);
    const bool spm = vocab_.model == Vocab::Model::Spm;
    std::string raw, byte_run;
    for (int32_t id : ids) {
        if (skip_special && skipped_in_decode(id)) continue;
        if (spm && vocab_.type[id] == TokenType::Byte && bytes_[id].size() == 1) {
            byte_run += bytes_[id];
            continue;
        }
        append_byte_run(raw, byte_run);
        byte_run.clear();
        raw += bytes_[id];
    }
    append_byte_run(raw, byte_run);
    std::string out;
    utf8_append_lossy(out, raw, true);
    // Hugging Face's decoder takes back the space prefix that encoding adds.
    if (spm && vocab_.add_space_prefix && !out.empty() && out[0] == ' ') out.erase(0, 1);
    return out;
}

}  // namespace quanta::text
