/* quanta C API: embed the engine without Python: GGUF files, and text
 * generation with LLMs (models, contexts, tokenizer, logits, samplers, a
 * streaming generate call that another thread can cancel).
 *
 * Conventions:
 *  - Objects are opaque handles created by *_open / *_load / *_create and
 *    freed by *_close / *_free (which accept NULL). On failure an out-handle
 *    is set to NULL.
 *  - Functions that can fail return a quanta_status; on failure,
 *    quanta_last_error() gives a one-line message for the calling thread.
 *    Invalid input (NULL pointers, invalid UTF-8, token ids or sequences out
 *    of range, a full context) is reported this way, never by a crash.
 *    Getters that cannot fail return their value directly (0 or -1 for a
 *    NULL handle, as each says).
 *  - Text passed in is UTF-8 given as pointer + length in bytes (it need not
 *    be NUL-terminated; the pointer may be NULL when the length is 0); paths
 *    and stop strings are NUL-terminated. Text the library hands out is
 *    valid UTF-8 and also NUL-terminated.
 *  - Caller buffers come with their capacity in elements. When the result
 *    does not fit, the call fails with QUANTA_ERR_BUFFER_TOO_SMALL, writes
 *    nothing into the buffer and still sets the count it would need, so a
 *    second call with a buffer that large succeeds; a NULL buffer with
 *    capacity 0 asks for the size only.
 *  - Strings and pointers returned by the library stay valid until their
 *    handle is closed, unless a function says otherwise.
 *  - Tensor dimensions are in ggml order: ne[0] is the row length.
 *
 * Threads:
 *  - quanta_version, quanta_status_name, quanta_last_error (per thread) and
 *    quanta_cpu_level may be called from any thread at any time.
 *    quanta_set_cpu_level changes the whole process: call it while no
 *    context is evaluating.
 *  - A quanta_gguf handle is read-only: any number of threads may use it.
 *  - A quanta_model may be used from any number of threads at once for its
 *    getters, quanta_tokenize and quanta_detokenize, also while its contexts
 *    evaluate. Free it when no call on it is running; contexts created from
 *    it keep what they need alive, so it may be freed before them.
 *  - Contexts of one model may run on different threads, but they do not
 *    evaluate in parallel: a model has one backend (the CPU's runs one graph
 *    at a time on its n_threads threads), so every evaluation
 *    (quanta_decode, quanta_eval, each step of quanta_generate) holds a lock
 *    of the model while it computes, and contexts take turns. Two
 *    generations on one model therefore each run at about half speed. For
 *    parallel evaluation, load the file once per thread (separate models:
 *    each has its own thread pool; the weights are file pages the OS
 *    shares).
 *  - A context runs one call at a time, on any thread. quanta_decode,
 *    quanta_eval, quanta_truncate and quanta_generate detect a call that
 *    overlaps another on the same context (from another thread, or from
 *    inside a generate callback) and fail with QUANTA_ERR_INVALID_ARGUMENT
 *    instead of running; the context's other calls do not check, so do not
 *    overlap them. The exception is quanta_cancel: any thread, any time
 *    while the context exists. Free a context when no call on it runs.
 *  - A quanta_sampler is used by one thread at a time.
 */
#ifndef QUANTA_H
#define QUANTA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define QUANTA_API __declspec(dllexport)
#else
#define QUANTA_API __attribute__((visibility("default")))
#endif

typedef enum quanta_status {
    QUANTA_OK = 0,
    QUANTA_ERR_INVALID_ARGUMENT = 1,
    QUANTA_ERR_IO = 2,
    QUANTA_ERR_FORMAT = 3,
    QUANTA_ERR_MODEL = 4,
    QUANTA_ERR_UNSUPPORTED = 5,
    QUANTA_ERR_OUT_OF_MEMORY = 6,
    QUANTA_ERR_INTERNAL = 7,
    QUANTA_ERR_CONTEXT_OVERFLOW = 8,
    QUANTA_ERR_CANCELLED = 9,         /* quanta_cancel stopped the call */
    QUANTA_ERR_BUFFER_TOO_SMALL = 10  /* the result does not fit; the needed count was set */
} quanta_status;

