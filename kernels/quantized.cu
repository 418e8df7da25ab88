// MatMul on the GPU for weights in any supported storage type (dequantize.cuh)
// against f32 activation rows. The plain first version (issue 15): a block of
// threads per weight row dequantizes it into shared memory once and dots it
// with every activation row in float; correct for every type, not yet fast
// (no 8-bit activations, no tensor cores).
#include "dequantize.cuh"

namespace quanta_cuda {
namespace {

constexpr int kThreads = 128;

// ---- matmul: out[i3][i2][m][n] = w[i3 / r3][i2 / r2] row n . x[i3][i2] row m ----------------------------------

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

Kernel quantized_kernel(Op op) {
    switch (op) {
        case Op::MatMul: return {matmul_supports, matmul_launch};
        default: return {nullptr, nullptr};
    }
}

}  // namespace quanta_cuda
