// MatMul on the GPU for weights in any supported storage type (dequantize.cuh)
// against f32 activation rows. Two paths (issue 15):
// - quantized weights: the activation rows are quantized to the flat 8-bit
//   format the CPU uses (quant/act_flat.h, the same levels bit for bit) in
//   scratch memory, then one to four warps per weight row read it as pairs of
//   int8 groups (quant/int8_groups.h: each weight byte once, 16-byte loads
//   where the type's layout allows) and dot them with dp4a against up to
//   kRowsPerWarp activation rows at a time: the CPU's arithmetic, so both
//   backends' logits differ by float summation order only, at decode and at
//   prefill alike;
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

using quanta::FlatActRow;
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

constexpr int kRowsPerWarp = 8;  // activation rows one warp dots each weight pair with (registers: 8 sums)
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
    const uint8_t* act;  // flat rows, flat_stride(k) apart: m per batch, batch after batch
    float* out;
    int64_t k, n, m, b2, r2, r3;
    int warps_per_row;  // 1, 2 or 4 (kWarpsPerBlock / warps_per_row rows a block)
};

// Warps that share a weight row: enough for every lane to get a pair (of the row's k / 32), at most a whole
// block. At decode a 896 x 4864 matrix is 896 rows, a few warps an SM if each row had one warp; splitting
// the row's k over 4 raises the loads in flight fourfold, and the fixed order of the block's sum keeps the
// result deterministic, unlike atomics.
int warps_per_row(int64_t k) { return k / 32 >= 128 ? 4 : k / 32 >= 64 ? 2 : 1; }

// Block x: kWarpsPerBlock / W weight rows, W warps each; warp s of a row takes its pairs s * 32 + lane,
// s * 32 + lane + 32 W, ... (adjacent lanes read adjacent 16-byte runs), dots each with chunk z's
// kRowsPerWarp activation rows, and the row's warps add their lanes' sums in a fixed order. Chunks after the
// first read the weight row again, from L2 while the rows fit there.
template <DType T, int ALIGN>
__global__ void matmul_int8_kernel(Int8Args a) {
    using namespace quanta::block;
    constexpr int kPairs = pairs_per_block(T), kGroups = 2 * kPairs;
    constexpr int64_t kBlockBytes = geometry(static_cast<uint32_t>(T)).bytes;
    __shared__ float partial[kWarpsPerBlock][kRowsPerWarp];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, per_row = a.warps_per_row;
    const int64_t n = (int64_t)blockIdx.x * (kWarpsPerBlock / per_row) + warp / per_row;
    const int64_t i2 = blockIdx.y % a.b2, i3 = blockIdx.y / a.b2;
    const int64_t m0 = (int64_t)blockIdx.z * kRowsPerWarp, rows = min((int64_t)kRowsPerWarp, a.m - m0);
    const uint8_t* act = a.act + ((size_t)blockIdx.y * a.m + m0) * flat_stride(a.k);
    float sum[kRowsPerWarp] = {};
    if (n < a.n) {  // no return before the barrier: the block's other rows need it
        const uint8_t* w = a.w + (i3 / a.r3) * a.w_nb[3] + (i2 / a.r2) * a.w_nb[2] + n * a.w_nb[1];
        for (int64_t j = (warp % per_row) * 32 + lane; j < a.k / 32; j += 32 * per_row) {
            const int64_t blk = j / kPairs;
            const Int8Pair pair = int8_pair<T, ALIGN>(w + blk * kBlockBytes, (int)(j % kPairs));
#pragma unroll
            for (int r = 0; r < kRowsPerWarp; ++r) {
                if (r >= rows) break;
                const FlatActRow x = flat_act_row(act + r * flat_stride(a.k), a.k);
                sum[r] += int8_group_dot<T>(pair, 0, act_group(x, blk * kGroups + pair.g[0]));
                sum[r] += int8_group_dot<T>(pair, 1, act_group(x, blk * kGroups + pair.g[1]));
            }
        }
    }
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
        float v = sum[r];
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) partial[warp][r] = v;
    }
    __syncthreads();
    if (n < a.n && warp % per_row == 0 && lane < rows) {
        float total = 0;
        for (int s = 0; s < per_row; ++s) total += partial[warp + s][lane];
        a.out[(blockIdx.y * a.m + m0 + lane) * a.n + n] = total;
    }
}

// Whether the weights' rows keep every pair field at its natural alignment (pair_alignment), as GGUF's
// 32-byte tensor alignment and whole-block rows give; a file with a smaller alignment takes byte loads.
bool aligned_for(const quanta_cuda_tensor* w, int alignment) {
    uint64_t bits = reinterpret_cast<uintptr_t>(w->data);
    for (int i = 1; i < 4; ++i) bits |= w->nb[i];
    return bits % (uint64_t)alignment == 0;
}

bool int8_path(const quanta_cuda_tensor* d) {
    return quanta::block::pairs_per_block(static_cast<DType>(d->src[0]->type)) > 0;
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
    const Int8Args a{static_cast<const uint8_t*>(w->data), {w->nb[0], w->nb[1], w->nb[2], w->nb[3]}, act,
                     static_cast<float*>(d->data), w->ne[0], d->ne[0], d->ne[1], d->ne[2], x->ne[2] / w->ne[2],
                     x->ne[3] / w->ne[3], warps_per_row(w->ne[0])};
    const int64_t rows_per_block = kWarpsPerBlock / a.warps_per_row;
    const dim3 grid((unsigned)((d->ne[0] + rows_per_block - 1) / rows_per_block), (unsigned)(d->ne[2] * d->ne[3]),
                    (unsigned)((d->ne[1] + kRowsPerWarp - 1) / kRowsPerWarp));
    quanta::block::with_pair_type(static_cast<DType>(w->type), [&](auto type) {
        constexpr DType T = decltype(type)::value;
        constexpr int kAlign = quanta::block::pair_alignment(T);
        if (aligned_for(w, kAlign)) matmul_int8_kernel<T, kAlign><<<grid, 32 * kWarpsPerBlock, 0, l.stream>>>(a);
        else matmul_int8_kernel<T, 1><<<grid, 32 * kWarpsPerBlock, 0, l.stream>>>(a);
    });
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