/* GGUF metadata value types, as stored in the file. */
typedef enum quanta_value_type {
    QUANTA_VALUE_U8 = 0, QUANTA_VALUE_I8 = 1, QUANTA_VALUE_U16 = 2, QUANTA_VALUE_I16 = 3,
    QUANTA_VALUE_U32 = 4, QUANTA_VALUE_I32 = 5, QUANTA_VALUE_F32 = 6, QUANTA_VALUE_BOOL = 7,
    QUANTA_VALUE_STRING = 8, QUANTA_VALUE_ARRAY = 9, QUANTA_VALUE_U64 = 10, QUANTA_VALUE_I64 = 11,
    QUANTA_VALUE_F64 = 12
} quanta_value_type;

typedef struct quanta_gguf quanta_gguf;

typedef struct quanta_tensor_info {
    const char* name;
    uint32_t type;          /* ggml type id (0 f32, 1 f16, 2 q4_0, ..., 12 q4_k, ...) */
    const char* type_name;  /* lower-case: "q4_k" */
    int32_t n_dims;
    int64_t ne[4];          /* ggml order; unused dims are 1 */
    uint64_t offset;        /* byte offset within the data section */
    uint64_t nbytes;
} quanta_tensor_info;

/* Library */
QUANTA_API const char* quanta_version(void);
QUANTA_API const char* quanta_last_error(void);
QUANTA_API const char* quanta_status_name(quanta_status status);
/* The CPU kernel level in use ("scalar", "avx2", "avx-vnni", "avx512", "neon", "neon-dotprod",
 * "neon-i8mm"). */
QUANTA_API const char* quanta_cpu_level(void);
QUANTA_API quanta_status quanta_set_cpu_level(const char* level);

/* GGUF files: memory-mapped, validated on open. */
QUANTA_API quanta_status quanta_gguf_open(const char* path, quanta_gguf** out);
QUANTA_API void quanta_gguf_close(quanta_gguf* file);
QUANTA_API uint32_t quanta_gguf_version(const quanta_gguf* file);

QUANTA_API int64_t quanta_gguf_n_metadata(const quanta_gguf* file);
/* Key of entry i, or NULL when i is out of range. */
QUANTA_API const char* quanta_gguf_metadata_key(const quanta_gguf* file, int64_t i);
/* Index of `key`, or -1. */
QUANTA_API int64_t quanta_gguf_find_metadata(const quanta_gguf* file, const char* key);
/* Type of entry i; for arrays also the element type and count. */
QUANTA_API quanta_status quanta_gguf_metadata_type(const quanta_gguf* file, int64_t i, quanta_value_type* type,
                                                   quanta_value_type* elem_type, uint64_t* count);
QUANTA_API quanta_status quanta_gguf_get_string(const quanta_gguf* file, const char* key, const char** out);
/* Any integer or bool scalar, widened. */
QUANTA_API quanta_status quanta_gguf_get_int(const quanta_gguf* file, const char* key, int64_t* out);
/* Any numeric scalar, converted. */
QUANTA_API quanta_status quanta_gguf_get_float(const quanta_gguf* file, const char* key, double* out);
/* Element `index` of a string array. */
QUANTA_API quanta_status quanta_gguf_get_array_string(const quanta_gguf* file, const char* key, uint64_t index,
                                                      const char** out);

QUANTA_API int64_t quanta_gguf_n_tensors(const quanta_gguf* file);
/* Index of tensor `name`, or -1. */
QUANTA_API int64_t quanta_gguf_find_tensor(const quanta_gguf* file, const char* name);
QUANTA_API quanta_status quanta_gguf_tensor_info(const quanta_gguf* file, int64_t i, quanta_tensor_info* out);
/* Dequantizes tensor i into dst, which holds n_floats >= its element count. */
QUANTA_API quanta_status quanta_gguf_tensor_to_f32(const quanta_gguf* file, int64_t i, float* dst, uint64_t n_floats);

