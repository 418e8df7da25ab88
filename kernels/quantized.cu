// MatMul on the GPU for weights in any supported storage type (dequantize.cuh)
// against f32 activation rows. Two paths (issue 15):
// - quantized weights: the activation rows are quantized to the flat 8-bit
//   format the CPU uses (quant/act_flat.h, the same levels bit for bit) in
//   scratch memory, then a warp per weight row reads it as int8 groups
//   (quant/int8_groups.h) and dots them with dp4a against up to kRowsPerWarp
//   activation rows at a time: the CPU's arithmetic, so both backends' logits
//   differ by float summation order only, at decode and at prefill alike;
// - float weights: a block of threads per weight row dequantizes it into
//   shared memory once and dots it with every activation row in float.
// Correct for every type, not yet fast (no tensor cores for prefill).
// The int8 arithmetic is host and device code, checked on the CPU by
// tests/cpp/kernel_check.cpp; tests/test_cuda_ops.py checks both paths here.
#include "dequantize.cuh"
#include "quant/act_flat.h"
#include "quant/int8_groups.h"

namespace quanta_cuda {
namespace {

using quanta::flat_act_d;
using quanta::flat_act_dsum;
using quanta::flat_act_level;
using quanta::flat_act_qsum;
using quanta::flat_act_row;
using quanta::flat_act_row_bytes;

constexpr int kThreads = 128;

// ---- out[i3][i2][m][n] = w[i3 / r3][i2 / r2] row n . x[i3][i2] row m; float weights: rows in float

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
        const float total = block_reduce<kThreads, false>(partial);
        if (threadIdx.x == 0) out[m * a.n] = total;
    }
}

// ---- quantized weights: 8-bit activations and int8 weight groups ---------------------------------------------------------

constexpr int kRowsPerWarp = 8;  // activation rows one warp dots each weight group with (registers: 8 sums)
constexpr int kWarpsPerBlock = 4;

// Flat rows in scratch, 16-byte aligned so act_group reads each group's levels as one 16-byte load.
__host__ __device__ constexpr size_t flat_stride(int64_t k) { return (flat_act_row_bytes(k) + 15) / 16 * 16; }

// x row r (of m rows in each of the b2 x b3 batches) quantized into flat row r: a warp per 32-element block,
// lane i holding element i; the arithmetic of quantize_flat_block (an exact max, one division, one multiply
// and rint per level), so the levels and scales are the CPU's bits.
__global__ void quantize_flat_kernel(const uint8_t* x, uint64_t nb1, uint64_t nb2, uint64_t nb3, int64_t k,
                                     int64_t m, int64_t b2, int64_t rows, uint8_t* out) {
    const int64_t blocks = k / 32, warps = (int64_t)gridDim.x * blockDim.x / 32;
    const int lane = threadIdx.x % 32;
    // Grid-stride over whole warps, so every lane of a warp takes part in its shuffles.
    for (int64_t warp = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; warp < rows * blocks; warp += warps) {
        const int64_t r = warp / blocks, b = warp % blocks;
        const int64_t i1 = r % m, i2 = (r / m) % b2, i3 = r / (m * b2);
        const float v = *reinterpret_cast<const float*>(x + i3 * nb3 + i2 * nb2 + i1 * nb1 + (32 * b + lane) * 4);
        float amax = fabsf(v);
        for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        const int level = flat_act_level(v, id);
        int half_sum = level;  // over lanes 0-15 or 16-31
        for (int o = 8; o > 0; o >>= 1) half_sum += __shfl_xor_sync(0xffffffffu, half_sum, o);
        const int other = __shfl_xor_sync(0xffffffffu, half_sum, 16);
        uint8_t* row = out + r * flat_stride(k);
        reinterpret_cast<int8_t*>(row)[32 * b + lane] = (int8_t)level;
        if (lane % 16 == 0) reinterpret_cast<int16_t*>(row + flat_act_qsum(k))[2 * b + lane / 16] = (int16_t)half_sum;
        if (lane == 0) {
            const float d = amax / 127.0f;
            reinterpret_cast<float*>(row + flat_act_d(k))[b] = d;
            reinterpret_cast<float*>(row + flat_act_dsum(k))[b] = d * (float)(half_sum + other);
        }
    }
}

struct Int8Args {
    const uint8_t* w;
    uint64_t w_nb[4];
    uint32_t w_type;
    int block_bytes;
    const uint8_t* act;  // flat rows, flat_stride(k) apart: m per batch, batch after batch
    float* out;
    int64_t k, n, m, b2, r2, r3;
};

