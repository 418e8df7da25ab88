// The flat 8-bit activation format that k-quant row kernels and every GEMM
// read, on the CPU (cpu/act_formats.h) and on the GPU (kernels/quantized.cu):
// its layout, and the quantization of one 32-element block that defines it.
// Host and device code (QUANTA_HD), so both backends hold the same levels and
// scales bit for bit and tests/cpp/kernel_check.cpp can check the GPU's
// arithmetic on the CPU. Symmetric levels in [-127, 127], one f32 scale per 32
// elements, round half to even. A row of k elements (a multiple of 32) is
//   int8 q[k] | float d per block | float d * (sum of q) per block | int16 sum of q per 16 elements
// 1.375 bytes per element: a few rows stay in L1 while a weight row streams
// past them. A k-quant's sub-blocks (32 elements for q4_k/q5_k, 16 for q6_k)
// lie inside one activation block, so each sub-block's integer sum is scaled
// by its own block's d: one outlier costs the precision of 31 neighbours, not
// of a whole 256-element super-block (as with ggml's q8_K).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "quant/fp16.h"

namespace quanta {

QUANTA_HD static constexpr size_t flat_act_d(int64_t k) { return (size_t)k; }
QUANTA_HD static constexpr size_t flat_act_dsum(int64_t k) { return (size_t)k + (size_t)k / 8; }
QUANTA_HD static constexpr size_t flat_act_qsum(int64_t k) { return (size_t)k + (size_t)k / 4; }
QUANTA_HD static constexpr size_t flat_act_row_bytes(int64_t k) { return flat_act_qsum(k) + (size_t)k / 8; }

struct FlatActRow {
    const int8_t* q;
    const float* d;
    const float* dsum;
    const int16_t* qsum;
};
QUANTA_HD static inline FlatActRow flat_act_row(const void* row, int64_t k) {
    const auto* p = static_cast<const uint8_t*>(row);
    return {reinterpret_cast<const int8_t*>(p), reinterpret_cast<const float*>(p + flat_act_d(k)),
            reinterpret_cast<const float*>(p + flat_act_dsum(k)),
            reinterpret_cast<const int16_t*>(p + flat_act_qsum(k))};
}

// The levels of one value given its block's inverse scale id = 127 / amax: one multiply, round half to even.
QUANTA_HD static inline int flat_act_level(float x, float id) { return (int)rintf(x * id); }

// Symmetric 8-bit levels of the n values at x into q: returns the scale d = amax / 127, *total = the sum of
// the levels. Both activation formats (cpu/act_formats.h) take their levels from it, and the SIMD and GPU
// quantizers compute exactly this (the max is exact; one division, one multiply, one rounding).
QUANTA_HD static inline float quantize_levels(const float* x, int n, int8_t* q, int32_t* total) {
    float amax = 0.0f;
    for (int i = 0; i < n; ++i) amax = fmaxf(amax, fabsf(x[i]));
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int32_t sum = 0;
    for (int i = 0; i < n; ++i) {
        const int v = flat_act_level(x[i], id);
        q[i] = (int8_t)v;
        sum += v;
    }
    *total = sum;
    return amax / 127.0f;
}

// Block b of a flat row: the 32 values at x quantized into row (of k elements).
QUANTA_HD static inline void quantize_flat_block(const float* x, void* row, int64_t k, int64_t b) {
    auto* base = static_cast<uint8_t*>(row);
    int8_t* q = reinterpret_cast<int8_t*>(base) + 32 * b;
    int32_t total;
    const float d = quantize_levels(x, 32, q, &total);
    int32_t first = 0;  // the first 16 levels' sum
    for (int i = 0; i < 16; ++i) first += q[i];
    reinterpret_cast<float*>(base + flat_act_d(k))[b] = d;
    reinterpret_cast<float*>(base + flat_act_dsum(k))[b] = d * (float)total;
    reinterpret_cast<int16_t*>(base + flat_act_qsum(k))[2 * b] = (int16_t)first;
    reinterpret_cast<int16_t*>(base + flat_act_qsum(k))[2 * b + 1] = (int16_t)(total - first);
}

}  // namespace quanta
