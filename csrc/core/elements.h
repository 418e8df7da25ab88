// Element access shared by the op references (op_table.cpp) and the CPU
// kernels: the address of an element through a tensor's strides, and loads
// and stores of the plain float types (f32, f16, bf16) as f32.
#pragma once

#include <cstring>

#include "core/tensor.h"
#include "quant/fp16.h"

namespace quanta {

inline char* at(const Tensor* t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    return static_cast<char*>(t->data) + i0 * t->nb[0] + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3];
}

inline bool plain_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

inline float load_float(DType t, const char* p) {
    uint16_t h;
    switch (t) {
        case DType::F16: std::memcpy(&h, p, 2); return f16_to_f32(h);
        case DType::BF16: std::memcpy(&h, p, 2); return bf16_to_f32(h);
        default: {
            float f;
            std::memcpy(&f, p, 4);
            return f;
        }
    }
}

inline void store_float(DType t, char* p, float v) {
    uint16_t h;
    switch (t) {
        case DType::F16: h = f32_to_f16(v); std::memcpy(p, &h, 2); return;
        case DType::BF16: h = f32_to_bf16(v); std::memcpy(p, &h, 2); return;
        default: std::memcpy(p, &v, 4); return;
    }
}

}  // namespace quanta
