#include "text/bpe.h"

#include "base/error.h"
#include "text/normalize.h"
#include "text/unicode.h"

namespace quanta::text {
namespace {

constexpr bool printable_byte(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

// byte -> character and back, computed once at compile time.
struct ByteAlphabet {
    char32_t to_char[256] = {};
    int16_t to_byte[256 + 68] = {};  // every character of the alphabet is below U+0144
    constexpr ByteAlphabet() {
        char32_t next = 256;
        for (int b = 0; b < 256; ++b) to_char[b] = printable_byte(b) ? (char32_t)b : next++;
        for (int16_t& x : to_byte) x = -1;
        for (int b = 0; b < 256; ++b) to_byte[to_char[b]] = (int16_t)b;
    }
};
constexpr ByteAlphabet kAlphabet;

struct Pretokenizer {
    SplitRule rule;
    bool ignore_merges;
    bool nfc;
};

// tokenizer.ggml.pre values and the split rule each names (llama.cpp's names).
Pretokenizer pretokenizer_for(const std::string& pre, const std::string& label) {
    // Qwen2's own tokenizer (Qwen2Tokenizer, tokenizer.json) normalizes to NFC first; llama.cpp and
    // transformers' GGUF loader leave that out, and differ from it on text that is not NFC.
    if (pre == "qwen2") return {SplitRule::Qwen2, false, true};
    for (const char* name : {"deepseek-r1-qwen", "megrez"})
        if (pre == name) return {SplitRule::Qwen2, false, false};
    // llama.cpp emits a piece that is already a token without merging for these (HF's ignore_merges).
    for (const char* name : {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"})
        if (pre == name) return {SplitRule::Llama3, true, false};
    for (const char* name : {"dbrx", "smaug-bpe"})
        if (pre == name) return {SplitRule::Llama3, false, false};
    for (const char* name : {"default", "gpt-2", "phi-2", "roberta-bpe"})
        if (pre == name) return {SplitRule::Gpt2, false, false};
    fail(ErrorKind::Model, label + ": tokenizer metadata 'tokenizer.ggml.pre' names the unknown pre-tokenizer '" + pre +
                               "'; supported: qwen2, llama3 (llama-bpe), default (gpt-2) and their aliases");
}

uint64_t pair_key(int32_t left, int32_t right) { return ((uint64_t)(uint32_t)left << 32) | (uint32_t)right; }

}  // namespace

char32_t byte_to_char(uint8_t b) { return kAlphabet.to_char[b]; }

bool append_byte_level_bytes(std::string_view text, std::string& out) {
    const size_t start = out.size();
    for (size_t i = 0; i < text.size();) {
        size_t len = utf8_sequence_length(text, i);
        const char32_t c = len ? utf8_decode(text, i, &len) : 0;
        const int b = len && c < 256 + 68 ? kAlphabet.to_byte[c] : -1;
        if (b < 0) {
            out.resize(start);
            return false;
        }
        out += (char)b;
        i += len;
    }
    return true;
}

BpeMerges::BpeMerges(const Vocab& vocab) {
    index_.reserve(vocab.text.size());
    for (int32_t id = 0; id < vocab.size(); ++id) index_[vocab.text[id]] = id;  // a later duplicate wins, as in HF

    merges_.reserve(vocab.merges.size());
    std::string joined;
    for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
        const std::string& m = vocab.merges[rank];
        const size_t space = m.find(' ');
        auto bad = [&](const std::string& what) {
            fail(ErrorKind::Model, vocab.source + ": tokenizer metadata 'tokenizer.ggml.merges' entry " +
                                       std::to_string(rank) + " ('" + m + "') " + what);
        };
        if (space == std::string::npos || space == 0 || space + 1 == m.size() || m.find(' ', space + 1) != std::string::npos)
            bad("is not two tokens separated by one space");
        joined.assign(m, 0, space);
        joined.append(m, space + 1);
        const int32_t left = find(std::string_view(m).substr(0, space));
        const int32_t right = find(std::string_view(m).substr(space + 1));
        const int32_t merged = find(joined);
        if (left < 0 || right < 0 || merged < 0) bad("names a token that is not in the vocabulary");
        // A repeated pair takes its later rank, as Hugging Face's BPE does.
        merges_[pair_key(left, right)] = {(int32_t)rank, merged};
    }
}

int32_t BpeMerges::find(std::string_view text) const {
    const auto it = index_.find(text);
    return it == index_.end() ? -1 : it->second;
}

const BpeMerges::Merge* BpeMerges::find_merge(int32_t left, int32_t right) const {
    const auto it = merges_.find(pair_key(left, right));
    return it == merges_.end() ? nullptr : &it->second;
}

// Queues the merge of the symbol at `left` with the one after it, if the pair has one.
void BpeMerges::consider(Scratch& s, int32_t left) const {
    const int32_t right = s.symbols[left].next;
    if (right < 0) return;
    if (const Merge* m = find_merge(s.symbols[left].id, s.symbols[right].id))
        s.queue.push({m->rank, left, right, s.symbols[left].id, s.symbols[right].id, m->id});
}

void BpeMerges::merge(const std::vector<int32_t>& word, Scratch& s, std::vector<int32_t>& out) const {
    s.symbols.clear();
    for (int32_t id : word) {
        const int32_t i = (int32_t)s.symbols.size();
        s.symbols.push_back({id, i - 1, -1});
        if (i > 0) s.symbols[i - 1].next = i;
    }
    for (int32_t i = 0; i + 1 < (int32_t)s.symbols.size(); ++i) consider(s, i);

    while (!s.queue.empty()) {
        const Scratch::Candidate c = s.queue.top();
        s.queue.pop();
        Scratch::Symbol& l = s.symbols[c.left];
        // Stale when either side was merged since it was queued.
        if (l.id != c.left_id || l.next != c.right || s.symbols[c.right].id != c.right_id) continue;
        Scratch::Symbol& r = s.symbols[c.right];
        l.id = c.merged;
        l.next = r.next;
        if (r.next >= 0) s.symbols[r.next].prev = c.left;
        r.id = -1;
        if (l.prev >= 0) consider(s, l.prev);
        consider(s, c.left);
    }
    for (int32_t i = s.symbols.empty() ? -1 : 0; i >= 0; i = s.symbols[i].next) out.push_back(s.symbols[i].id);
}

BpeEncoder::BpeEncoder(const Vocab& vocab) : merges_(vocab) {
    const Pretokenizer p = pretokenizer_for(vocab.pre, vocab.source);
    rule_ = p.rule;
    ignore_merges_ = p.ignore_merges;
    nfc_ = p.nfc;
    for (int b = 0; b < 256; ++b) {
        std::string c;
        utf8_append(c, byte_to_char((uint8_t)b));
        byte_token_[b] = merges_.find(c);
    }
}

struct BpeEncoder::Scratch {
    BpeMerges::Scratch merge;
    std::vector<int32_t> word;
    std::vector<std::string_view> words;
    std::string spelled;
};

void BpeEncoder::encode(std::string_view fragment, bool, std::vector<int32_t>& out) const {
    Scratch s;
    std::string normalized;
    if (nfc_ && may_need_nfc(fragment)) {
        normalized = to_nfc(fragment);
        fragment = normalized;
    }
    split_words(fragment, rule_, s.words);
    for (std::string_view w : s.words) encode_word(w, s, out);
}

void BpeEncoder::encode_word(std::string_view word, Scratch& s, std::vector<int32_t>& out) const {
    if (ignore_merges_) {
        s.spelled.clear();
        for (unsigned char b : word) utf8_append(s.spelled, byte_to_char(b));
        const int32_t whole = merges_.find(s.spelled);
        if (whole >= 0) {
            out.push_back(whole);
            return;
        }
    }
    // A byte whose character is not a token is dropped, as Hugging Face's BPE does without an unknown token.
    s.word.clear();
    for (unsigned char b : word)
        if (byte_token_[b] >= 0) s.word.push_back(byte_token_[b]);
    merges_.merge(s.word, s.merge, out);
}

}  // namespace quanta::text
