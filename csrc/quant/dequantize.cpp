// Rows of any supported type as floats, block by block (quant/block_dequant.h).
// This file is compiled with -ffp-contract=off so that `d * q - m` is never
// fused: the results stay bit-identical with ggml's reference.
#include "quant/dequantize.h"

#include <cstring>

#include "base/error.h"
#include "quant/block_dequant.h"
#include "quant/fp16.h"

namespace quanta {
namespace {

using namespace block;

template <typename T>
void cast_row(const void* src, float* dst, int64_t n) {
    const uint8_t* p = static_cast<const uint8_t*>(src);
    for (int64_t i = 0; i < n; ++i) {
        T v;
        std::memcpy(&v, p + i * sizeof(T), sizeof(T));
        dst[i] = (float)v;
    }
}

using BlockFn = void (*)(const uint8_t*, float*);

BlockFn block_dequantizer(DType type) {
    switch (type) {
        case DType::Q4_0: return dq_q4_0;
        case DType::Q4_1: return dq_q4_1;
        case DType::Q5_0: return dq_q5_0;
        case DType::Q5_1: return dq_q5_1;
        case DType::Q8_0: return dq_q8_0;
        case DType::Q8_1: return dq_q8_1;
        case DType::Q2_K: return dq_q2_k;
        case DType::Q3_K: return dq_q3_k;
        case DType::Q4_K: return dq_q4_k;
        case DType::Q5_K: return dq_q5_k;
        case DType::Q6_K: return dq_q6_k;
        case DType::Q8_K: return dq_q8_k;
        default: return nullptr;
    }
}

}  // namespace

void dequantize_row(DType type, const void* src, float* dst, int64_t n) {
    const TypeInfo& info = type_info(type);
    QUANTA_CHECK_ARG(n % info.block_size == 0, "row length is not a multiple of the block size");
    const uint8_t* p = static_cast<const uint8_t*>(src);
    switch (type) {
        case DType::F32: std::memcpy(dst, src, (size_t)n * 4); return;
        case DType::F16:
            for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(load_u16(p + 2 * i));
            return;
        case DType::BF16:
            for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(load_u16(p + 2 * i));
            return;
        case DType::I8: cast_row<int8_t>(src, dst, n); return;
        case DType::I16: cast_row<int16_t>(src, dst, n); return;
        case DType::I32: cast_row<int32_t>(src, dst, n); return;
        case DType::I64: cast_row<int64_t>(src, dst, n); return;
        case DType::F64: cast_row<double>(src, dst, n); return;
        default: break;
    }
    const BlockFn fn = block_dequantizer(type);
    if (!fn) fail(ErrorKind::Unsupported, std::string("no dequantizer for type ") + info.name);
    for (int64_t i = 0; i < n / info.block_size; ++i) fn(p + i * info.block_bytes, dst + i * info.block_size);
}

}  // namespace quanta
