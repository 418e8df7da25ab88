// The 8-bit activation formats that quantized matmuls run on. Activations are
// quantized per row on the fly (symmetric, levels in [-127, 127], one f32
// scale per 32 elements, round half to even), so weight x activation products
// become integer dot products. The formats are internal to quanta (never
// stored in files), which lets them carry what the kernels need: an f32 scale
// (finer than ggml's f16) and precomputed sums for offset terms. Both formats
// hold the same levels and scales bit for bit; they differ in layout.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/act_flat.h"
#include "quant/types.h"

namespace quanta::cpu {

// Paired: the row kernels of the 32-element weight formats (q4_0, q4_1, q5_0,
// q5_1, q8_0). Blocks stored in pairs, so one 64-byte load holds two blocks'
// levels and one 64-byte load their scales spread over the lanes of an integer
// dot. A row with an odd block count ends in a half-empty pair.
struct ActPair32 {
    float d[2];     // block 2p + h: x ~ d[h] * q[32 h + i]
    float dsum[2];  // d[h] * (sum of the block's q), for weights with an offset (q - 8) or a min
    float d16[16];  // d[0] x 8, d[1] x 8: the scales of the 16 lanes of a 64-byte integer dot
    int8_t q[64];
};
static_assert(sizeof(ActPair32) == 144, "ActPair32 layout");

// Block b of a row of pairs.
struct ActBlock32Ref {
    float d, dsum;
    const int8_t* q;
};
inline ActBlock32Ref act_block32(const void* row, int64_t b) {
    const ActPair32& p = static_cast<const ActPair32*>(row)[b / 2];
    const int h = (int)(b & 1);
    return {p.d[h], p.dsum[h], p.q + 32 * h};
}

// Flat: the k-quant row kernels (q4_k, q5_k, q6_k) and every prefill GEMM
// (panel.h); its layout, shared with the GPU, is in quant/act_flat.h. The
// kernels spread a block's d over their lanes themselves.

enum class ActFormat { None, Paired, Flat };

// The activation format a weight type's row kernel uses (None: no fast kernel).
inline ActFormat act_format_for(DType weight) {
    switch (weight) {
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
            return ActFormat::Paired;
        case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
            return ActFormat::Flat;
        default:
            return ActFormat::None;
    }
}

// Bytes of one activation row of n elements (a multiple of 32) in `format`.
inline size_t act_row_bytes(ActFormat format, int64_t n) {
    switch (format) {
        case ActFormat::Paired: return (size_t)((n / 32 + 1) / 2) * sizeof(ActPair32);
        case ActFormat::Flat: return flat_act_row_bytes(n);
        default: return 0;
    }
}

}  // namespace quanta::cpu
