// Weights and tables in any supported storage type, read on the GPU: each
// type's block geometry, and a block or row dequantized by
// quant/block_dequant.h, the code the CPU's reference runs. The files that
// include this are built with --fmad=false, so dequantized values keep the
// reference's bits.
#pragma once

#include "kernel_table.cuh"
#include "quant/block_dequant.h"
#include "quant/types.h"

namespace quanta_cuda {

using quanta::DType;

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

__device__ inline void dequantize_block(uint32_t type, const uint8_t* b, float* y) {
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
__device__ inline void dequantize_row(uint32_t type, const uint8_t* row, int64_t ne0, float* y) {
    const Geometry g = geometry(type);
    for (int64_t i = threadIdx.x; i < ne0 / g.size; i += blockDim.x) dequantize_block(type, row + i * g.bytes, y + i * g.size);
}

// Rows stored block after block, as ggml lays out every type.
inline bool rows_of_blocks(const quanta_cuda_tensor* t) {
    const Geometry g = geometry(t->type);
    return g.size > 0 && t->ne[0] % g.size == 0 && t->nb[0] == (uint64_t)g.bytes;
}

}  // namespace quanta_cuda