/* ---- LLMs ------------------------------------------------------------------ */

typedef struct quanta_model quanta_model;
typedef struct quanta_context quanta_context;
typedef struct quanta_sampler quanta_sampler;

/* Loads a GGUF LLM (llama, mistral, qwen2, gemma3): the memory-mapped file,
 * its weights on a backend and its tokenizer. device: "cpu"; "cuda", the
 * first GPU (QUANTA_ERR_UNSUPPORTED with the reason where none is usable);
 * or "auto" (also NULL): the GPU when one is usable and the model runs there,
 * else the CPU, quanta_model_device_note saying why. n_threads: CPU threads
 * (<= 0: one per core this process may use; more than those cores are capped
 * at them, since extra threads only spin against each other). */
QUANTA_API quanta_status quanta_model_load_on(const char* path, const char* device, int32_t n_threads,
                                              quanta_model** out);
/* quanta_model_load_on with device "auto". */
QUANTA_API quanta_status quanta_model_load(const char* path, int32_t n_threads, quanta_model** out);
QUANTA_API void quanta_model_free(quanta_model* model);
/* Where the model runs: "cpu" or "cuda" (NULL for NULL). */
QUANTA_API const char* quanta_model_device(const quanta_model* model);
/* One line saying why device "auto" chose the CPU; "" otherwise and for NULL. */
QUANTA_API const char* quanta_model_device_note(const quanta_model* model);
/* 0 for NULL. */
QUANTA_API int32_t quanta_model_n_vocab(const quanta_model* model);
QUANTA_API int32_t quanta_model_n_ctx_train(const quanta_model* model);
QUANTA_API int32_t quanta_model_n_threads(const quanta_model* model);
/* The BOS / EOS token, or -1 when the model has none (or model is NULL). */
QUANTA_API int32_t quanta_model_bos(const quanta_model* model);
QUANTA_API int32_t quanta_model_eos(const quanta_model* model);
/* 1 when generation ends at `token` (EOS, end of turn, ...), else 0 (also for an id out of range). */
QUANTA_API int quanta_model_is_end_of_generation(const quanta_model* model, int32_t token);

/* Token ids of `text` into tokens[0..capacity). add_bos: put BOS first when
 * the model asks for one. parse_special: control tokens written in the text
 * ("<|im_start|>") become their ids instead of being tokenized as text.
 * *n_tokens: the number of ids (also when the buffer is too small).
 * Invalid UTF-8 is QUANTA_ERR_INVALID_ARGUMENT. */
QUANTA_API quanta_status quanta_tokenize(const quanta_model* model, const char* text, size_t text_len, int add_bos,
                                         int parse_special, int32_t* tokens, size_t capacity, size_t* n_tokens);
/* The text of tokens[0..n_tokens) into text[0..capacity), NUL-terminated:
 * *length is its length in bytes without the NUL, so the buffer needs
 * *length + 1 bytes. special: control tokens appear as their text (else
 * they are left out). Ill-formed byte sequences become U+FFFD. */
QUANTA_API quanta_status quanta_detokenize(const quanta_model* model, const int32_t* tokens, size_t n_tokens,
                                           int special, char* text, size_t capacity, size_t* length);

/* A context: a KV cache of n_ctx cells shared by sequences 0..n_seq-1,
 * evaluating at most n_batch tokens per graph. */
typedef struct quanta_context_params {
    int32_t n_ctx;    /* default 4096 */
    int32_t n_batch;  /* default 512 */
    int32_t n_seq;    /* default 1 */
} quanta_context_params;
QUANTA_API quanta_context_params quanta_context_params_default(void);
/* params NULL: the defaults. */
QUANTA_API quanta_status quanta_context_create(const quanta_model* model, const quanta_context_params* params,
                                               quanta_context** out);
