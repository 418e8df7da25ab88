// libquanta_cuda.so: the CUDA backend's device code and the C table the core
// loads. cudart is linked statically, so this library needs only the driver
// (libcuda.so.1), which exists exactly where a GPU does.
#include <cuda_runtime.h>

#include <cstdio>

#include "quanta_cuda_abi.h"

namespace {

thread_local char g_error[512] = "";

int check(cudaError_t err, const char* what) {
    if (err == cudaSuccess) return 0;
    std::snprintf(g_error, sizeof g_error, "%s: %s", what, cudaGetErrorString(err));
    return 1;
}

__global__ void add_f32_kernel(float* y, const float* a, const float* b, int64_t n, int64_t nb) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a[i] + b[i % nb];
}

int device_count() {
    int n = 0;
    if (check(cudaGetDeviceCount(&n), "cudaGetDeviceCount")) return -1;
    return n;
}

int device_name(int device, char* buf, size_t len) {
    cudaDeviceProp prop;
    if (check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties")) return 1;
    std::snprintf(buf, len, "%s (sm_%d%d)", prop.name, prop.major, prop.minor);
    return 0;
}

int device_memory(int device, size_t* free_bytes, size_t* total_bytes) {
    if (check(cudaSetDevice(device), "cudaSetDevice")) return 1;
    return check(cudaMemGetInfo(free_bytes, total_bytes), "cudaMemGetInfo");
}

int alloc(void** ptr, size_t bytes) { return check(cudaMalloc(ptr, bytes), "cudaMalloc"); }
int release(void* ptr) { return check(cudaFree(ptr), "cudaFree"); }

int copy_to_device(void* dst, const void* src, size_t bytes) {
    return check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to device");
}

int copy_to_host(void* dst, const void* src, size_t bytes) {
    return check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to host");
}

int synchronize() { return check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

int add_f32(float* y, const float* a, const float* b, int64_t n, int64_t nb) {
    if (n <= 0) return 0;
    const int threads = 256;
    const int64_t blocks = (n + threads - 1) / threads;
    add_f32_kernel<<<(unsigned)blocks, threads>>>(y, a, b, n, nb);
    return check(cudaGetLastError(), "add_f32 launch");
}

const char* last_error() { return g_error; }

const quanta_cuda_api kApi = {
    QUANTA_CUDA_ABI_VERSION, device_count, device_name, device_memory, alloc, release,
    copy_to_device, copy_to_host, synchronize, add_f32, last_error,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const quanta_cuda_api* quanta_cuda_get_api(void) { return &kApi; }
