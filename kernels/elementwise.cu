// Element-wise ops on the GPU: Copy between f32, f16 and bf16 through any
// strides, Add and Mul with the CPU backend's broadcast (each index of src[1]
// taken modulo its extent), Scale, and the activations silu, gelu (tanh),
// gelu_erf and quick_gelu, and Glu (silu or gelu of the gate times up), f32 and contiguous. One thread per element in a
// grid-stride loop; the math is the op table's reference formula in float,
// so results agree with the CPU backend to float rounding, and conversions
// round to nearest even as the CPU's do.
#include "kernel_table.cuh"

namespace quanta_cuda {
namespace {

struct Dims {
    int64_t ne[4];
};

Dims dims(const quanta_cuda_tensor* t) { return {{t->ne[0], t->ne[1], t->ne[2], t->ne[3]}}; }

__global__ void binary_f32(float* y, const float* a, const float* b, Dims d, Dims bd, int64_t n, bool mul) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i;
        const int64_t i0 = r % d.ne[0];
        r /= d.ne[0];
        const int64_t i1 = r % d.ne[1];
        r /= d.ne[1];
        const int64_t i2 = r % d.ne[2], i3 = r / d.ne[2];
        const int64_t j = ((i3 % bd.ne[3] * bd.ne[2] + i2 % bd.ne[2]) * bd.ne[1] + i1 % bd.ne[1]) * bd.ne[0] + i0 % bd.ne[0];
        y[i] = mul ? a[i] * b[j] : a[i] + b[j];
    }
}

// act(gate) * up, act by GluAct, as the op table's reference formulas in float.
__global__ void glu_f32(float* y, const float* gate, const float* up, int64_t n, bool silu) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float x = gate[i];
        const float a = silu ? x / (1.0f + expf(-x))
                             : 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
        y[i] = a * up[i];
    }
}

// ---- copy: both tensors walked in logical row-major order (they may differ in shape, not in count) ------------

struct Strided {
    int64_t ne[4];
    uint64_t nb[4];
    uint32_t type;
};

Strided strided(const quanta_cuda_tensor* t) {
    return {{t->ne[0], t->ne[1], t->ne[2], t->ne[3]}, {t->nb[0], t->nb[1], t->nb[2], t->nb[3]}, t->type};
}

// The byte offset of flat element i of t.
__device__ uint64_t offset(const Strided& t, int64_t i) {
    const int64_t i0 = i % t.ne[0];
    i /= t.ne[0];
    const int64_t i1 = i % t.ne[1];
    i /= t.ne[1];
    return i0 * t.nb[0] + i1 * t.nb[1] + (i % t.ne[2]) * t.nb[2] + (i / t.ne[2]) * t.nb[3];
}

__global__ void copy_kernel(uint8_t* dst, Strided d, const uint8_t* src, Strided s, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        store_float(d.type, dst + offset(d, i), load_float(s.type, src + offset(s, i)));
    }
}

bool copy_supports(const quanta_cuda_tensor* n) {
    return float_type(n->type) && float_type(n->src[0]->type) && n_elements(n) == n_elements(n->src[0]);
}

int copy_launch(const quanta_cuda_tensor* n, const Launch& l) {
    const cudaStream_t s = l.stream;
    const int64_t count = n_elements(n);
    if (count == 0) return 0;
    copy_kernel<<<blocks_for(count, 256), 256, 0, s>>>(static_cast<uint8_t*>(n->data), strided(n),
                                                       static_cast<const uint8_t*>(n->src[0]->data),
                                                       strided(n->src[0]), count);
    return check(cudaGetLastError(), "copy launch");
}

// ---- add, mul --------------------------------------------------------------------------------------------

bool binary_supports(const quanta_cuda_tensor* n) {
    return contiguous_f32(n) && contiguous_f32(n->src[0]) && contiguous_f32(n->src[1]) && same_shape(n, n->src[0]);
}

int binary_launch(const quanta_cuda_tensor* n, const Launch& l) {
    const cudaStream_t s = l.stream;
    const int64_t count = n_elements(n);
    if (count == 0) return 0;
    binary_f32<<<blocks_for(count, 256), 256, 0, s>>>(static_cast<float*>(n->data),
                                                      static_cast<const float*>(n->src[0]->data),
                                                      static_cast<const float*>(n->src[1]->data), dims(n),
                                                      dims(n->src[1]), count, n->op == (int32_t)Op::Mul);
    return check(cudaGetLastError(), "add/mul launch");
}

bool glu_supports(const quanta_cuda_tensor* n) {
    return contiguous_f32(n) && contiguous_f32(n->src[0]) && contiguous_f32(n->src[1]) && same_shape(n, n->src[0]);
}

int glu_launch(const quanta_cuda_tensor* n, const Launch& l) {
    const int64_t count = n_elements(n);
    if (count == 0) return 0;
    glu_f32<<<blocks_for(count, 256), 256, 0, l.stream>>>(static_cast<float*>(n->data),
                                                           static_cast<const float*>(n->src[0]->data),
                                                           static_cast<const float*>(n->src[1]->data), count,
                                                           n->i[0] == (int32_t)GluAct::Silu);
    return check(cudaGetLastError(), "glu launch");
}

// The op table's unary_value, in float.
template <Op OP>
__device__ float unary(float x, float f0) {
    if constexpr (OP == Op::Scale) return x * f0;
    if constexpr (OP == Op::Silu) return x / (1.0f + expf(-x));
    if constexpr (OP == Op::GeluErf) return 0.5f * x * erfcf(-x * 0.70710678118654752f);
    if constexpr (OP == Op::QuickGelu) return x / (1.0f + expf(-1.702f * x));
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));  // Gelu
}

template <Op OP>
__global__ void unary_f32(float* y, const float* x, int64_t n, float f0) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = unary<OP>(x[i], f0);
}

bool unary_supports(const quanta_cuda_tensor* n) {
    return contiguous_f32(n) && contiguous_f32(n->src[0]) && same_shape(n, n->src[0]);
}

template <Op OP>
int unary_launch(const quanta_cuda_tensor* n, const Launch& l) {
    const cudaStream_t s = l.stream;
    const int64_t count = n_elements(n);
    if (count == 0) return 0;
    unary_f32<OP><<<blocks_for(count, 256), 256, 0, s>>>(static_cast<float*>(n->data),
                                                         static_cast<const float*>(n->src[0]->data), count, n->f[0]);
    return check(cudaGetLastError(), "unary launch");
}

}  // namespace

Kernel elementwise_kernel(Op op) {
    switch (op) {
        case Op::Copy: return {copy_supports, copy_launch};
        case Op::Add: case Op::Mul: return {binary_supports, binary_launch};
        case Op::Scale: return {unary_supports, unary_launch<Op::Scale>};
        case Op::Silu: return {unary_supports, unary_launch<Op::Silu>};
        case Op::Gelu: return {unary_supports, unary_launch<Op::Gelu>};
        case Op::GeluErf: return {unary_supports, unary_launch<Op::GeluErf>};
        case Op::QuickGelu: return {unary_supports, unary_launch<Op::QuickGelu>};
        case Op::Glu: return {glu_supports, glu_launch};
        default: return {nullptr, nullptr};
    }
}

}  // namespace quanta_cuda