QUANTA_API void quanta_context_free(quanta_context* ctx);
/* 0 for NULL. */
QUANTA_API int32_t quanta_context_n_ctx(const quanta_context* ctx);
QUANTA_API int32_t quanta_context_n_seq(const quanta_context* ctx);
QUANTA_API int32_t quanta_context_n_vocab(const quanta_context* ctx);
/* How many tokens sequence `seq` holds (its next position), or -1 for a bad seq or NULL. */
QUANTA_API int32_t quanta_context_n_tokens(const quanta_context* ctx, int32_t seq);

/* Evaluates a batch of n_tokens tokens of any sequences. For token i:
 * seqs[i] its sequence (seqs NULL: all 0), positions[i] its position, which
 * must be the sequence's next one counting earlier tokens of the batch
 * (positions NULL: exactly that), logits[i] nonzero when its logits are
 * wanted (logits NULL: only the last token's). Everything is checked before
 * anything is evaluated: a bad id, sequence or position is
 * QUANTA_ERR_INVALID_ARGUMENT, too few free cells QUANTA_ERR_CONTEXT_OVERFLOW.
 * If evaluation itself fails, the batch chunks evaluated before the failure
 * stay in the cache (quanta_context_n_tokens tells) and no logits are kept. */
QUANTA_API quanta_status quanta_decode(quanta_context* ctx, const int32_t* tokens, const int32_t* seqs,
                                       const int32_t* positions, const int8_t* logits, int32_t n_tokens);
/* Appends tokens to sequence `seq` and keeps the logits of the last one. */
QUANTA_API quanta_status quanta_eval(quanta_context* ctx, int32_t seq, const int32_t* tokens, int32_t n_tokens);
/* Forgets positions n and later of sequence `seq` (to reuse its prefix); n
 * beyond its length changes nothing. */
QUANTA_API quanta_status quanta_truncate(quanta_context* ctx, int32_t seq, int32_t n);

/* How many tokens of the last evaluation kept logits (0 for NULL, after a
 * failed evaluation and after quanta_generate). */
QUANTA_API int32_t quanta_n_logits(const quanta_context* ctx);
/* The n_vocab logits of the i-th token whose logits were kept by the last
 * quanta_decode / quanta_eval, in batch order; negative i counts from the
 * end (-1: the last). The pointer stays valid until the next evaluation,
 * quanta_generate or quanta_context_free on ctx. */
QUANTA_API quanta_status quanta_get_logits(const quanta_context* ctx, int32_t i, const float** out);
/* The same logits copied into dst, which holds capacity >= n_vocab floats. */
QUANTA_API quanta_status quanta_copy_logits(const quanta_context* ctx, int32_t i, float* dst, size_t capacity);

/* The sampler chain, as llama.cpp's: repetition, presence and frequency
 * penalties over the last penalty_last_n accepted tokens, then top-k, top-p
 * and min-p, then temperature and a seeded draw. temperature <= 0 is greedy
 * (the penalised argmax). */
#define QUANTA_SEED_RANDOM UINT64_MAX /* seed: draw one from the OS at creation */
typedef struct quanta_sampler_params {
    float temperature;        /* default 0.8 */
    int32_t top_k;            /* default 40; <= 0: all tokens */
    float top_p;              /* default 0.95; >= 1: off */
    float min_p;              /* default 0.05; 0: off */
    float repeat_penalty;     /* default 1 (off) */
    float presence_penalty;   /* default 0 */
    float frequency_penalty;  /* default 0 */
    int32_t penalty_last_n;   /* default 64 */
    uint64_t seed;            /* default QUANTA_SEED_RANDOM */
} quanta_sampler_params;
QUANTA_API quanta_sampler_params quanta_sampler_params_default(void);
/* params NULL: the defaults. */
QUANTA_API quanta_status quanta_sampler_create(const quanta_sampler_params* params, quanta_sampler** out);
QUANTA_API void quanta_sampler_free(quanta_sampler* sampler);
/* Draws a token from n_vocab logits (quanta_get_logits); does not accept it. */
QUANTA_API quanta_status quanta_sampler_sample(quanta_sampler* sampler, const float* logits, int32_t n_vocab,
                                               int32_t* token);
