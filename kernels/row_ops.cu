// Row-wise ops on the GPU, one block of threads per row: RmsNorm, SoftMax (with
// its scale and optional mask) and Rope, f32 and contiguous. Sums and maxima
// are reduced across the block by warp shuffles (kernel_table.cuh); rope's angles are computed
// in double, as the CPU backend does, because a float angle of a position in
// the thousands is off by more than the op's tolerance.
#include <cmath>

#include "kernel_table.cuh"

namespace quanta_cuda {
namespace {

constexpr int kThreads = 256;  // per row: 8 warps

bool same_f32_rows(const quanta_cuda_tensor* n) {
    return contiguous_f32(n) && contiguous_f32(n->src[0]) && same_shape(n, n->src[0]);
}

// ---- rms_norm: x / sqrt(mean(x^2) + eps) --------------------------------------

__global__ void rms_norm_f32(float* y, const float* x, int64_t n0, float eps) {
    const float* xr = x + blockIdx.x * n0;
    float* yr = y + blockIdx.x * n0;
    float sum = 0;
    for (int64_t j = threadIdx.x; j < n0; j += kThreads) sum += xr[j] * xr[j];
    const float s = 1.0f / sqrtf(block_reduce<kThreads, false>(sum) / (float)n0 + eps);
    for (int64_t j = threadIdx.x; j < n0; j += kThreads) yr[j] = xr[j] * s;
}

int rms_norm_launch(const quanta_cuda_tensor* n, const Launch& l) {
    const cudaStream_t s = l.stream;
    if (n_elements(n) == 0) return 0;
    rms_norm_f32<<<(unsigned)n_rows(n), kThreads, 0, s>>>(static_cast<float*>(n->data),
                                                          static_cast<const float*>(n->src[0]->data), n->ne[0], n->f[0]);
    return check(cudaGetLastError(), "rms_norm launch");
}

// ---- softmax(x * scale + mask) along rows ---------------------------------------
// The mask, where given, has a row per i1 (it is shared by every i2, i3), mask_stride floats apart. A row
// that is masked everywhere gives zeros, as on the CPU.

__global__ void softmax_f32(float* y, const float* x, const float* mask, int64_t mask_stride, int64_t n0,
                            int64_t n1, float scale) {
    const int64_t r = blockIdx.x;
    const float* xr = x + r * n0;
    const float* mr = mask ? mask + (r % n1) * mask_stride : nullptr;
    float* yr = y + r * n0;
    float top = -INFINITY;
    for (int64_t j = threadIdx.x; j < n0; j += kThreads) top = fmaxf(top, xr[j] * scale + (mr ? mr[j] : 0.0f));
    top = block_reduce<kThreads, true>(top);
    if (top == -INFINITY) {
        for (int64_t j = threadIdx.x; j < n0; j += kThreads) yr[j] = 0.0f;
        return;
    }
    float sum = 0;
    for (int64_t j = threadIdx.x; j < n0; j += kThreads) {
        const float e = expf(xr[j] * scale + (mr ? mr[j] : 0.0f) - top);
        yr[j] = e;
        sum += e;
    }
    const float inv = 1.0f / block_reduce<kThreads, false>(sum);
    for (int64_t j = threadIdx.x; j < n0; j += kThreads) yr[j] *= inv;
}

bool softmax_supports(const quanta_cuda_tensor* n) {
    const quanta_cuda_tensor* m = n->src[1];
    return same_f32_rows(n) &&
           (!m || (m->type == kF32 && m->nb[0] == 4 && m->nb[1] % 4 == 0 && m->ne[0] == n->ne[0] && m->ne[1] >= n->ne[1]));
}

int softmax_launch(const quanta_cuda_tensor* n, const Launch& l) {
    const cudaStream_t s = l.stream;
    if (n_elements(n) == 0) return 0;
    const quanta_cuda_tensor* m = n->src[1];
    softmax_f32<<<(unsigned)n_rows(n), kThreads, 0, s>>>(
        static_cast<float*>(n->data), static_cast<const float*>(n->src[0]->data),
        m ? static_cast<const float*>(m->data) : nullptr, m ? (int64_t)(m->nb[1] / 4) : 0, n->ne[0], n->ne[1], n->f[0]);
    return check(cudaGetLastError(), "softmax launch");
}

// ---- rope: the first n_rot elements of each row rotated in pairs, the rest copied --------------------------
// x is [head size, heads, tokens, 1]; token i2 is at position pos[i2]. Pair i turns by
// pos * freq_scale * base^(-2i / n_rot) (divided by factors[i] where given): adjacent elements (2i, 2i + 1)
// in normal mode, halves (i, i + n_rot / 2) in neox mode.

constexpr int32_t kRopeNormal = 0, kRopeNeox = 2;  // csrc/core/tensor.h's RopeMode

__global__ void rope_f32(float* y, const float* x, const int32_t* pos, const float* factors, int64_t n0, int64_t n1,
                         int n_rot, bool neox, double base, double freq_scale) {
    const int64_t r = blockIdx.x;
    const float* xr = x + r * n0;
    float* yr = y + r * n0;
    const double p = pos[(r / n1)];  // rows run over heads (i1) first, then tokens (i2)
    const int half = n_rot / 2;
    for (int64_t k = threadIdx.x; k < n0; k += kThreads) {
        if (k >= n_rot) {
            yr[k] = xr[k];
            continue;
        }
        if (k >= half) continue;  // the second element of a pair: its first one's thread writes it
        const int i = (int)k;
        double theta = p * freq_scale * pow(base, -2.0 * i / n_rot);
        if (factors) theta /= factors[i];
        const float cs = (float)cos(theta), sn = (float)sin(theta);
        const int j0 = neox ? i : 2 * i, j1 = neox ? i + half : 2 * i + 1;
        const float x0 = xr[j0], x1 = xr[j1];
        yr[j0] = x0 * cs - x1 * sn;
        yr[j1] = x0 * sn + x1 * cs;
    }
}

bool rope_supports(const quanta_cuda_tensor* n) {
    const quanta_cuda_tensor *pos = n->src[1], *factors = n->src[2];
    const int n_rot = n->i[0], mode = n->i[1];
    return same_f32_rows(n) && n->ne[3] == 1 && pos && pos->type == kI32 && contiguous(pos, 4) &&
           pos->ne[0] >= n->ne[2] && n_rot > 0 && n_rot % 2 == 0 && n_rot <= n->ne[0] &&
           (mode == kRopeNormal || mode == kRopeNeox) &&
           (!factors || (contiguous_f32(factors) && factors->ne[0] >= n_rot / 2));
}

int rope_launch(const quanta_cuda_tensor* n, const Launch& l) {
    const cudaStream_t s = l.stream;
    if (n_elements(n) == 0) return 0;
    const quanta_cuda_tensor* factors = n->src[2];
    rope_f32<<<(unsigned)n_rows(n), kThreads, 0, s>>>(
        static_cast<float*>(n->data), static_cast<const float*>(n->src[0]->data),
        static_cast<const int32_t*>(n->src[1]->data), factors ? static_cast<const float*>(factors->data) : nullptr,
        n->ne[0], n->ne[1], n->i[0], n->i[1] == kRopeNeox, (double)n->f[0], (double)n->f[1]);
    return check(cudaGetLastError(), "rope launch");
}

}  // namespace

Kernel row_kernel(Op op) {
    switch (op) {
        case Op::RmsNorm: return {same_f32_rows, rms_norm_launch};
        case Op::SoftMax: return {softmax_supports, softmax_launch};
        case Op::Rope: return {rope_supports, rope_launch};
        default: return {nullptr, nullptr};
    }
}

}  // namespace quanta_cuda
