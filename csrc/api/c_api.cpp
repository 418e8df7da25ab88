// The C API over the C++ core: every entry point catches C++ exceptions at
// the boundary and turns them into a status code plus a thread-local message.
// The LLM handles wrap the engine's objects and add what C callers need and
// the engine leaves to its driver: a lock that serialises evaluations on a
// model's backend, detection of overlapping calls on one context, logits kept
// for the caller, and cancellation of a running generation.
#include "api/quanta.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "backends/registry.h"
#include "engine/generator.h"
#include "gguf/reader.h"
#include "models/llm.h"
#include "quant/dequantize.h"
#include "sample/sampler.h"
#include "text/tokenizer.h"

struct quanta_gguf {
    std::shared_ptr<quanta::gguf::File> file;
};

namespace {

// What a model handle and its contexts share; contexts hold it too, so the
// model handle may be freed first.
struct ModelCore {
    std::shared_ptr<quanta::models::LlmModel> llm;
    std::string device;  // llm's backend name, kept for quanta_model_device
    std::unique_ptr<quanta::text::Tokenizer> tokenizer;
    // A backend runs one graph at a time (its thread pool, scratch and
    // work memory are shared by all graphs), so contexts of this model take
    // turns: held around every evaluation and graph or cache (de)allocation.
    std::mutex compute;
};

// A context's generate state, for quanta_cancel.
enum RunState : int { kIdle = 0, kRunning = 1, kCancelRequested = 2 };

}  // namespace

struct quanta_model {
    std::shared_ptr<ModelCore> core;
};

struct quanta_context {
    std::shared_ptr<ModelCore> model;
    std::unique_ptr<quanta::models::LlmContext> ctx;
    std::vector<float> logits;  // n_logits rows of n_vocab, of the last evaluation
    int32_t n_logits = 0;
    std::atomic<bool> busy{false};
    std::atomic<int> run_state{kIdle};
};

struct quanta_sampler {
    quanta::sample::Sampler sampler;
};

