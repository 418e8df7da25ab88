/* quanta C API: embed the engine without Python.
 *
 * Conventions:
 *  - Objects are opaque handles created by *_open / *_create and freed by
 *    *_close / *_free (which accept NULL).
 *  - Functions that can fail return a quanta_status; on failure,
 *    quanta_last_error() gives a one-line message for the calling thread.
 *  - Strings returned by the library stay valid until their handle is closed.
 *  - Tensor dimensions are in ggml order: ne[0] is the row length.
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
    QUANTA_ERR_CONTEXT_OVERFLOW = 8
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
/* The CPU kernel level in use ("scalar", "avx2", "avx512", "neon"). */
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

#ifdef __cplusplus
}
#endif

#endif /* QUANTA_H */
