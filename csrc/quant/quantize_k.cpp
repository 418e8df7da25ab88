// K-quant quantization in three steps:
//   1. per sub-block, a weighted least-squares search over a grid of scales
//      (weights favour large-magnitude values, as ggml's reference does);
//   2. the sub-block scales are quantized to 6 bits (8 bits for q6_k)
//      against one f16 super-block scale, and every value is re-quantized to
//      the nearest level under those final scales;
//   3. refinement that minimises the block's plain squared error: each
//      sub-block's quantized scale (and min) is nudged to its neighbours, and
//      the f16 super-block scales are re-fitted by least squares. A change is
//      kept only if it lowers the error, so refinement never makes RMSE worse.
#include "quant/quantize_k.h"

#include <cmath>
#include <cstring>

#include "quant/fp16.h"

namespace quanta {
namespace {

constexpr int QK_K = 256;

// The level nearest x within [lo, hi] (integers), as a float: clamping before rounding gives what rounding
// then clamping would, and adding then subtracting 1.5 * 2^23 rounds half to even. Only float operations
// (no libm lrintf call), so the per-element loops below vectorise.
float level(float x, float lo, float hi) {
    x = x < lo ? lo : x > hi ? hi : x;
    return (x + 12582912.0f) - 12582912.0f;
}

// The hot loops sum into kLanes partial sums, element i into lane i % kLanes, added pairwise at the end:
// a fixed order (so every machine gets the same blocks) that fits one SIMD register.
constexpr int kLanes = 4;
float lane_total(const float* acc) { return (acc[0] + acc[1]) + (acc[2] + acc[3]); }

float f16_round(float x) { return f16_to_f32(f32_to_f16(x)); }

// ---- step 1: sub-block fits -------------------------------------------------

// x ~ scale * L + offset with L in [0, nmax] and offset <= 0, minimising the
// weighted squared error over candidate grids. Returns scale; *neg_offset = -offset.
float fit_affine(const float* x, const float* w, int n, int nmax, float rmin, float rdelta, int nstep,
                 float* neg_offset) {
    float lo = x[0], hi = x[0], sum_w = 0, sum_x = 0;
    for (int i = 0; i < n; ++i) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi == lo) {
        *neg_offset = -lo;
        return 0.0f;
    }
    auto error_of = [&](float scale, float offset) {
        const float inv = 1.0f / scale;  // multiplying, not dividing, per element: the loop is the hot spot
        float err[kLanes] = {};
        for (int i = 0; i < n; i += kLanes)
            for (int k = 0; k < kLanes; ++k) {
                const float l = level((x[i + k] - offset) * inv, 0.0f, (float)nmax);
                const float diff = scale * l + offset - x[i + k];
                err[k] += w[i + k] * diff * diff;
            }
        return lane_total(err);
    };
    float best_scale = (hi - lo) / (float)nmax, best_offset = lo;
    float best_err = error_of(best_scale, best_offset);
    // Candidate inverse scales around nmax / range; for each, quantize and fit
    // (scale, offset) by weighted least squares on the resulting levels.
    for (int k = 0; k <= nstep; ++k) {
        const float iscale = (rmin + rdelta * (float)k + (float)nmax) / (hi - lo);
        float acc_l[kLanes] = {}, acc_l2[kLanes] = {}, acc_xl[kLanes] = {};
        for (int i = 0; i < n; i += kLanes)
            for (int k = 0; k < kLanes; ++k) {
                const float l = level(iscale * (x[i + k] - lo), 0.0f, (float)nmax);
                acc_l[k] += w[i + k] * l;
                acc_l2[k] += w[i + k] * l * l;
                acc_xl[k] += w[i + k] * l * x[i + k];
            }
        const float sl = lane_total(acc_l), sl2 = lane_total(acc_l2), sxl = lane_total(acc_xl);
        const float det = sum_w * sl2 - sl * sl;
        if (det <= 0) continue;
        float scale = (sum_w * sxl - sum_x * sl) / det;
        float offset = (sl2 * sum_x - sl * sxl) / det;
        if (offset > 0) {
            offset = 0;
            scale = sxl / sl2;
        }
        if (scale <= 0) continue;
        const float err = error_of(scale, offset);
        if (err < best_err) {
            best_err = err;
            best_scale = scale;
            best_offset = offset;
        }
    }
    *neg_offset = -best_offset;
    return best_scale;
}

// x ~ scale * l with l in [-nmax, nmax - 1], weights x^2; returns the signed scale.
float fit_symmetric(const float* x, int n, int nmax) {
    float amax = 0, max = 0;
    for (int i = 0; i < n; ++i)
        if (std::fabs(x[i]) > amax) {
            amax = std::fabs(x[i]);
            max = x[i];
        }
    if (amax < 1e-15f) return 0.0f;
    float best_scale = 0, best = -1;
    for (int k = -9; k <= 9; ++k) {
        const float iscale = -((float)nmax + 0.1f * (float)k) / max;
        float acc_xl[kLanes] = {}, acc_l2[kLanes] = {};
        for (int i = 0; i < n; i += kLanes)
            for (int j = 0; j < kLanes; ++j) {
                const float v = x[i + j], l = level(iscale * v, (float)-nmax, (float)(nmax - 1));
                const float w = v * v;
                acc_xl[j] += w * v * l;
                acc_l2[j] += w * l * l;
            }
        const float sxl = lane_total(acc_xl), sl2 = lane_total(acc_l2);
        // Weighted least squares gives scale = sxl / sl2 with error reduction sxl^2 / sl2.
        if (sl2 > 0 && sxl * sxl / sl2 > best) {
            best = sxl * sxl / sl2;
            best_scale = sxl / sl2;
        }
    }
    return best_scale;
}

// ---- q4_k and q5_k ------------------------------------------------------------

struct AffineBlock {
    int nmax;            // 15 or 31
    float d = 0, dmin = 0;
    int ls[8] = {}, lm[8] = {};
    uint8_t L[QK_K] = {};
};

// Squared error of sub-block j with quantized scale/min (ls, lm), levels re-chosen.
float affine_sub_error(const AffineBlock& b, const float* x, int j, int ls, int lm) {
    const float dl = b.d * (float)ls, ml = b.dmin * (float)lm;
    const float inv = dl != 0 ? 1.0f / dl : 0.0f;  // levels all 0 when the scale is
    const float* xs = x + 32 * j;
    float err[kLanes] = {};
    for (int i = 0; i < 32; i += kLanes)
        for (int k = 0; k < kLanes; ++k) {
            const float l = level((xs[i + k] + ml) * inv, 0.0f, (float)b.nmax);
            const float diff = dl * l - ml - xs[i + k];
            err[k] += diff * diff;
        }
    return lane_total(err);
}

// Chooses sub-block j's levels under its quantized scale/min.
void affine_sub_levels(AffineBlock& b, const float* x, int j) {
    const float dl = b.d * (float)b.ls[j], ml = b.dmin * (float)b.lm[j];
    const float inv = dl != 0 ? 1.0f / dl : 0.0f;
    for (int i = 0; i < 32; ++i) b.L[32 * j + i] = (uint8_t)level((x[32 * j + i] + ml) * inv, 0.0f, (float)b.nmax);
}

float affine_error(AffineBlock& b, const float* x, bool store) {
    float err = 0;
    for (int j = 0; j < 8; ++j) {
        err += affine_sub_error(b, x, j, b.ls[j], b.lm[j]);
        if (store) affine_sub_levels(b, x, j);
    }
    return err;
}

// Nudges each sub-block's (ls, lm) to the best of its 5x5 neighbourhood.
void refine_affine_scales(AffineBlock& b, const float* x) {
    for (int j = 0; j < 8; ++j) {
        float best = affine_sub_error(b, x, j, b.ls[j], b.lm[j]);
        int bls = b.ls[j], blm = b.lm[j];
        for (int dls = -2; dls <= 2; ++dls)
            for (int dlm = -2; dlm <= 2; ++dlm) {
                const int ls = b.ls[j] + dls, lm = b.lm[j] + dlm;
                if ((dls == 0 && dlm == 0) || ls < 0 || ls > 63 || lm < 0 || lm > 63) continue;
                const float err = affine_sub_error(b, x, j, ls, lm);
                if (err < best) {
                    best = err;
                    bls = ls;
                    blm = lm;
                }
            }
        b.ls[j] = bls;
        b.lm[j] = blm;
    }
}

// Least-squares d and dmin for fixed levels: x ~ d * (ls * L) - dmin * lm.
void refit_affine_supers(AffineBlock& b, const float* x) {
    double saa = 0, sab = 0, sbb = 0, sxa = 0, sxb = 0;
    for (int j = 0; j < 8; ++j)
        for (int i = 0; i < 32; ++i) {
            const double a = (double)b.ls[j] * b.L[32 * j + i], c = -(double)b.lm[j], v = x[32 * j + i];
            saa += a * a;
            sab += a * c;
            sbb += c * c;
            sxa += v * a;
            sxb += v * c;
        }
    const double det = saa * sbb - sab * sab;
    if (det <= 0) return;
    b.d = f16_round((float)((sxa * sbb - sxb * sab) / det));
    b.dmin = f16_round((float)((saa * sxb - sab * sxa) / det));
}

// One candidate quantization of the block: fits with the given sub-block
// weighting, 6-bit scales, then refinement. Returns its squared error.
float quantize_affine_with(const float* x, int nmax, bool magnitude_weights, AffineBlock& b) {
    b.nmax = nmax;
    float scales[8], mins[8], weights[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
        const float* xs = x + 32 * j;
        float sum_x2 = 0;
        for (int i = 0; i < 32; ++i) sum_x2 += xs[i] * xs[i];
        const float rms = std::sqrt(sum_x2 / 32);
        for (int i = 0; i < 32; ++i) weights[i] = magnitude_weights ? rms + std::fabs(xs[i]) : 1.0f;
        scales[j] = nmax == 15 ? fit_affine(xs, weights, 32, nmax, -1.0f, 0.1f, 20, &mins[j])
                               : fit_affine(xs, weights, 32, nmax, -0.5f, 0.1f, 15, &mins[j]);
        max_scale = std::fmax(max_scale, scales[j]);
        max_min = std::fmax(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    for (int j = 0; j < 8; ++j) {
        b.ls[j] = (int)level(inv_scale * scales[j], 0.0f, 63.0f);
        b.lm[j] = (int)level(inv_min * mins[j], 0.0f, 63.0f);
    }
    b.d = f16_round(max_scale / 63.0f);
    b.dmin = f16_round(max_min / 63.0f);

    float best = affine_error(b, x, true);
    for (int round = 0; round < 3; ++round) {
        AffineBlock trial = b;
        refine_affine_scales(trial, x);
        affine_error(trial, x, true);
        refit_affine_supers(trial, x);
        const float err = affine_error(trial, x, true);
        if (!(err < best)) break;
        best = err;
        b = trial;
    }
    return best;
}

// Magnitude-weighted fits suit most blocks; plain least squares wins on some
// (outlier-heavy ones). Both are tried and the lower error kept.
void quantize_affine(const float* x, int nmax, AffineBlock& b) {
    AffineBlock alt;
    const float weighted = quantize_affine_with(x, nmax, true, b);
    if (quantize_affine_with(x, nmax, false, alt) < weighted) b = alt;
}

void pack_affine(const AffineBlock& b, uint8_t* out, bool five_bit) {
    f16_store(out, b.d);
    f16_store(out + 2, b.dmin);
    uint8_t* sc = out + 4;
    std::memset(sc, 0, 12);
    for (int j = 0; j < 8; ++j) {
        if (j < 4) {
            sc[j] |= (uint8_t)b.ls[j];
            sc[j + 4] |= (uint8_t)b.lm[j];
        } else {
            sc[j + 4] = (uint8_t)((b.ls[j] & 0x0f) | ((b.lm[j] & 0x0f) << 4));
            sc[j - 4] |= (uint8_t)((b.ls[j] >> 4) << 6);
            sc[j] |= (uint8_t)((b.lm[j] >> 4) << 6);
        }
    }
    uint8_t* qh = out + 16;
    uint8_t* qs = out + (five_bit ? 48 : 16);
    if (five_bit) std::memset(qh, 0, 32);
    for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l) {
            const uint8_t lo = b.L[64 * c + l], hi = b.L[64 * c + 32 + l];
            qs[32 * c + l] = (uint8_t)((lo & 0x0f) | ((hi & 0x0f) << 4));
            if (five_bit) qh[l] |= (uint8_t)(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
        }
}

// ---- q6_k -------------------------------------------------------------------------

struct SymBlock {
    float d = 0;
    int sc[16] = {};
    int8_t q[QK_K] = {};  // levels in [-32, 31]
};

float sym_sub_error(const SymBlock& b, const float* x, int j, int sc, int8_t* levels) {
    const float dl = b.d * (float)sc;
    const float inv = dl != 0 ? 1.0f / dl : 0.0f;
    float err[kLanes] = {};
    for (int i = 0; i < 16; i += kLanes)
        for (int k = 0; k < kLanes; ++k) {
            const float v = x[16 * j + i + k], l = level(v * inv, -32.0f, 31.0f);
            if (levels) levels[i + k] = (int8_t)l;
            const float diff = dl * l - v;
            err[k] += diff * diff;
        }
    return lane_total(err);
}

float sym_error(SymBlock& b, const float* x, bool store) {
    float err = 0;
    for (int j = 0; j < 16; ++j) err += sym_sub_error(b, x, j, b.sc[j], store ? b.q + 16 * j : nullptr);
    return err;
}

void quantize_symmetric(const float* x, SymBlock& b) {
    float scales[16], max_scale = 0, max_abs = 0;
    for (int j = 0; j < 16; ++j) {
        scales[j] = fit_symmetric(x + 16 * j, 16, 32);
        if (std::fabs(scales[j]) > max_abs) {
            max_abs = std::fabs(scales[j]);
            max_scale = scales[j];
        }
    }
    if (max_abs < 1e-15f) return;  // all zero
    const float iscale = -128.0f / max_scale;
    b.d = f16_round(1.0f / iscale);
    for (int j = 0; j < 16; ++j) b.sc[j] = (int)level(iscale * scales[j], -128.0f, 127.0f);

    float best = sym_error(b, x, true);
    for (int round = 0; round < 2; ++round) {
        SymBlock t = b;
        for (int j = 0; j < 16; ++j) {
            float sub_best = sym_sub_error(t, x, j, t.sc[j], nullptr);
            int chosen = t.sc[j];
            for (int delta : {-1, 1}) {
                const int sc = t.sc[j] + delta;
                if (sc < -128 || sc > 127) continue;
                const float err = sym_sub_error(t, x, j, sc, nullptr);
                if (err < sub_best) {
                    sub_best = err;
                    chosen = sc;
                }
            }
            t.sc[j] = chosen;
        }
        sym_error(t, x, true);
        double saa = 0, sxa = 0;  // least-squares d for fixed levels
        for (int j = 0; j < 16; ++j)
            for (int i = 0; i < 16; ++i) {
                const double a = (double)t.sc[j] * t.q[16 * j + i];
                saa += a * a;
                sxa += a * x[16 * j + i];
            }
        if (saa > 0) t.d = f16_round((float)(sxa / saa));
        const float err = sym_error(t, x, true);
        if (!(err < best)) break;
        best = err;
        b = t;
    }
}

void pack_symmetric(const SymBlock& b, uint8_t* out) {
    uint8_t* ql = out;
    uint8_t* qh = out + 128;
    int8_t* sc = reinterpret_cast<int8_t*>(out + 192);
    for (int j = 0; j < 16; ++j) sc[j] = (int8_t)b.sc[j];
    f16_store(out + 208, b.d);
    for (int half = 0; half < 2; ++half) {
        const int8_t* q = b.q + 128 * half;
        for (int l = 0; l < 32; ++l) {
            const int v0 = q[l] + 32, v1 = q[l + 32] + 32, v2 = q[l + 64] + 32, v3 = q[l + 96] + 32;
            ql[64 * half + l] = (uint8_t)((v0 & 0x0f) | ((v2 & 0x0f) << 4));
            ql[64 * half + l + 32] = (uint8_t)((v1 & 0x0f) | ((v3 & 0x0f) << 4));
            qh[32 * half + l] = (uint8_t)((v0 >> 4) | ((v1 >> 4) << 2) | ((v2 >> 4) << 4) | ((v3 >> 4) << 6));
        }
    }
}

}  // namespace

void quantize_k_block(DType type, const float* x, uint8_t* block) {
    if (type == DType::Q6_K) {
        SymBlock b;
        quantize_symmetric(x, b);
        pack_symmetric(b, block);
        return;
    }
    AffineBlock b;
    const bool five_bit = type == DType::Q5_K;
    quantize_affine(x, five_bit ? 31 : 15, b);
    pack_affine(b, block, five_bit);
}

}  // namespace quanta