namespace {

thread_local std::string g_last_error;

quanta_status status_for(quanta::ErrorKind kind) {
    switch (kind) {
        case quanta::ErrorKind::InvalidArgument: return QUANTA_ERR_INVALID_ARGUMENT;
        case quanta::ErrorKind::Io: return QUANTA_ERR_IO;
        case quanta::ErrorKind::Format: return QUANTA_ERR_FORMAT;
        case quanta::ErrorKind::Model: return QUANTA_ERR_MODEL;
        case quanta::ErrorKind::Unsupported: return QUANTA_ERR_UNSUPPORTED;
        case quanta::ErrorKind::OutOfMemory: return QUANTA_ERR_OUT_OF_MEMORY;
        case quanta::ErrorKind::ContextOverflow: return QUANTA_ERR_CONTEXT_OVERFLOW;
        case quanta::ErrorKind::Internal: return QUANTA_ERR_INTERNAL;
    }
    return QUANTA_ERR_INTERNAL;
}

quanta_status set_error(quanta_status status, const std::string& message) {
    g_last_error = message;
    return status;
}

// Runs `body`, mapping any exception to a status and message.
template <typename F>
quanta_status guarded(F&& body) {
    try {
        body();
        return QUANTA_OK;
    } catch (const quanta::Error& e) {
        return set_error(status_for(e.kind()), e.what());
    } catch (const std::bad_alloc&) {
        return set_error(QUANTA_ERR_OUT_OF_MEMORY, "out of memory");
    } catch (const std::exception& e) {
        return set_error(QUANTA_ERR_INTERNAL, e.what());
    }
}

#define QUANTA_REQUIRE(cond, message) \
    if (!(cond)) return set_error(QUANTA_ERR_INVALID_ARGUMENT, message)

const quanta::gguf::Value* find_value(const quanta_gguf* f, const char* key) {
    const quanta::gguf::Value* v = f->file->find(key);
    if (!v) quanta::fail(quanta::ErrorKind::InvalidArgument, std::string("no metadata key '") + key + "'");
    return v;
}

// Marks a context busy for one call; a call that overlaps another on the same
// context fails instead of racing with it.
class BusyScope {
public:
    explicit BusyScope(quanta_context* c) : c_(c) {
        bool expected = false;
        if (!c_->busy.compare_exchange_strong(expected, true))
            quanta::fail(quanta::ErrorKind::InvalidArgument,
                         "the context is busy: another call on it is running (a context runs one call at a time)");
    }
    ~BusyScope() { c_->busy.store(false); }
    BusyScope(const BusyScope&) = delete;
    BusyScope& operator=(const BusyScope&) = delete;

private:
    quanta_context* c_;
};

// Marks a generate as running for its duration, so quanta_cancel can reach it.
class RunScope {
public:
    explicit RunScope(quanta_context* c) : c_(c) { c_->run_state.store(kRunning); }
    ~RunScope() { c_->run_state.store(kIdle); }
    bool cancelled() const { return c_->run_state.load() == kCancelRequested; }
    RunScope(const RunScope&) = delete;
    RunScope& operator=(const RunScope&) = delete;

private:
    quanta_context* c_;
};

quanta::sample::SamplerParams sampler_params(const quanta_sampler_params& p) {
    quanta::sample::SamplerParams s;
    s.temperature = p.temperature;
    s.top_k = p.top_k;
    s.top_p = p.top_p;
    s.min_p = p.min_p;
    s.repeat_penalty = p.repeat_penalty;
    s.presence_penalty = p.presence_penalty;
    s.frequency_penalty = p.frequency_penalty;
    s.penalty_last_n = p.penalty_last_n;
    if (p.seed == QUANTA_SEED_RANDOM) {
        std::random_device rd;
        s.seed = ((uint64_t)rd() << 32) ^ (uint64_t)rd();
    } else {
        s.seed = p.seed;
    }
    return s;
}

// Row i of the kept logits (negative: from the end).
const float* logits_row(const quanta_context* c, int32_t i) {
    QUANTA_CHECK_ARG(c->n_logits > 0, "no logits: the last evaluation kept none (or failed, or was a generate)");
    const int32_t row = i < 0 ? c->n_logits + i : i;
    QUANTA_CHECK_ARG(row >= 0 && row < c->n_logits, "logits index " + std::to_string(i) + " is out of range (" +
                                                        std::to_string(c->n_logits) + " kept)");
    return c->logits.data() + (size_t)row * (size_t)c->ctx->n_vocab();
}

// Runs ctx.decode for the caller and keeps the flagged rows' logits.
void decode_keeping_logits(quanta_context* c, const std::vector<quanta::models::BatchToken>& batch) {
    size_t rows = 0;
    for (const auto& b : batch) rows += b.logits ? 1 : 0;
    c->n_logits = 0;
    c->logits.resize(rows * (size_t)c->ctx->n_vocab());
    std::lock_guard<std::mutex> lock(c->model->compute);
    c->ctx->decode(batch, rows ? c->logits.data() : nullptr);
    c->n_logits = (int32_t)rows;
}

}  // namespace

