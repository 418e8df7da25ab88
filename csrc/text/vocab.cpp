#include "text/vocab.h"

#include <algorithm>
#include <cstdint>

#include "base/error.h"
#include "gguf/reader.h"

namespace quanta::text {
namespace {

using gguf::Value;
using gguf::ValueType;

class Reader {
public:
    explicit Reader(const gguf::File& f) : f_(f) {}

    [[noreturn]] void bad(const std::string& key, const std::string& what) const {
        fail(ErrorKind::Model, f_.label() + ": tokenizer metadata '" + key + "' " + what);
    }

    const Value* array(const std::string& key, bool required) const {
        const Value* v = f_.find(key);
        if (!v && required) bad(key, "is missing");
        if (v && !v->is_array()) bad(key, "is not an array");
        return v;
    }

    std::vector<std::string> strings(const std::string& key, bool required) const {
        const Value* v = array(key, required);
        if (!v) return {};
        if (v->elem != ValueType::String) bad(key, "is not an array of strings");
        return v->strings;
    }

    // A numeric array that, when present, has one entry per token.
    const Value* per_token(const std::string& key, size_t n_tokens, bool want_float) const {
        const Value* v = array(key, false);
        if (!v) return nullptr;
        const bool ok = want_float ? gguf::is_float(v->elem) : gguf::is_integer(v->elem);
        if (!ok) bad(key, want_float ? "is not an array of floats" : "is not an array of integers");
        if (v->count != n_tokens)
            bad(key, "has " + std::to_string(v->count) + " entries for " + std::to_string(n_tokens) + " tokens");
        return v;
    }

    std::string string(const std::string& key, const std::string& fallback) const {
        const Value* v = f_.find(key);
        if (!v) return fallback;
        if (v->type != ValueType::String) bad(key, "is not a string");
        return v->str;
    }

    bool flag(const std::string& key, bool fallback) const {
        const Value* v = f_.find(key);
        if (!v) return fallback;
        if (v->is_array() || (v->type != ValueType::Bool && !gguf::is_integer(v->type))) bad(key, "is not a bool");
        return v->int_at() != 0;
    }

    int32_t token_id(const std::string& key, int32_t n_tokens) const {
        const Value* v = f_.find(key);
        if (!v) return -1;
        if (v->is_array() || !gguf::is_integer(v->type)) bad(key, "is not an integer");
        const int64_t id = v->type == ValueType::U64 ? (int64_t)std::min<uint64_t>(v->uint_at(), INT64_MAX) : v->int_at();
        if (id < 0 || id >= n_tokens)
            bad(key, "is " + std::to_string(id) + ", outside the " + std::to_string(n_tokens) + "-token vocabulary");
        return (int32_t)id;
    }

private:
    const gguf::File& f_;
};

}  // namespace

Vocab read_vocab(const gguf::File& file) {
    const Reader r(file);
    Vocab v;
    const std::string model_key = "tokenizer.ggml.model";
    if (!file.find(model_key)) r.bad(model_key, "is missing");
    const std::string model = r.string(model_key, "");
    if (model == "llama") v.model = Vocab::Model::Spm;
    else if (model == "gpt2") v.model = Vocab::Model::Bpe;
    else if (model == "clip") v.model = Vocab::Model::Clip;
    else r.bad(model_key, "names tokenizer '" + model + "'; supported: llama (SentencePiece), gpt2 (byte-level BPE), "
                                                        "clip (CLIP's BPE)");

    v.source = file.label();
    v.architecture = r.string("general.architecture", "");
    v.pre = r.string("tokenizer.ggml.pre", "default");
    v.text = r.strings("tokenizer.ggml.tokens", true);
    if (v.text.empty()) r.bad("tokenizer.ggml.tokens", "is empty");
    if (v.text.size() > (size_t)INT32_MAX) r.bad("tokenizer.ggml.tokens", "has too many tokens");
    const int32_t n = v.size();

    v.type.assign(n, TokenType::Normal);
    if (const Value* types = r.per_token("tokenizer.ggml.token_type", n, false)) {
        for (int32_t i = 0; i < n; ++i) {
            const int64_t t = types->int_at(i);
            if (t < 0 || t > (int64_t)TokenType::Byte)
                r.bad("tokenizer.ggml.token_type", "gives token " + std::to_string(i) + " the unknown type " + std::to_string(t));
            v.type[i] = (TokenType)t;
        }
    }
    v.score.assign(n, 0.0f);
    if (const Value* scores = r.per_token("tokenizer.ggml.scores", n, true))
        for (int32_t i = 0; i < n; ++i) v.score[i] = (float)scores->float_at(i);

    if (v.model != Vocab::Model::Spm) v.merges = r.strings("tokenizer.ggml.merges", true);

    v.bos = r.token_id("tokenizer.ggml.bos_token_id", n);
    v.eos = r.token_id("tokenizer.ggml.eos_token_id", n);
    v.eot = r.token_id("tokenizer.ggml.eot_token_id", n);
    v.eom = r.token_id("tokenizer.ggml.eom_token_id", n);
    v.unk = r.token_id("tokenizer.ggml.unknown_token_id", n);
    v.pad = r.token_id("tokenizer.ggml.padding_token_id", n);
    // llama.cpp's defaults: SentencePiece vocabularies add BOS and a space prefix unless told otherwise.
    v.add_bos = r.flag("tokenizer.ggml.add_bos_token", v.model == Vocab::Model::Spm);
    v.add_space_prefix = r.flag("tokenizer.ggml.add_space_prefix", v.model == Vocab::Model::Spm);
    const std::string scheme_key = "tokenizer.quanta.space_prefix";
    const std::string scheme = r.string(scheme_key, "metaspace");
    if (scheme == "sentencepiece") v.space_prefix = Vocab::SpacePrefix::SentencePiece;
    else if (scheme != "metaspace") r.bad(scheme_key, "is '" + scheme + "'; known: metaspace, sentencepiece");
    if (v.add_bos && v.bos < 0) r.bad("tokenizer.ggml.bos_token_id", "is missing but add_bos_token asks for a BOS token");
    return v;
}

}  // namespace quanta::text