// A warp per weight row n and chunk z of kRowsPerWarp activation rows: lane l takes the row's groups l,
// l + 32, ... (adjacent lanes read adjacent bytes), dots each with the chunk's rows, and the warp adds its
// lanes' sums. Chunks after the first read the weight row again, from L2 while the rows fit there.
__global__ void matmul_int8_kernel(Int8Args a) {
    using namespace quanta::block;
    const int64_t n = (int64_t)blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
    if (n >= a.n) return;  // a whole warp
    const int lane = threadIdx.x % 32;
    const int64_t i2 = blockIdx.y % a.b2, i3 = blockIdx.y / a.b2;
    const uint8_t* w = a.w + (i3 / a.r3) * a.w_nb[3] + (i2 / a.r2) * a.w_nb[2] + n * a.w_nb[1];
    const int64_t m0 = (int64_t)blockIdx.z * kRowsPerWarp, rows = min((int64_t)kRowsPerWarp, a.m - m0);
    const uint8_t* act = a.act + ((size_t)blockIdx.y * a.m + m0) * flat_stride(a.k);
    const DType type = static_cast<DType>(a.w_type);
    const int per_block = groups_per_block(type);
    float sum[kRowsPerWarp] = {};
    for (int64_t j = lane; j < a.k / kGroup; j += 32) {
        const Int8Group g = int8_group(type, w + (j / per_block) * a.block_bytes, (int)(j % per_block));
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r)
            if (r < rows) sum[r] += int8_group_dot(g, act_group(flat_act_row(act + r * flat_stride(a.k), a.k), j));
    }
    float* out = a.out + (blockIdx.y * a.m + m0) * a.n + n;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
        if (r >= rows) break;
        float v = sum[r];
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) out[r * a.n] = v;
    }
}

bool int8_path(const quanta_cuda_tensor* d) {
    return quanta::block::groups_per_block(static_cast<DType>(d->src[0]->type)) > 0;
}

size_t matmul_scratch_bytes(const quanta_cuda_tensor* d) {
    return int8_path(d) ? (size_t)n_rows(d->src[1]) * flat_stride(d->src[1]->ne[0]) : 0;
}

int matmul_int8_launch(const quanta_cuda_tensor* d, const Launch& l) {
    const quanta_cuda_tensor *w = d->src[0], *x = d->src[1];
    const int64_t rows = n_rows(x), warps = rows * (x->ne[0] / 32);
    auto* act = static_cast<uint8_t*>(l.scratch);
    quantize_flat_kernel<<<blocks_for(warps * 32, 256), 256, 0, l.stream>>>(
        static_cast<const uint8_t*>(x->data), x->nb[1], x->nb[2], x->nb[3], x->ne[0], x->ne[1], x->ne[2], rows, act);
    if (check(cudaGetLastError(), "quantize activations launch")) return 1;
    const Int8Args a{static_cast<const uint8_t*>(w->data), {w->nb[0], w->nb[1], w->nb[2], w->nb[3]}, w->type,
                     geometry(w->type).bytes, act, static_cast<float*>(d->data), w->ne[0], d->ne[0], d->ne[1],
                     d->ne[2], x->ne[2] / w->ne[2], x->ne[3] / w->ne[3]};
    const unsigned row_blocks = (unsigned)((d->ne[0] + kWarpsPerBlock - 1) / kWarpsPerBlock);
    const unsigned chunks = (unsigned)((d->ne[1] + kRowsPerWarp - 1) / kRowsPerWarp);
    matmul_int8_kernel<<<dim3(row_blocks, (unsigned)(d->ne[2] * d->ne[3]), chunks), 32 * kWarpsPerBlock, 0,
                         l.stream>>>(a);
    return check(cudaGetLastError(), "int8 matmul launch");
}

// ---- the op ---------------------------------------------------------------------------------------------------

constexpr int64_t kMaxRowBytes = 64 << 10;  // shared memory for one dequantized row, within every listed GPU's

bool matmul_supports(const quanta_cuda_tensor* d) {
    const quanta_cuda_tensor *w = d->src[0], *x = d->src[1];
    return contiguous_f32(d) && rows_of_blocks(w) && x->type == kF32 && x->nb[0] == 4 && x->ne[0] == w->ne[0] &&
           d->ne[0] == w->ne[1] && d->ne[1] == x->ne[1] && d->ne[2] == x->ne[2] && d->ne[3] == x->ne[3] &&
           x->ne[2] % w->ne[2] == 0 && x->ne[3] % w->ne[3] == 0 && (int8_path(d) || w->ne[0] * 4 <= kMaxRowBytes);
}

int matmul_launch(const quanta_cuda_tensor* d, const Launch& l) {
    const cudaStream_t s = l.stream;
    const quanta_cuda_tensor *w = d->src[0], *x = d->src[1];
    if (n_elements(d) == 0) return 0;
    if (int8_path(d)) return matmul_int8_launch(d, l);
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

Kernel quantized_kernel(Op op) {
    switch (op) {
        case Op::MatMul: return {matmul_supports, matmul_launch, matmul_scratch_bytes};
        default: return {nullptr, nullptr};
    }
}

}  // namespace quanta_cuda
