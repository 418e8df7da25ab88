/* The ABI between the core and libquanta_cuda.so: one backend table. The core
 * dlopens the library only when a CUDA device exists and fetches the table
 * through quanta_cuda_get_api(). A graph crosses as an array of plain node
 * descriptions whose `op` is an id from csrc/core/op_ids.h; the library keeps
 * a kernel table indexed by those ids. Plain C structs so either side can be
 * rebuilt alone; bump QUANTA_CUDA_ABI_VERSION on any change (to this header
 * or to the op ids). Functions returning int give 0 on success and non-zero
 * on failure, with last_error() describing it. */
#ifndef QUANTA_CUDA_ABI_H
#define QUANTA_CUDA_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QUANTA_CUDA_ABI_VERSION 6

/* A node or leaf as the kernels see it; `data` is a device address. */
typedef struct quanta_cuda_tensor {
    int32_t op;    /* quanta::Op id */
    uint32_t type; /* ggml type id */
    int64_t ne[4];
    uint64_t nb[4];
    void* data;
    const struct quanta_cuda_tensor* src[4]; /* NULL where the op takes fewer */
    int32_t i[8];
    float f[8];
} quanta_cuda_tensor;

typedef struct quanta_cuda_api {
    int abi_version;
    /* Number of devices, or -1 when the runtime cannot start (no driver). */
    int (*device_count)(void);
    int (*device_name)(int device, char* buf, size_t len);
    int (*device_memory)(int device, size_t* free_bytes, size_t* total_bytes);

    /* A backend instance on one device (its stream); destroy frees what it allocated. */
    int (*create)(int device, void** backend);
    void (*destroy)(void* backend);
    /* 1 when the library has a kernel for this node with its types and layout, else 0. */
    int (*supports)(void* backend, const quanta_cuda_tensor* node);

    int (*alloc)(void* backend, void** ptr, size_t bytes);
    int (*release)(void* backend, void* ptr);
    int (*write)(void* backend, void* dst, const void* src, size_t bytes);
    int (*read)(void* backend, const void* src, void* dst, size_t bytes);

    /* Runs nodes[0..n) in order (leaves and views are skipped) and waits for them. Returns 2 when the
     * graph's data was invalid (a row id out of range), 1 on any other failure. */
    int (*compute)(void* backend, const quanta_cuda_tensor* nodes, int n);
    const char* (*last_error)(void);
} quanta_cuda_api;

typedef const quanta_cuda_api* (*quanta_cuda_get_api_fn)(void);
const quanta_cuda_api* quanta_cuda_get_api(void);

#ifdef __cplusplus
}
#endif

#endif
