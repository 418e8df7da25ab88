// Ops that read weights in any supported storage type on the GPU: GetRows
// (rows of an embedding table as f32) and MatMul (weight rows dotted with f32
// activation rows). Every block is dequantized by quant/block_dequant.h, the
// code the CPU's reference runs, and this file is built with --fmad=false, so
// a dequantized weight has the CPU reference's bits. The matmul is the plain
// first version (issue 15): a block of threads per weight row dequantizes it
// into shared memory once and dots it with every activation row in float; it
// is correct for every type, not yet fast (no 8-bit activations, no tensor
// cores).
#include "kernel_table.cuh"
#include "quant/block_dequant.h"
#include "quant/types.h"

namespace quanta_cuda {

using quanta::DType;

namespace {

constexpr int kThreads = 128;

// Elements and bytes per block of the types these kernels read (the file format's contract, as
// quant/types.cpp has it); size 0 for the others.
struct Geometry {
    int size, bytes;
};
__host__ __device__ constexpr Geometry geometry(uint32_t type) {
    switch (static_cast<DType>(type)) {
        case DType::F32: return {1, 4};
        case DType::F16: case DType::BF16: return {1, 2};
        case DType::Q4_0: return {32, 18};
        case DType::Q4_1: return {32, 20};
        case DType::Q5_0: return {32, 22};
        case DType::Q5_1: return {32, 24};
        case DType::Q8_0: return {32, 34};
        case DType::Q2_K: return {256, 84};
        case DType::Q3_K: return {256, 110};
        case DType::Q4_K: return {256, 144};
        case DType::Q5_K: return {256, 176};
        case DType::Q6_K: return {256, 210};
        default: return {0, 0};
    }
}

__device__ void dequantize_block(uint32_t type, const uint8_t* b, float* y) {
    using namespace quanta::block;
    switch (static_cast<DType>(type)) {
        case DType::F32: y[0] = quanta::f32_from_bits(load_u32(b)); return;
        case DType::F16: y[0] = quanta::f16_to_f32(load_u16(b)); return;
        case DType::BF16: y[0] = quanta::bf16_to_f32(load_u16(b)); return;
        case DType::Q4_0: return dq_q4_0(b, y);
        case DType::Q4_1: return dq_q4_1(b, y);
        case DType::Q5_0: return dq_q5_0(b, y);
        case DType::Q5_1: return dq_q5_1(b, y);
        case DType::Q8_0: return dq_q8_0(b, y);
        case DType::Q2_K: return dq_q2_k(b, y);
        case DType::Q3_K: return dq_q3_k(b, y);
        case DType::Q4_K: return dq_q4_k(b, y);
        case DType::Q5_K: return dq_q5_k(b, y);
        default: return dq_q6_k(b, y);
    }
}

// Row r of a weight or table as floats, from ne0 / size blocks.
__device__ void dequantize_row(uint32_t type, const uint8_t* row, int64_t ne0, float* y) {
    const Geometry g = geometry(type);
    for (int64_t i = threadIdx.x; i < ne0 / g.size; i += blockDim.x) dequantize_block(type, row + i * g.bytes, y + i * g.size);
}

// Rows stored block after block, as ggml lays out every type.
bool rows_of_blocks(const quanta_cuda_tensor* t) {
    const Geometry g = geometry(t->type);
    return g.size > 0 && t->ne[0] % g.size == 0 && t->nb[0] == (uint64_t)g.bytes;
}

__device__ int g_bad_ids;  // set by a kernel that met an id outside its table; taken by take_bad_ids()

// ---- get_rows: out row m = table row ids[m] as floats; ids out of range give zeros and an error ----------

__global__ void get_rows_kernel(float* out, const uint8_t* table, uint64_t row_bytes, int64_t rows, uint32_t type,
                                const int32_t* ids, int64_t ne0) {
    const int64_t m = blockIdx.x;
    const int32_t id = ids[m];
    float* y = out + m * ne0;
    if (id < 0 || id >= rows) {
        for (int64_t j = threadIdx.x; j < ne0; j += blockDim.x) y[j] = 0.0f;
        if (threadIdx.x == 0) atomicExch(&g_bad_ids, 1);
        return;
    }
    dequantize_row(type, table + (uint64_t)id * row_bytes, ne0, y);
}

bool get_rows_supports(const quanta_cuda_tensor* n) {
    const quanta_cuda_tensor *table = n->src[0], *ids = n->src[1];
    return contiguous_f32(n) && n->ne[2] == 1 && n->ne[3] == 1 && rows_of_blocks(table) && table->ne[2] == 1 &&
           table->ne[3] == 1 && table->ne[0] == n->ne[0] && ids && ids->type == kI32 && contiguous(ids, 4) &&
           ids->ne[0] >= n->ne[1];
}

int get_rows_launch(const quanta_cuda_tensor* n, cudaStream_t s) {
    if (n->ne[1] == 0) return 0;
    const quanta_cuda_tensor* table = n->src[0];
    get_rows_kernel<<<(unsigned)n->ne[1], kThreads, 0, s>>>(
        static_cast<float*>(n->data), static_cast<const uint8_t*>(table->data), table->nb[1], table->ne[1],
        table->type, static_cast<const int32_t*>(n->src[1]->data), n->ne[0]);
    return check(cudaGetLastError(), "get_rows launch");
}

// ---- matmul: out[i3][i2][m][n] = w[i3 / r3][i2 / r2] row n . x[i3][i2] row m ----------------------------------

__device__ float block_sum(float v) {
    __shared__ float part[kThreads / 32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
    __syncthreads();
    float total = 0;
    for (int w = 0; w < kThreads / 32; ++w) total += part[w];
    __syncthreads();  // part is reused by the next row's sum
    return total;
}

struct MatmulArgs {
    const uint8_t* w;
    uint64_t w_nb[4];
    uint32_t w_type;
    const float* x;
    uint64_t x_nb[4];  // bytes
    float* out;
    int64_t k, n, m, b2, r2, r3;
};

__global__ void matmul_kernel(MatmulArgs a) {
    extern __shared__ float row[];  // weight row n, dequantized
    const int64_t n = blockIdx.x, i2 = blockIdx.y % a.b2, i3 = blockIdx.y / a.b2;
    dequantize_row(a.w_type, a.w + (i3 / a.r3) * a.w_nb[3] + (i2 / a.r2) * a.w_nb[2] + n * a.w_nb[1], a.k, row);
    __syncthreads();
    const uint8_t* xb = reinterpret_cast<const uint8_t*>(a.x) + i3 * a.x_nb[3] + i2 * a.x_nb[2];
    float* out = a.out + (blockIdx.y * a.m) * a.n + n;
    for (int64_t m = 0; m < a.m; ++m) {
        const float* xr = reinterpret_cast<const float*>(xb + m * a.x_nb[1]);
        float partial = 0;
        for (int64_t j = threadIdx.x; j < a.k; j += kThreads) partial += row[j] * xr[j];
        const float total = block_sum(partial);
        if (threadIdx.x == 0) out[m * a.n] = total;
    }
}

constexpr int64_t kMaxRowBytes = 64 << 10;  // shared memory for one dequantized row, within every listed GPU's

bool matmul_supports(const quanta_cuda_tensor* d) {
    const quanta_cuda_tensor *w = d->src[0], *x = d->src[1];
    return contiguous_f32(d) && rows_of_blocks(w) && x->type == kF32 && x->nb[0] == 4 && x->ne[0] == w->ne[0] &&
           w->ne[0] * 4 <= kMaxRowBytes && d->ne[0] == w->ne[1] && d->ne[1] == x->ne[1] && d->ne[2] == x->ne[2] &&
           d->ne[3] == x->ne[3] && x->ne[2] % w->ne[2] == 0 && x->ne[3] % w->ne[3] == 0;
}

int matmul_launch(const quanta_cuda_tensor* d, cudaStream_t s) {
    const quanta_cuda_tensor *w = d->src[0], *x = d->src[1];
    if (n_elements(d) == 0) return 0;
    MatmulArgs a{static_cast<const uint8_t*>(w->data), {w->nb[0], w->nb[1], w->nb[2], w->nb[3]}, w->type,
                 static_cast<const float*>(x->data), {x->nb[0], x->nb[1], x->nb[2], x->nb[3]},
                 static_cast<float*>(d->data), w->ne[0], d->ne[0], d->ne[1], d->ne[2], x->ne[2] / w->ne[2],
                 x->ne[3] / w->ne[3]};
    const size_t smem = (size_t)w->ne[0] * 4;
    if (smem > (48 << 10) &&
        check(cudaFuncSetAttribute(matmul_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
              "matmul shared memory"))
        return 1;
    matmul_kernel<<<dim3((unsigned)d->ne[0], (unsigned)(d->ne[2] * d->ne[3])), kThreads, smem, s>>>(a);
    return check(cudaGetLastError(), "matmul launch");
}

}  // namespace

int take_bad_ids(cudaStream_t s, bool* bad) {
    int flag = 0;
    if (check(cudaMemcpyFromSymbolAsync(&flag, g_bad_ids, sizeof flag, 0, cudaMemcpyDeviceToHost, s), "id check")) return 1;
    if (check(cudaStreamSynchronize(s), "id check")) return 1;
    *bad = flag != 0;
    if (!flag) return 0;
    const int zero = 0;
    return check(cudaMemcpyToSymbolAsync(g_bad_ids, &zero, sizeof zero, 0, cudaMemcpyHostToDevice, s), "id check") ||
           check(cudaStreamSynchronize(s), "id check");
}

Kernel quantized_kernel(Op op) {
    switch (op) {
        case Op::GetRows: return {get_rows_supports, get_rows_launch};
        case Op::MatMul: return {matmul_supports, matmul_launch};
        default: return {nullptr, nullptr};
    }
}

}  // namespace quanta_cuda
