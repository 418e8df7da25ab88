// What the kernel files of libquanta_cuda.so share: the node helpers their
// supports() and launch functions use, and the Kernel row each file
// contributes to the table that cuda_api.cu indexes by op id. Each op's
// supports() accepts exactly the types and layouts its kernel handles, so the
// core can name an unsupported node before anything runs.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "core/op_ids.h"
#include "quanta_cuda_abi.h"

namespace quanta_cuda {

using quanta::Op;
using quanta::GluAct;

// What a launch gets besides its node: the instance's stream and `scratch`, device memory of at least the
// bytes the op's scratch_bytes() asked for, which the node may use until the next node runs. compute() sizes it
// for the whole graph before launching anything (so nothing allocates between kernels).
struct Launch {
    cudaStream_t stream;
    void* scratch;
};

struct Kernel {
    bool (*supports)(const quanta_cuda_tensor* node);
    int (*launch)(const quanta_cuda_tensor* node, const Launch& launch);
    size_t (*scratch_bytes)(const quanta_cuda_tensor* node);  // nullptr: none
};

// 0 on success; otherwise records `what` and CUDA's message for last_error() and returns 1 (cuda_api.cu).
int check(cudaError_t err, const char* what);

// The rows of each file's ops; {nullptr, nullptr} for ops the file does not have.
Kernel elementwise_kernel(Op op);  // elementwise.cu: Copy, Add, Mul, Scale, the activations and Glu
Kernel row_kernel(Op op);          // row_ops.cu: RmsNorm, SoftMax, Rope
Kernel quantized_kernel(Op op);    // quantized.cu: MatMul over any storage type
Kernel indexed_kernel(Op op);      // indexed.cu: GetRows, SetRows, Attention (ids in device memory)

// After a graph with indexed ops has run: whether a kernel met an id outside its table since the last call
// (indexed.cu; clears the flag). Returns check()'s code.
int take_bad_ids(cudaStream_t stream, bool* bad);

constexpr uint32_t kF32 = 0;  // ggml type ids
constexpr uint32_t kF16 = 1;
constexpr uint32_t kBF16 = 30;
constexpr uint32_t kI32 = 26;

__host__ __device__ constexpr bool float_type(uint32_t type) { return type == kF32 || type == kF16 || type == kBF16; }
__host__ __device__ constexpr uint64_t element_bytes(uint32_t type) { return type == kF32 ? 4 : 2; }  // of a float_type

// One element of a float_type at p, as a float, and back (rounding to nearest even, as the CPU's conversions).
__device__ inline float load_float(uint32_t type, const uint8_t* p) {
    if (type == kF32) return *reinterpret_cast<const float*>(p);
    if (type == kF16) return __half2float(*reinterpret_cast<const __half*>(p));
    return __bfloat162float(*reinterpret_cast<const __nv_bfloat16*>(p));
}
__device__ inline void store_float(uint32_t type, uint8_t* p, float v) {
    if (type == kF32) *reinterpret_cast<float*>(p) = v;
    else if (type == kF16) *reinterpret_cast<__half*>(p) = __float2half_rn(v);
    else *reinterpret_cast<__nv_bfloat16*>(p) = __float2bfloat16_rn(v);
}

inline int64_t n_elements(const quanta_cuda_tensor* t) { return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; }
inline int64_t n_rows(const quanta_cuda_tensor* t) { return t->ne[1] * t->ne[2] * t->ne[3]; }

inline bool contiguous(const quanta_cuda_tensor* t, uint64_t bytes) {  // elements of `bytes`, packed
    return t->nb[0] == bytes && t->nb[1] == bytes * (uint64_t)t->ne[0] &&
           t->nb[2] == t->nb[1] * (uint64_t)t->ne[1] && t->nb[3] == t->nb[2] * (uint64_t)t->ne[2];
}
inline bool contiguous_f32(const quanta_cuda_tensor* t) { return t && t->type == kF32 && contiguous(t, 4); }
inline bool same_shape(const quanta_cuda_tensor* a, const quanta_cuda_tensor* b) {
    return a->ne[0] == b->ne[0] && a->ne[1] == b->ne[1] && a->ne[2] == b->ne[2] && a->ne[3] == b->ne[3];
}

// The sum (MAX: the maximum) of every thread's v over a block of THREADS threads (a multiple of 32, at most
// 1024), by warp shuffles; every thread gets it. It synchronises the block, so all its threads must call it.
template <int THREADS, bool MAX>
__device__ inline float block_reduce(float v) {
    static_assert(THREADS % 32 == 0 && THREADS <= 1024, "whole warps, at most 32 of them");
    __shared__ float part[THREADS / 32];
    const auto combine = [](float a, float b) { return MAX ? fmaxf(a, b) : a + b; };
    for (int o = 16; o > 0; o >>= 1) v = combine(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < THREADS / 32 ? part[lane] : (MAX ? -INFINITY : 0.0f);
        for (int o = 16; o > 0; o >>= 1) v = combine(v, __shfl_xor_sync(0xffffffffu, v, o));
        if (lane == 0) part[0] = v;
    }
    __syncthreads();
    v = part[0];
    __syncthreads();  // part is reused by the next reduction
    return v;
}

// Blocks of `threads` covering n items, capped where a grid-stride loop takes over.
inline unsigned blocks_for(int64_t n, int threads) {
    const int64_t blocks = (n + threads - 1) / threads;
    return (unsigned)(blocks < 65535 * 16 ? (blocks > 0 ? blocks : 1) : 65535 * 16);
}

}  // namespace quanta_cuda
