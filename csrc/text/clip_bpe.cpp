// CLIPTokenizer of transformers 5, which builds a tokenizers pipeline (its tokenization_clip.py):
//   added tokens: BOS, EOS and pad are special tokens, cut out of the raw text before anything else;
//   normalizer:   NFC, then Replace(\s+ -> " "), then Lowercase (no ftfy, no BERT-style clean-up: accents
//                 stay, a run of CJK letters is one word);
//   pre-tokenizer: Split on CLIP's regex, whitespace removed, then ByteLevel (GPT-2's regex and byte alphabet);
//   model:        BPE with "</w>" on each word's last symbol;
//   post-process: BOS + ids + EOS; diffusers asks for truncation and padding to 77.
// What it does that one might not expect, all matched here and tested against it:
//   - SD2's pad token "!" is a special token too, so every "!" in a prompt becomes id 0 (the bare "!"), never
//     "!</w>" (256) or "!!</w>" (748): "hello!!" is hello</w> ! ! with that tokenizer, hello</w> !!</w> with SD1's.
//   - A special token is only recognised as written: "<|ENDOFTEXT|>" is lower-cased into the token's text after
//     the cut, and then spelled as the words "<|" "endoftext" "|>".
//   - Lower-casing is Unicode's full mapping one code point at a time: "İ" is "i" + U+0307 (two words, the mark
//     is not a letter), and a final "Σ" is "σ", not "ς".
//   - Digits are one word each ("2024" is four words, each with its "</w>").
// Where it still differs: tokenizers' NFC has old tables (its unicode-normalization-alignments crate), which
// give class 0 to the 51 combining marks Unicode 10 to 14 added (U+0C3C, U+1AC7, ...); around those marks it
// composes differently from Unicode 14's NFC, which to_nfc follows. No other code point differs: checked one
// by one over all of Unicode 14 for the normalizers, the pre-tokenizer's classes and lower-casing.
#include "text/clip_bpe.h"

#include <string>

#include "base/error.h"
#include "text/normalize.h"
#include "text/pretokenize.h"
#include "text/unicode.h"

namespace quanta::text {
namespace {

constexpr std::string_view kWordEnd = "</w>";

// Replace(\s+ -> " "): every run of White_Space code points becomes one space.
std::string collapse_whitespace(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    bool in_space = false;
    for (size_t i = 0; i < text.size();) {
        size_t len = 0;
        const char32_t c = utf8_decode(text, i, &len);
        const bool space = code_point_class(c) & kWhitespace;
        if (!space) out.append(text, i, len);
        else if (!in_space) out += ' ';
        in_space = space;
        i += len;
    }
    return out;
}

std::string normalize(std::string_view fragment) {
    return to_lowercase(collapse_whitespace(may_need_nfc(fragment) ? to_nfc(fragment) : std::string(fragment)));
}

// The token a byte-level symbol (with or without "</w>") names; a CLIP vocabulary has all 512.
int32_t symbol_token(const BpeMerges& merges, const Vocab& vocab, uint8_t byte, bool word_end) {
    std::string text;
    utf8_append(text, byte_to_char(byte));
    if (word_end) text += kWordEnd;
    const int32_t id = merges.find(text);
    if (id < 0)
        fail(ErrorKind::Model, vocab.source + ": tokenizer metadata 'tokenizer.ggml.tokens' lacks the symbol '" + text +
                                   "' of byte " + std::to_string(byte) + ", which a CLIP vocabulary has");
    return id;
}

void require_id(const Vocab& vocab, int32_t id, const char* key) {
    if (id < 0) fail(ErrorKind::Model, vocab.source + ": tokenizer metadata 'tokenizer.ggml." + key + "' is missing");
}

}  // namespace

std::unique_ptr<ClipTokenizer> ClipTokenizer::from_gguf(const gguf::File& file) {
    return std::make_unique<ClipTokenizer>(read_vocab(file));
}

ClipTokenizer::ClipTokenizer(Vocab vocab) : vocab_(std::move(vocab)), merges_(vocab_) {
    if (vocab_.model != Vocab::Model::Clip)
        fail(ErrorKind::Model, vocab_.source + ": tokenizer metadata 'tokenizer.ggml.model' is not 'clip'");
    require_id(vocab_, vocab_.bos, "bos_token_id");
    require_id(vocab_, vocab_.eos, "eos_token_id");
    require_id(vocab_, vocab_.pad, "padding_token_id");
    for (int32_t id : {vocab_.bos, vocab_.eos, vocab_.pad}) special_.add(vocab_.text[id], id, true);
    for (int b = 0; b < 256; ++b) {
        byte_token_[b] = symbol_token(merges_, vocab_, (uint8_t)b, false);
        word_end_token_[b] = symbol_token(merges_, vocab_, (uint8_t)b, true);
    }
}

std::vector<int32_t> ClipTokenizer::encode(std::string_view text, int32_t context_length, bool pad) const {
    const size_t bad = utf8_first_invalid(text);
    QUANTA_CHECK_ARG(bad == std::string_view::npos, "text is not valid UTF-8 (byte " + std::to_string(bad) + ")");
    QUANTA_CHECK_ARG(context_length >= 2, "context length " + std::to_string(context_length) +
                                              " leaves no room for the BOS and EOS tokens");
    std::vector<int32_t> ids;
    size_t start = 0;
    for (size_t pos = 0; pos < text.size();) {
        size_t len = 0;
        const int32_t id = special_.match(text, pos, true, &len);
        if (id < 0) {
            ++pos;
            continue;
        }
        encode_fragment(text.substr(start, pos - start), ids);
        ids.push_back(id);
        pos += len;
        start = pos;
    }
    encode_fragment(text.substr(start), ids);

    // Truncation keeps the first context_length - 2 ids, so that EOS still ends the prompt.
    if (ids.size() > (size_t)context_length - 2) ids.resize(context_length - 2);
    ids.insert(ids.begin(), vocab_.bos);
    ids.push_back(vocab_.eos);
    if (pad) ids.resize(context_length, vocab_.pad);
    return ids;
}

void ClipTokenizer::encode_fragment(std::string_view fragment, std::vector<int32_t>& out) const {
    if (fragment.empty()) return;
    const std::string text = normalize(fragment);
    std::vector<std::string_view> pieces, words;
    split_words(text, SplitRule::Clip, pieces);
    BpeMerges::Scratch scratch;
    for (std::string_view piece : pieces) {
        if (piece == " ") continue;  // whitespace, one space after collapse_whitespace, separates words only
        // ByteLevel's GPT-2 regex runs over each piece as in Hugging Face; it only splits a piece that is a
        // special token's text ("<|endoftext|>" into "<|" "endoftext" "|>"), the others are already its words.
        words.clear();
        split_words(piece, SplitRule::Gpt2, words);
        for (std::string_view w : words) encode_word(w, scratch, out);
    }
}

void ClipTokenizer::encode_word(std::string_view word, BpeMerges::Scratch& s, std::vector<int32_t>& out) const {
    std::vector<int32_t> symbols;
    symbols.reserve(word.size());
    for (size_t i = 0; i + 1 < word.size(); ++i) symbols.push_back(byte_token_[(unsigned char)word[i]]);
    symbols.push_back(word_end_token_[(unsigned char)word.back()]);
    merges_.merge(symbols, s, out);
}

}  // namespace quanta::text
