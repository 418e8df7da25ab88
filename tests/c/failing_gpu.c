/* A GPU that fails on purpose, for tests/test_device_fallback.py: built as
 * both libcuda.so.1 (the driver entry points the loader probes: one device)
 * and libquanta_cuda.so (the backend table of kernels/quanta_cuda_abi.h, with
 * host memory standing in for the device's). FAILING_GPU says how it fails:
 *   alloc        every allocation runs out of memory;
 *   compute      every graph fails as a kernel error would;
 *   nan          graphs "run", and every read back is NaN;
 *   unsupported  it has no kernel for anything.
 * Lets CI, which has no GPU, check what device "auto" and "cuda" do when a
 * real GPU is present but cannot run the model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quanta_cuda_abi.h"

int cuInit(unsigned flags) { return (int)flags; }
int cuDeviceGetCount(int* n) {
    *n = 1;
    return 0;
}

static const char* error_text = "";

static int fails(const char* how) {
    const char* mode = getenv("FAILING_GPU");
    return mode && strcmp(mode, how) == 0;
}

static int device_count(void) { return 1; }
static int device_name(int device, char* buf, size_t len) {
    (void)device;
    strncpy(buf, "Failing GPU", len - 1);
    buf[len - 1] = 0;
    return 0;
}
static int device_memory(int device, size_t* free_bytes, size_t* total_bytes) {
    (void)device;
    *free_bytes = *total_bytes = (size_t)1 << 30;
    return 0;
}
static int create(int device, void** backend) {
    (void)device;
    *backend = &error_text;  /* any non-null handle */
    return 0;
}
static void destroy(void* backend) { (void)backend; }
static int supports(void* backend, const quanta_cuda_tensor* node) {
    (void)backend, (void)node;
    return !fails("unsupported");
}
static int alloc(void* backend, void** ptr, size_t bytes) {
    (void)backend;
    if (fails("alloc")) {
        error_text = "out of memory (FAILING_GPU=alloc)";
        return 1;
    }
    *ptr = malloc(bytes ? bytes : 1);
    return *ptr ? 0 : 1;
}
static int release(void* backend, void* ptr) {
    (void)backend;
    free(ptr);
    return 0;
}
static int dev_write(void* backend, void* dst, const void* src, size_t bytes) {
    (void)backend;
    memcpy(dst, src, bytes);
    return 0;
}
static int dev_read(void* backend, const void* src, void* dst, size_t bytes) {
    (void)backend;
    if (fails("nan")) {
        for (size_t i = 0; i < bytes / sizeof(float); ++i) ((float*)dst)[i] = NAN;
        return 0;
    }
    memcpy(dst, src, bytes);
    return 0;
}
static int compute(void* backend, const quanta_cuda_tensor* nodes, int n) {
    (void)backend, (void)nodes, (void)n;
    if (fails("compute")) {
        error_text = "an illegal memory access was encountered (FAILING_GPU=compute)";
        return 1;
    }
    return 0;
}
static const char* last_error(void) { return error_text; }

static const quanta_cuda_api api = {QUANTA_CUDA_ABI_VERSION, device_count, device_name, device_memory, create,
                                    destroy, supports, alloc, release, dev_write, dev_read, compute, last_error};

const quanta_cuda_api* quanta_cuda_get_api(void) { return &api; }
