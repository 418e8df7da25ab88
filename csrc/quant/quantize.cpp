// The 32-element block quantizers. The arithmetic mirrors ggml's reference
// quantizers operation for operation (float32 throughout, truncating casts
// where ggml casts), and this file is built with -ffp-contract=off, so the
// output is bit-identical to ggml's and gguf-py's.
#include "quant/quantize.h"

#include <cmath>
#include <cstring>

#include "base/error.h"
#include "quant/fp16.h"
#include "quant/quantize_k.h"

namespace quanta {
namespace {

constexpr int QK = 32;

// ggml truncates with a C cast, which is undefined for inf/nan (they arise
// when a subnormal scale's reciprocal overflows); x86 yields 0 there, as does
// numpy, so we define it that way on every machine.
int trunc_finite(float v) { return std::isfinite(v) ? (int)v : 0; }

// The element of largest magnitude, keeping its sign; the first one on ties.
float signed_absmax(const float* x) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK; ++j) {
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    }
    return max;
}

void min_max(const float* x, float* mn, float* mx) {
    *mn = x[0];
    *mx = x[0];
    for (int j = 1; j < QK; ++j) {
        *mn = x[j] < *mn ? x[j] : *mn;
        *mx = x[j] > *mx ? x[j] : *mx;
    }
}

// Packs 32 values of 4 (or 5) bits: element j's low nibble in byte j (j < 16)
// or the high nibble of byte j - 16; fifth bits into qh, bit j for element j.
void pack_nibbles(const uint8_t* q, uint8_t* qs, uint32_t* qh) {
    uint32_t high = 0;
    for (int j = 0; j < QK / 2; ++j) {
        qs[j] = (uint8_t)((q[j] & 0x0f) | ((q[j + QK / 2] & 0x0f) << 4));
        high |= (uint32_t)((q[j] >> 4) & 1) << j;
        high |= (uint32_t)((q[j + QK / 2] >> 4) & 1) << (j + QK / 2);
    }
    if (qh) *qh = high;
}

// Stores 32 levels after a block's scale fields: nibbles for 4 bits; for 5
// bits the u32 of fifth bits, then the nibbles.
void store_levels(const uint8_t* q, uint8_t* out, int bits) {
    if (bits == 4) return pack_nibbles(q, out, nullptr);
    uint32_t qh;
    pack_nibbles(q, out + 4, &qh);
    std::memcpy(out, &qh, 4);
}

// q4_0 / q5_0: symmetric, d = max / -(2^(bits-1)), q = trunc(x / d + 2^(bits-1) + 0.5).
void q_sym(const float* x, uint8_t* b, int bits) {
    const float half = (float)(1 << (bits - 1));
    const int qmax = (1 << bits) - 1;
    const float d = signed_absmax(x) / -half;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint8_t q[QK];
    for (int j = 0; j < QK; ++j) {
        const int v = (int8_t)trunc_finite(x[j] * id + (half + 0.5f));
        q[j] = (uint8_t)(v < qmax ? v : qmax);
    }
    f16_store(b, d);
    store_levels(q, b + 2, bits);
}

// q4_1 / q5_1: affine, d = (max - min) / (2^bits - 1), q = trunc((x - min) / d + 0.5).
void q_affine(const float* x, uint8_t* b, int bits) {
    const int qmax = (1 << bits) - 1;
    float mn, mx;
    min_max(x, &mn, &mx);
    const float d = (mx - mn) / (float)qmax;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint8_t q[QK];
    for (int j = 0; j < QK; ++j) {
        const int v = (int8_t)trunc_finite((x[j] - mn) * id + 0.5f);
        q[j] = (uint8_t)(v < qmax ? v : qmax);
    }
    f16_store(b, d);
    f16_store(b + 2, mn);
    store_levels(q, b + 4, bits);
}

// q8_0: d = absmax / 127, q = round-half-away(x / d).
void q8_0(const float* x, uint8_t* b) {
    float amax = 0.0f;
    for (int j = 0; j < QK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    f16_store(b, d);
    for (int j = 0; j < QK; ++j) b[2 + j] = (uint8_t)(int8_t)trunc_finite(std::round(x[j] * id));
}

}  // namespace

bool can_quantize(DType type) {
    switch (type) {
        case DType::F32: case DType::F16: case DType::BF16:
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
        case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
            return true;
        default:
            return false;
    }
}

void quantize_row(DType type, const float* src, void* dst, int64_t n) {
    const TypeInfo& info = type_info(type);
    if (!can_quantize(type)) fail(ErrorKind::Unsupported, std::string("no quantizer for type ") + info.name);
    QUANTA_CHECK_ARG(n % info.block_size == 0, std::string("row length ") + std::to_string(n) +
                                                    " is not a multiple of " + info.name + "'s block size " +
                                                    std::to_string(info.block_size));
    uint8_t* out = static_cast<uint8_t*>(dst);
    const int64_t blocks = n / info.block_size;
    switch (type) {
        case DType::F32: std::memcpy(dst, src, (size_t)n * 4); return;
        case DType::F16:
            for (int64_t i = 0; i < n; ++i) f16_store(out + 2 * i, src[i]);
            return;
        case DType::BF16:
            for (int64_t i = 0; i < n; ++i) {
                const uint16_t h = f32_to_bf16(src[i]);
                std::memcpy(out + 2 * i, &h, 2);
            }
            return;
        case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
            for (int64_t i = 0; i < blocks; ++i) quantize_k_block(type, src + i * 256, out + i * info.block_bytes);
            return;
        default: break;
    }
    for (int64_t i = 0; i < blocks; ++i) {
        const float* x = src + i * QK;
        uint8_t* b = out + i * info.block_bytes;
        switch (type) {
            case DType::Q4_0: q_sym(x, b, 4); break;
            case DType::Q5_0: q_sym(x, b, 5); break;
            case DType::Q4_1: q_affine(x, b, 4); break;
            case DType::Q5_1: q_affine(x, b, 5); break;
            case DType::Q8_0: q8_0(x, b); break;
            default: break;
        }
    }
}

}  // namespace quanta
