// libquanta_cuda.so: the CUDA backend's device code behind the table of
// quanta_cuda_abi.h. Each backend instance owns a stream on its device; the
// kernel table is indexed by op id (csrc/core/op_ids.h), its rows come from
// the kernel files (kernel_table.cuh), and it grows op by op (issue 15);
// supports() tells the truth about what it has today. cudart is
// linked statically, so this library needs only the driver (libcuda.so.1),
// which exists exactly where a GPU does.
#include <algorithm>
#include <cstdio>
#include <initializer_list>

#include "kernel_table.cuh"

namespace quanta_cuda {
namespace {
thread_local char g_error[512] = "";
}  // namespace

int check(cudaError_t err, const char* what) {
    if (err == cudaSuccess) return 0;
    std::snprintf(g_error, sizeof g_error, "%s: %s", what, cudaGetErrorString(err));
    return 1;
}

namespace {

struct Instance {
    int device;
    cudaStream_t stream;
    void* scratch = nullptr;  // Launch::scratch, grown to the largest graph's need and kept
    size_t scratch_bytes = 0;
};

Instance* instance(void* b) { return static_cast<Instance*>(b); }

// The table, one row per op, from the kernel files.
Kernel kernel_for(int32_t op) {
    for (Kernel (*file)(Op) : {elementwise_kernel, row_kernel, quantized_kernel, indexed_kernel}) {
        const Kernel k = file(static_cast<Op>(op));
        if (k.launch) return k;
    }
    return {nullptr, nullptr};
}

bool is_leaf_or_view(int32_t op) { return op == (int32_t)Op::None || op == (int32_t)Op::View; }

// ---- the table -----------------------------------------------------------------

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

int create(int device, void** out) {
    if (check(cudaSetDevice(device), "cudaSetDevice")) return 1;
    cudaStream_t stream;
    if (check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate")) return 1;
    *out = new Instance{device, stream};
    return 0;
}

void destroy(void* b) {
    if (!b) return;
    cudaStreamDestroy(instance(b)->stream);
    cudaFree(instance(b)->scratch);
    delete instance(b);
}

int supports(void*, const quanta_cuda_tensor* node) {
    if (is_leaf_or_view(node->op)) return 1;
    const Kernel k = kernel_for(node->op);
    return k.supports && k.supports(node) ? 1 : 0;
}

int alloc(void* b, void** ptr, size_t bytes) {
    if (check(cudaSetDevice(instance(b)->device), "cudaSetDevice")) return 1;
    return check(cudaMalloc(ptr, bytes ? bytes : 256), "cudaMalloc");
}

int release(void*, void* ptr) { return check(cudaFree(ptr), "cudaFree"); }

int write(void* b, void* dst, const void* src, size_t bytes) {
    if (check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, instance(b)->stream), "copy to device")) return 1;
    return check(cudaStreamSynchronize(instance(b)->stream), "copy to device");
}

int read(void* b, const void* src, void* dst, size_t bytes) {
    if (check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, instance(b)->stream), "copy to host")) return 1;
    return check(cudaStreamSynchronize(instance(b)->stream), "copy to host");
}

// Scratch of at least `bytes` on the instance (cudaFree waits for kernels still using the old buffer).
int reserve_scratch(Instance* in, size_t bytes) {
    if (bytes <= in->scratch_bytes) return 0;
    if (check(cudaFree(in->scratch), "cudaFree")) return 1;
    in->scratch = nullptr;
    in->scratch_bytes = 0;
    if (check(cudaMalloc(&in->scratch, bytes), "scratch cudaMalloc")) return 1;
    in->scratch_bytes = bytes;
    return 0;
}

int compute(void* b, const quanta_cuda_tensor* nodes, int n) {
    Instance* in = instance(b);
    cudaStream_t stream = in->stream;
    bool reads_ids = false;
    size_t scratch = 0;
    for (int i = 0; i < n; ++i) {
        if (is_leaf_or_view(nodes[i].op)) continue;
        const Kernel k = kernel_for(nodes[i].op);
        if (!k.launch) {
            std::snprintf(g_error, sizeof g_error, "no CUDA kernel for op %d", (int)nodes[i].op);
            return 1;
        }
        if (k.scratch_bytes) scratch = std::max(scratch, k.scratch_bytes(&nodes[i]));
    }
    if (reserve_scratch(in, scratch)) return 1;
    const Launch launch{stream, in->scratch};
    for (int i = 0; i < n; ++i) {
        if (is_leaf_or_view(nodes[i].op)) continue;
        reads_ids = reads_ids || indexed_kernel(static_cast<Op>(nodes[i].op)).launch;
        if (kernel_for(nodes[i].op).launch(&nodes[i], launch)) return 1;
    }
    if (check(cudaStreamSynchronize(stream), "compute")) return 1;
    bool bad = false;
    if (reads_ids && take_bad_ids(stream, &bad)) return 1;
    if (bad) {
        std::snprintf(g_error, sizeof g_error, "a row or cell id is out of range of its table (get_rows, set_rows or attention)");
        return 2;
    }
    return 0;
}

const char* last_error() { return g_error; }

const quanta_cuda_api kApi = {
    QUANTA_CUDA_ABI_VERSION, device_count, device_name, device_memory, create, destroy, supports,
    alloc, release, write, read, compute, last_error,
};

}  // namespace
}  // namespace quanta_cuda

extern "C" __attribute__((visibility("default"))) const quanta_cuda_api* quanta_cuda_get_api(void) {
    return &quanta_cuda::kApi;
}