/* Records a token (of the prompt, or one sampled) for the penalties. */
QUANTA_API quanta_status quanta_sampler_accept(quanta_sampler* sampler, int32_t token);
/* Forgets accepted tokens and restarts the random draws from the seed. */
QUANTA_API quanta_status quanta_sampler_reset(quanta_sampler* sampler);

/* Generation: quanta.LLM.generate from C. */
typedef struct quanta_generate_params {
    quanta_sampler_params sampling;  /* default quanta_sampler_params_default() */
    int32_t max_tokens;              /* default 256; must not be negative */
    const char* const* stop;         /* n_stop stop strings (empty ones are ignored); default none */
    size_t n_stop;
    int32_t context_shift;           /* nonzero: a full context drops the older half of the sequence
                                        (after its first token) and goes on; 0 (default): it ends generation */
} quanta_generate_params;
QUANTA_API quanta_generate_params quanta_generate_params_default(void);

typedef enum quanta_finish_reason {
    QUANTA_FINISH_STOP = 0,       /* an end-of-generation token or a stop string */
    QUANTA_FINISH_LENGTH = 1,     /* max_tokens, or the context is full */
    QUANTA_FINISH_CANCELLED = 2,  /* quanta_cancel (the call returns QUANTA_ERR_CANCELLED) */
    QUANTA_FINISH_CALLBACK = 3    /* the callback returned nonzero */
} quanta_finish_reason;

typedef struct quanta_generate_result {
    quanta_finish_reason finish;
    int32_t n_prompt_tokens;
    int32_t n_generated_tokens;  /* end-of-generation tokens not counted */
} quanta_generate_result;

/* Receives each piece of text as it is generated: whole UTF-8 characters,
 * never a stop string; piece[length] is NUL, and the piece is valid only
 * during the call. Runs on the thread that called quanta_generate. Return
 * nonzero to stop generating. */
typedef int (*quanta_piece_callback)(const char* piece, size_t length, void* user_data);

/* Tokenizes `prompt` (with BOS when the model wants one; control-token text
 * becomes its id) and generates its continuation, streaming the text to
 * `callback`. params NULL: the defaults. The prompt reuses the cached
 * tokens of the sequence that shares the longest prefix with it; other
 * sequences' cached tokens may be dropped when their cells are needed.
 * Returns QUANTA_OK when generation ended by itself or by the callback,
 * QUANTA_ERR_CANCELLED after quanta_cancel, QUANTA_ERR_CONTEXT_OVERFLOW for
 * a prompt longer than n_ctx. `result` (may be NULL) says why it ended and
 * is filled when the call returns QUANTA_OK or QUANTA_ERR_CANCELLED. */
QUANTA_API quanta_status quanta_generate(quanta_context* ctx, const char* prompt, size_t prompt_len,
                                         const quanta_generate_params* params, quanta_piece_callback callback,
                                         void* user_data, quanta_generate_result* result);
/* Makes the quanta_generate running on ctx return QUANTA_ERR_CANCELLED. It
 * notices after the evaluation in progress (one token's step, or one prompt
 * chunk of n_batch tokens) and returns without calling the callback again;
 * the prompt chunks evaluated so far stay cached in the context.
 * Any thread, any time while ctx exists; with no generate running it does
 * nothing (it does not cancel a later one). */
QUANTA_API quanta_status quanta_cancel(quanta_context* ctx);

#ifdef __cplusplus
}
#endif

#endif /* QUANTA_H */
