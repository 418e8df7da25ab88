/* The C ABI between the core and libquanta_cuda.so. The core dlopens the
 * library only when a CUDA device exists and fetches this table through
 * quanta_cuda_get_api(). Plain C so either side can be rebuilt alone; bump
 * QUANTA_CUDA_ABI_VERSION on any change. Functions return 0 on success and
 * non-zero on failure, with last_error() describing it. */
#ifndef QUANTA_CUDA_ABI_H
#define QUANTA_CUDA_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QUANTA_CUDA_ABI_VERSION 1

typedef struct quanta_cuda_api {
    int abi_version;
    /* Number of devices, or -1 when the runtime cannot start (no driver). */
    int (*device_count)(void);
    int (*device_name)(int device, char* buf, size_t len);
    int (*device_memory)(int device, size_t* free_bytes, size_t* total_bytes);
    int (*alloc)(void** ptr, size_t bytes);
    int (*release)(void* ptr);
    int (*copy_to_device)(void* dst, const void* src, size_t bytes);
    int (*copy_to_host)(void* dst, const void* src, size_t bytes);
    int (*synchronize)(void);
    /* y[i] = a[i] + b[i % nb] for i < n: elementwise add with row broadcast. */
    int (*add_f32)(float* y, const float* a, const float* b, int64_t n, int64_t nb);
    const char* (*last_error)(void);
} quanta_cuda_api;

typedef const quanta_cuda_api* (*quanta_cuda_get_api_fn)(void);
const quanta_cuda_api* quanta_cuda_get_api(void);

#ifdef __cplusplus
}
#endif

#endif