extern "C" {

const char* quanta_version(void) { return QUANTA_VERSION; }
const char* quanta_last_error(void) { return g_last_error.c_str(); }

const char* quanta_status_name(quanta_status status) {
    switch (status) {
        case QUANTA_OK: return "ok";
        case QUANTA_ERR_INVALID_ARGUMENT: return "invalid argument";
        case QUANTA_ERR_IO: return "i/o error";
        case QUANTA_ERR_FORMAT: return "format error";
        case QUANTA_ERR_MODEL: return "model error";
        case QUANTA_ERR_UNSUPPORTED: return "unsupported";
        case QUANTA_ERR_OUT_OF_MEMORY: return "out of memory";
        case QUANTA_ERR_INTERNAL: return "internal error";
        case QUANTA_ERR_CONTEXT_OVERFLOW: return "context overflow";
        case QUANTA_ERR_CANCELLED: return "cancelled";
        case QUANTA_ERR_BUFFER_TOO_SMALL: return "buffer too small";
    }
    return "unknown status";
}

const char* quanta_cpu_level(void) {
    const char* name = "scalar";
    if (guarded([&] { name = quanta::backends::cpu_level(); }) != QUANTA_OK) return "scalar";
    return name;
}

quanta_status quanta_set_cpu_level(const char* level) {
    QUANTA_REQUIRE(level, "level is NULL");
    return guarded([&] { quanta::backends::set_cpu_level(level); });
}

quanta_status quanta_gguf_open(const char* path, quanta_gguf** out) {
    QUANTA_REQUIRE(path && out, "path and out must not be NULL");
    *out = nullptr;
    return guarded([&] { *out = new quanta_gguf{quanta::gguf::File::open(path)}; });
}

void quanta_gguf_close(quanta_gguf* file) { delete file; }

uint32_t quanta_gguf_version(const quanta_gguf* file) { return file ? file->file->version() : 0; }

int64_t quanta_gguf_n_metadata(const quanta_gguf* file) {
    return file ? (int64_t)file->file->metadata().size() : 0;
}

const char* quanta_gguf_metadata_key(const quanta_gguf* file, int64_t i) {
    if (!file || i < 0 || i >= (int64_t)file->file->metadata().size()) return nullptr;
    return file->file->metadata()[(size_t)i].key.c_str();
}

int64_t quanta_gguf_find_metadata(const quanta_gguf* file, const char* key) {
    if (!file || !key) return -1;
    const auto& kv = file->file->metadata();
    for (size_t i = 0; i < kv.size(); ++i)
        if (kv[i].key == key) return (int64_t)i;
    return -1;
}

quanta_status quanta_gguf_metadata_type(const quanta_gguf* file, int64_t i, quanta_value_type* type,
                                        quanta_value_type* elem_type, uint64_t* count) {
    QUANTA_REQUIRE(file && type, "file and type must not be NULL");
    QUANTA_REQUIRE(i >= 0 && i < (int64_t)file->file->metadata().size(), "metadata index out of range");
    const quanta::gguf::Value& v = file->file->metadata()[(size_t)i].value;
    *type = static_cast<quanta_value_type>(v.type);
    if (elem_type) *elem_type = static_cast<quanta_value_type>(v.is_array() ? v.elem : v.type);
    if (count) *count = v.is_array() ? v.count : 1;
    return QUANTA_OK;
}

quanta_status quanta_gguf_get_string(const quanta_gguf* file, const char* key, const char** out) {
    QUANTA_REQUIRE(file && key && out, "file, key and out must not be NULL");
    return guarded([&] {
        const quanta::gguf::Value* v = find_value(file, key);
        QUANTA_CHECK_ARG(v->type == quanta::gguf::ValueType::String, std::string("'") + key + "' is not a string");
        *out = v->str.c_str();
    });
}

quanta_status quanta_gguf_get_int(const quanta_gguf* file, const char* key, int64_t* out) {
    QUANTA_REQUIRE(file && key && out, "file, key and out must not be NULL");
    return guarded([&] {
        const quanta::gguf::Value* v = find_value(file, key);
        QUANTA_CHECK_ARG(!v->is_array() && (quanta::gguf::is_integer(v->type) || v->type == quanta::gguf::ValueType::Bool),
                         std::string("'") + key + "' is not an integer");
        *out = v->int_at();
    });
}

quanta_status quanta_gguf_get_float(const quanta_gguf* file, const char* key, double* out) {
    QUANTA_REQUIRE(file && key && out, "file, key and out must not be NULL");
    return guarded([&] {
        const quanta::gguf::Value* v = find_value(file, key);
        QUANTA_CHECK_ARG(!v->is_array() && quanta::gguf::value_type_size(v->type) != 0,
                         std::string("'") + key + "' is not a number");
        *out = v->float_at();
    });
}

quanta_status quanta_gguf_get_array_string(const quanta_gguf* file, const char* key, uint64_t index,
                                           const char** out) {
    QUANTA_REQUIRE(file && key && out, "file, key and out must not be NULL");
    return guarded([&] {
        const quanta::gguf::Value* v = find_value(file, key);
        QUANTA_CHECK_ARG(v->is_array() && v->elem == quanta::gguf::ValueType::String,
                         std::string("'") + key + "' is not a string array");
        QUANTA_CHECK_ARG(index < v->count, "array index out of range");
        *out = v->strings[(size_t)index].c_str();
    });
}

int64_t quanta_gguf_n_tensors(const quanta_gguf* file) { return file ? (int64_t)file->file->tensors().size() : 0; }

int64_t quanta_gguf_find_tensor(const quanta_gguf* file, const char* name) {
    if (!file || !name) return -1;
    const quanta::gguf::TensorInfo* t = file->file->find_tensor(name);
    return t ? (int64_t)(t - file->file->tensors().data()) : -1;
}

quanta_status quanta_gguf_tensor_info(const quanta_gguf* file, int64_t i, quanta_tensor_info* out) {
    QUANTA_REQUIRE(file && out, "file and out must not be NULL");
    QUANTA_REQUIRE(i >= 0 && i < (int64_t)file->file->tensors().size(), "tensor index out of range");
    const quanta::gguf::TensorInfo& t = file->file->tensors()[(size_t)i];
    out->name = t.name.c_str();
    out->type = static_cast<uint32_t>(t.type);
    out->type_name = quanta::type_name(t.type);
    out->n_dims = t.n_dims;
    for (int d = 0; d < 4; ++d) out->ne[d] = t.ne[d];
    out->offset = t.offset;
    out->nbytes = t.nbytes;
    return QUANTA_OK;
}

quanta_status quanta_gguf_tensor_to_f32(const quanta_gguf* file, int64_t i, float* dst, uint64_t n_floats) {
    QUANTA_REQUIRE(file && dst, "file and dst must not be NULL");
    QUANTA_REQUIRE(i >= 0 && i < (int64_t)file->file->tensors().size(), "tensor index out of range");
    const quanta::gguf::TensorInfo& t = file->file->tensors()[(size_t)i];
    QUANTA_REQUIRE(n_floats >= (uint64_t)t.n_elements(), "destination is smaller than the tensor");
    return guarded([&] {
        const size_t row = quanta::row_bytes(t.type, t.ne[0]);
        for (int64_t r = 0; r < t.n_rows(); ++r)
            quanta::dequantize_row(t.type, t.data + (size_t)r * row, dst + r * t.ne[0], t.ne[0]);
    });
}

// ---- LLMs -------------------------------------------------------------------

quanta_status quanta_model_load_on(const char* path, const char* device, int32_t n_threads, quanta_model** out) {
    QUANTA_REQUIRE(out, "out must not be NULL");
    *out = nullptr;
    QUANTA_REQUIRE(path, "path must not be NULL");
    const std::string where = device ? device : "auto";
    QUANTA_REQUIRE(where == "auto" || where == "cpu" || where == "cuda", "device must be auto, cpu or cuda");
    return guarded([&] {
        auto core = std::make_shared<ModelCore>();
        std::shared_ptr<quanta::gguf::File> file = quanta::gguf::File::open(path);
        quanta::BackendOptions options;
        options.n_threads = n_threads;
        // The model first, as quanta.LLM: a file that is no LLM is named by its architecture, not its tokenizer.
        core->llm = quanta::backends::load_on(where, options, [&](std::shared_ptr<quanta::Backend> b) {
            return quanta::models::LlmModel::load_checked(file, std::move(b));
        });
        core->device = core->llm->backend->device();
        core->tokenizer = quanta::text::Tokenizer::from_gguf(*file);
        *out = new quanta_model{std::move(core)};
    });
}

quanta_status quanta_model_load(const char* path, int32_t n_threads, quanta_model** out) {
    return quanta_model_load_on(path, "auto", n_threads, out);
}

void quanta_model_free(quanta_model* model) { delete model; }

const char* quanta_model_device(const quanta_model* model) { return model ? model->core->device.c_str() : nullptr; }
const char* quanta_model_device_note(const quanta_model* model) {
    return model ? model->core->llm->device_note.c_str() : "";
}

int32_t quanta_model_n_vocab(const quanta_model* model) { return model ? model->core->llm->config.n_vocab : 0; }
int32_t quanta_model_n_ctx_train(const quanta_model* model) { return model ? model->core->llm->config.n_ctx_train : 0; }
int32_t quanta_model_n_threads(const quanta_model* model) { return model ? model->core->llm->backend->n_threads() : 0; }
int32_t quanta_model_bos(const quanta_model* model) { return model ? model->core->tokenizer->bos() : -1; }
int32_t quanta_model_eos(const quanta_model* model) { return model ? model->core->tokenizer->eos() : -1; }

int quanta_model_is_end_of_generation(const quanta_model* model, int32_t token) {
    if (!model || token < 0 || token >= model->core->tokenizer->n_vocab()) return 0;
    return model->core->tokenizer->is_end_of_generation(token) ? 1 : 0;
}

quanta_status quanta_tokenize(const quanta_model* model, const char* text, size_t text_len, int add_bos,
                              int parse_special, int32_t* tokens, size_t capacity, size_t* n_tokens) {
    QUANTA_REQUIRE(model && n_tokens, "model and n_tokens must not be NULL");
    QUANTA_REQUIRE(text || text_len == 0, "text is NULL but text_len is not 0");
    QUANTA_REQUIRE(tokens || capacity == 0, "tokens is NULL but capacity is not 0");
    std::vector<int32_t> ids;
    const quanta_status status = guarded([&] {
        ids = model->core->tokenizer->encode(std::string_view(text ? text : "", text_len), add_bos != 0,
                                             parse_special != 0);
    });
    if (status != QUANTA_OK) return status;
    *n_tokens = ids.size();
    if (ids.size() > capacity)
        return set_error(QUANTA_ERR_BUFFER_TOO_SMALL, "tokenize: the text is " + std::to_string(ids.size()) +
                                                          " tokens; the buffer holds " + std::to_string(capacity));
    if (!ids.empty()) std::memcpy(tokens, ids.data(), ids.size() * sizeof(int32_t));
    return QUANTA_OK;
}

quanta_status quanta_detokenize(const quanta_model* model, const int32_t* tokens, size_t n_tokens, int special,
                                char* text, size_t capacity, size_t* length) {
    QUANTA_REQUIRE(model && length, "model and length must not be NULL");
    QUANTA_REQUIRE(tokens || n_tokens == 0, "tokens is NULL but n_tokens is not 0");
    QUANTA_REQUIRE(text || capacity == 0, "text is NULL but capacity is not 0");
    std::string out;
    const quanta_status status = guarded([&] {
        out = model->core->tokenizer->decode(std::vector<int32_t>(tokens, tokens + n_tokens), special == 0);
    });
    if (status != QUANTA_OK) return status;
    *length = out.size();
    if (out.size() >= capacity)
        return set_error(QUANTA_ERR_BUFFER_TOO_SMALL, "detokenize: the text is " + std::to_string(out.size()) +
                                                          " bytes and needs " + std::to_string(out.size() + 1) +
                                                          " with its NUL; the buffer holds " + std::to_string(capacity));
    std::memcpy(text, out.c_str(), out.size() + 1);
    return QUANTA_OK;
}

quanta_context_params quanta_context_params_default(void) {
    const quanta::models::ContextParams d{};
    return quanta_context_params{d.n_ctx, d.n_batch, d.n_seq};
}

quanta_status quanta_context_create(const quanta_model* model, const quanta_context_params* params,
                                    quanta_context** out) {
    QUANTA_REQUIRE(out, "out must not be NULL");
    *out = nullptr;
    QUANTA_REQUIRE(model, "model must not be NULL");
    const quanta_context_params p = params ? *params : quanta_context_params_default();
    return guarded([&] {
        auto c = std::make_unique<quanta_context>();
        c->model = model->core;
        quanta::models::ContextParams cp;
        cp.n_ctx = p.n_ctx;
        cp.n_batch = p.n_batch;
        cp.n_seq = p.n_seq;
        {
            std::lock_guard<std::mutex> lock(c->model->compute);
            c->ctx = std::make_unique<quanta::models::LlmContext>(c->model->llm, cp);
        }
        *out = c.release();
    });
}

void quanta_context_free(quanta_context* ctx) {
    if (!ctx) return;
    {
        std::lock_guard<std::mutex> lock(ctx->model->compute);
        ctx->ctx.reset();
    }
    delete ctx;
}

int32_t quanta_context_n_ctx(const quanta_context* ctx) { return ctx ? ctx->ctx->n_ctx() : 0; }
int32_t quanta_context_n_seq(const quanta_context* ctx) { return ctx ? ctx->ctx->n_seq() : 0; }
int32_t quanta_context_n_vocab(const quanta_context* ctx) { return ctx ? ctx->ctx->n_vocab() : 0; }

int32_t quanta_context_n_tokens(const quanta_context* ctx, int32_t seq) {
    if (!ctx || seq < 0 || seq >= ctx->ctx->n_seq()) return -1;
    return (int32_t)ctx->ctx->tokens(seq).size();
}

quanta_status quanta_decode(quanta_context* ctx, const int32_t* tokens, const int32_t* seqs, const int32_t* positions,
                            const int8_t* logits, int32_t n_tokens) {
    QUANTA_REQUIRE(ctx && tokens, "ctx and tokens must not be NULL");
    QUANTA_REQUIRE(n_tokens > 0, "decode: no tokens (n_tokens must be positive)");
    return guarded([&] {
        BusyScope busy(ctx);
        quanta::models::LlmContext& c = *ctx->ctx;
        std::vector<int32_t> next(c.n_seq());
        for (int s = 0; s < c.n_seq(); ++s) next[s] = (int32_t)c.tokens(s).size();
        std::vector<quanta::models::BatchToken> batch((size_t)n_tokens);
        for (int32_t i = 0; i < n_tokens; ++i) {
            const int32_t seq = seqs ? seqs[i] : 0;
            QUANTA_CHECK_ARG(seq >= 0 && seq < c.n_seq(), "decode: token " + std::to_string(i) + " is of sequence " +
                                                              std::to_string(seq) + "; the context has " +
                                                              std::to_string(c.n_seq()));
            batch[i] = {tokens[i], seq, positions ? positions[i] : next[seq]++,
                        logits ? logits[i] != 0 : i == n_tokens - 1};
        }
        decode_keeping_logits(ctx, batch);
    });
}

quanta_status quanta_eval(quanta_context* ctx, int32_t seq, const int32_t* tokens, int32_t n_tokens) {
    QUANTA_REQUIRE(ctx && tokens, "ctx and tokens must not be NULL");
    QUANTA_REQUIRE(n_tokens > 0, "eval: no tokens (n_tokens must be positive)");
    return guarded([&] {
        BusyScope busy(ctx);
        const int32_t start = (int32_t)ctx->ctx->tokens(seq).size();
        std::vector<quanta::models::BatchToken> batch((size_t)n_tokens);
        for (int32_t i = 0; i < n_tokens; ++i) batch[i] = {tokens[i], seq, start + i, i == n_tokens - 1};
        decode_keeping_logits(ctx, batch);
    });
}

quanta_status quanta_truncate(quanta_context* ctx, int32_t seq, int32_t n) {
    QUANTA_REQUIRE(ctx, "ctx must not be NULL");
    return guarded([&] {
        BusyScope busy(ctx);
        ctx->ctx->truncate(seq, n);
    });
}

int32_t quanta_n_logits(const quanta_context* ctx) { return ctx ? ctx->n_logits : 0; }

quanta_status quanta_get_logits(const quanta_context* ctx, int32_t i, const float** out) {
    QUANTA_REQUIRE(ctx && out, "ctx and out must not be NULL");
    *out = nullptr;
    return guarded([&] { *out = logits_row(ctx, i); });
}

quanta_status quanta_copy_logits(const quanta_context* ctx, int32_t i, float* dst, size_t capacity) {
    QUANTA_REQUIRE(ctx && dst, "ctx and dst must not be NULL");
    return guarded([&] {
        const float* row = logits_row(ctx, i);
        const size_t n_vocab = (size_t)ctx->ctx->n_vocab();
        if (capacity < n_vocab)
            quanta::fail(quanta::ErrorKind::InvalidArgument, "copy_logits: " + std::to_string(n_vocab) +
                                                                 " logits do not fit in " + std::to_string(capacity));
        std::memcpy(dst, row, n_vocab * sizeof(float));
    });
}

quanta_sampler_params quanta_sampler_params_default(void) {
    const quanta::sample::SamplerParams d{};
    return quanta_sampler_params{d.temperature,      d.top_k,           d.top_p,
                                 d.min_p,            d.repeat_penalty,  d.presence_penalty,
                                 d.frequency_penalty, d.penalty_last_n, QUANTA_SEED_RANDOM};
}

quanta_status quanta_sampler_create(const quanta_sampler_params* params, quanta_sampler** out) {
    QUANTA_REQUIRE(out, "out must not be NULL");
    *out = nullptr;
    const quanta_sampler_params p = params ? *params : quanta_sampler_params_default();
    return guarded([&] { *out = new quanta_sampler{quanta::sample::Sampler(sampler_params(p))}; });
}

void quanta_sampler_free(quanta_sampler* sampler) { delete sampler; }

quanta_status quanta_sampler_sample(quanta_sampler* sampler, const float* logits, int32_t n_vocab, int32_t* token) {
    QUANTA_REQUIRE(sampler && logits && token, "sampler, logits and token must not be NULL");
    return guarded([&] { *token = sampler->sampler.sample(logits, n_vocab); });
}

quanta_status quanta_sampler_accept(quanta_sampler* sampler, int32_t token) {
    QUANTA_REQUIRE(sampler, "sampler must not be NULL");
    QUANTA_REQUIRE(token >= 0, "token id " + std::to_string(token) + " is negative");
    sampler->sampler.accept(token);
    return QUANTA_OK;
}

quanta_status quanta_sampler_reset(quanta_sampler* sampler) {
    QUANTA_REQUIRE(sampler, "sampler must not be NULL");
    sampler->sampler.reset();
    return QUANTA_OK;
}

quanta_generate_params quanta_generate_params_default(void) {
    quanta_generate_params p;
    p.sampling = quanta_sampler_params_default();
    p.max_tokens = quanta::engine::GenerateParams{}.max_tokens;
    p.stop = nullptr;
    p.n_stop = 0;
    p.context_shift = 0;
    return p;
}

quanta_status quanta_generate(quanta_context* ctx, const char* prompt, size_t prompt_len,
                              const quanta_generate_params* params, quanta_piece_callback callback, void* user_data,
                              quanta_generate_result* result) {
    QUANTA_REQUIRE(ctx && callback, "ctx and callback must not be NULL");
    QUANTA_REQUIRE(prompt || prompt_len == 0, "prompt is NULL but prompt_len is not 0");
    const quanta_generate_params p = params ? *params : quanta_generate_params_default();
    QUANTA_REQUIRE(p.stop || p.n_stop == 0, "params.stop is NULL but params.n_stop is not 0");
    for (size_t i = 0; i < p.n_stop; ++i)
        QUANTA_REQUIRE(p.stop[i], "params.stop[" + std::to_string(i) + "] is NULL");
    bool cancelled = false;
    const quanta_status status = guarded([&] {
        BusyScope busy(ctx);
        RunScope run(ctx);
        ctx->n_logits = 0;  // the generator's evaluations replace what the caller's left
        const quanta::text::Tokenizer& tokenizer = *ctx->model->tokenizer;
        std::vector<int32_t> tokens = tokenizer.encode(std::string_view(prompt ? prompt : "", prompt_len), true, true);
        quanta::engine::GenerateParams gp;
        gp.sampling = sampler_params(p.sampling);
        gp.max_tokens = p.max_tokens;
        gp.stop.assign(p.stop, p.stop + p.n_stop);
        gp.context_shift = p.context_shift != 0;
        quanta::engine::Generator gen(*ctx->ctx, tokenizer);
        const int id = gen.add(tokens, gp);
        quanta_finish_reason finish = QUANTA_FINISH_LENGTH;
        while (!(cancelled = run.cancelled())) {
            bool more;
            {
                std::lock_guard<std::mutex> lock(ctx->model->compute);
                more = gen.step();
            }
            if ((cancelled = run.cancelled())) break;
            const std::string piece = gen.take(id);
            if (!piece.empty() && callback(piece.c_str(), piece.size(), user_data) != 0) {
                finish = QUANTA_FINISH_CALLBACK;
                break;
            }
            if (!more || gen.finish(id) != quanta::engine::Finish::Running) {
                finish = gen.finish(id) == quanta::engine::Finish::Stop ? QUANTA_FINISH_STOP : QUANTA_FINISH_LENGTH;
                break;
            }
        }
        if (result) {
            result->finish = cancelled ? QUANTA_FINISH_CANCELLED : finish;
            result->n_prompt_tokens = (int32_t)tokens.size();
            result->n_generated_tokens = (int32_t)gen.tokens(id).size();
        }
    });
    if (status == QUANTA_OK && cancelled) return set_error(QUANTA_ERR_CANCELLED, "generation cancelled (quanta_cancel)");
    return status;
}

quanta_status quanta_cancel(quanta_context* ctx) {
    QUANTA_REQUIRE(ctx, "ctx must not be NULL");
    int running = kRunning;
    ctx->run_state.compare_exchange_strong(running, kCancelRequested);
    return QUANTA_OK;
}

}  // extern "C"
