// The inner loops that depend on the instruction set, as a table of function
// pointers. kernels_impl.inc is compiled once per level with that level's
// compiler flags (CMakeLists.txt), and the table for the best level this CPU
// supports is picked at start-up, so one binary runs everywhere and never
// executes an instruction the CPU lacks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/moments.h"
#include "cpu/panel.h"
#include "quant/types.h"

namespace quanta::cpu {

// AvxVnni: avx2 with AVX-VNNI's vpdpbusd on ymm (Intel since Alder Lake, AMD since Zen 5), no AVX-512.
enum class Level { Scalar, Avx2, AvxVnni, Avx512, Neon, NeonDotprod, NeonI8mm };

// Quantizes a row of n floats (a multiple of 32) into an 8-bit activation format (act_formats.h).
using QuantizeActFn = void (*)(const float* x, void* out, int64_t n);
// out[j * out_stride] = dot(weight row w, activation row a + j * a_stride) for j < na (1..4).
using QuantDotFn = void (*)(int64_t n, const void* w, const void* a, size_t a_stride, float* out,
                            size_t out_stride, int na);
// The prefill GEMM tile over a panel of kPanelRows weight rows (panel.h; its
// 16-row groups group_bytes apart) and na (1..4) activation rows of k elements
// (flat format, act_stride bytes apart): out[i + j * out_stride] for i < nw,
// j < na. weight: the type the panel was unpacked from (a Super256 panel's
// sub-block size; levels that are signed bytes on some levels, as q8_0's).
using GemmTileFn = void (*)(int64_t k, const uint8_t* panel, size_t group_bytes, const uint8_t* act,
                            size_t act_stride, int na, float* out, size_t out_stride, int nw, DType weight);

// Decode's matmul over weights in octets (octets.h): the octet at w (nr of its rows real) against na (1..4)
// activation rows in the flat format (act_stride bytes apart): out[i + j * out_stride] for i < nr, j < na.
using OctetDotFn = void (*)(DType weight, int64_t k, const uint8_t* w, const uint8_t* act, size_t act_stride, int na,
                            float* out, size_t out_stride, int nr);

// attend_dense's bounds: query rows per call, and at every level keys per
// block and query rows per register tile.
constexpr int kDenseMaxQueries = 256, kDenseMaxKeys = 64, kDenseMaxRows = 8;
// Work floats attend_dense needs for nq query rows of d (keys) and dv (values).
inline size_t dense_attend_work(int64_t d, int64_t dv, int nq) {
    const size_t rows = (size_t)(nq + kDenseMaxRows);
    return rows * (size_t)(d + dv + 1) + (size_t)kDenseMaxKeys * (size_t)(d + dv + kDenseMaxRows) + (size_t)d;
}

// attend's widened rows per block of cells (attend_impl.inc), tokens per call, query rows padded to whole
// vectors of every level, and the work floats it needs: the transposed queries, the scores (cell-major) and
// the widened rows.
constexpr int kAttendRows = 64, kAttendQueries = 8, kAttendPadRows = 16;
inline size_t attend_work(int nq, int64_t g, int64_t n, int64_t hd, int64_t hdv) {
    const int64_t rs = (nq * g + kAttendPadRows - 1) / kAttendPadRows * kAttendPadRows;
    return (size_t)(rs * (hd + n) + kAttendRows * (hd > hdv ? hd : hdv));
}

// conv_tile's output channels per call, at every level.
constexpr int kConvChannels = 6;

struct Kernels {
    Level level;
    const char* name;
    float (*dot_f32)(const float* a, const float* b, int64_t n);
    float (*dot_f16_f32)(const uint16_t* a, const float* b, int64_t n);
    float (*dot_bf16_f32)(const uint16_t* a, const float* b, int64_t n);
    void (*f16_to_f32)(const uint16_t* x, float* y, int64_t n);
    void (*f32_to_f16)(const float* x, uint16_t* y, int64_t n);
    void (*bf16_to_f32)(const uint16_t* x, float* y, int64_t n);
    void (*f32_to_bf16)(const float* x, uint16_t* y, int64_t n);
    void (*add)(float* y, const float* a, const float* b, int64_t n);
    void (*mul)(float* y, const float* a, const float* b, int64_t n);
    void (*scale)(float* y, const float* x, float s, int64_t n);
    void (*silu)(float* y, const float* x, int64_t n);
    void (*gelu)(float* y, const float* x, int64_t n);
    double (*sum_squares)(const float* x, int64_t n);
    float (*max)(const float* x, int64_t n);
    // y = exp(x - shift) for shift >= every x (a softmax's max); returns the sum of y.
    double (*exp_shifted)(float* y, const float* x, float shift, int64_t n);
    void (*gelu_erf)(float* y, const float* x, int64_t n);
    void (*quick_gelu)(float* y, const float* x, int64_t n);
    // The moments of n floats, from two passes over them: keep n small enough
    // (a few thousand) that the second pass reads from L1.
    Moments (*moments)(const float* x, int64_t n);
    // y = (x - mean) * s + shift: a norm's output, its mean split in a float
    // and the rest, -(rest * s) in shift, so values near the mean keep their digits.
    void (*normalize)(float* y, const float* x, float mean, float s, float shift, int64_t n);

    QuantizeActFn quantize_act_paired, quantize_act_flat;
    QuantDotFn dot_q4_0, dot_q4_1, dot_q5_0, dot_q5_1, dot_q8_0, dot_q4_k, dot_q5_k, dot_q6_k;
    // Null where the level has no tiled GEMM, one per panel kind.
    GemmTileFn gemm_tile32, gemm_tile256;
    // The sub-block scales gemm_tile256 reads from its panels.
    PanelScales panel_scales;
    // Null where the level has no octet kernels; else one for every octet_type.
    OctetDotFn dot_octets;
    // f32/f16/bf16 weights: 4 rows (w, ws bytes apart; nw used) x na (1..4)
    // activation rows (x, xs floats apart): out[i + j * os]. Null: one dot per output.
    void (*float_tile)(DType type, int64_t k, const char* w, size_t ws, const float* x, size_t xs, int na,
                       float* out, size_t os, int nw);
    // Attention of nq (1..kAttendQueries) tokens' g (<= 64) query rows each (token i's at q + i * q_stride,
    // hd floats a row, contiguous) over their cells: token i's are the first counts[i] of `cells`. Key rows
    // at k + cell * k_cell (hd elements, f16 when f16 else f32), value rows likewise (hdv). work:
    // attend_work(nq, g, max count, hd, hdv) floats. out: token i's g rows of hdv floats at out + i * out_stride.
    void (*attend)(bool f16, int g, int64_t hd, int64_t hdv, int nq, const float* q, size_t q_stride, const char* k,
                   size_t k_cell, const char* v, size_t v_cell, const int32_t* cells, const int32_t* counts,
                   float scale, float* work, float* out, size_t out_stride);
    // softmax(q . k * scale) . v of nq (<= kDenseMaxQueries) f32 query rows (q, q_stride floats apart, d
    // each) over all nk keys: key rows at k + j * k_stride (d elements, f16 when f16 else f32), value rows
    // likewise (dv), in blocks with an online softmax (never all scores at once).
    // work: dense_attend_work(d, dv, nq) floats. out: nq rows of dv floats, out_stride apart.
    void (*attend_dense)(bool f16, int64_t d, int64_t dv, const float* q, size_t q_stride, int nq, const char* k,
                         size_t k_stride, const char* v, size_t v_stride, int64_t nk, float scale, float* work,
                         float* out, size_t out_stride);
    // conv2d's tile: out[r * os + p] (+)= sum_e w[r * ws + e] * pt[e * ps + p] for r < nr (<= kConvChannels)
    // kernel rows of k floats and p < np pixels of transposed patches (k rows); accumulate adds to out.
    void (*conv_tile)(int64_t k, const float* w, size_t ws, int nr, const float* pt, size_t ps, int np, float* out,
                      size_t os, bool accumulate);
    // Winograd F(2x2, 3x3)'s transforms (winograd_impl.inc): n kernels (g[tap * n + i]) to
    // u[pos * plane + i]; n tiles' even and odd input columns to out[pos * plane + j]; n tiles'
    // products m[pos * plane + j] to their four outputs y[q * ys + j], plus bias.
    void (*winograd_kernels)(const float* g, int64_t n, float* u, size_t plane);
    void (*winograd_inputs)(const float* const* even, const float* const* odd, int64_t n, float* out, size_t plane);
    void (*winograd_outputs)(const float* m, size_t plane, int64_t n, float bias, float* y, size_t ys);
};

// The fast dot kernel for weights of `type`, or null when there is none.
QuantDotFn quant_dot(const Kernels& k, DType type);
// The prefill GEMM tile for weights of `type` (panel.h), or null where the level has none.
GemmTileFn gemm_tile(const Kernels& k, DType type);
// The quantizer for the activation format of `weight_type`'s row kernel.
QuantizeActFn quantize_act(const Kernels& k, DType weight_type);

const char* level_name(Level level);
// Parses "scalar", "avx2", "avx-vnni", "avx512", "neon", "neon-dotprod", "neon-i8mm"; throws InvalidArgument otherwise.
Level level_from_name(const std::string& name);
// Levels compiled into this build that this CPU can run, best last.
std::vector<Level> available_levels();
// Throws Unsupported when `level` is not compiled in or the CPU lacks it.
const Kernels& kernels_for(Level level);

// The level in use: QUANTA_CPU if set, else the best available.
const Kernels& active_kernels();
void set_active_level(Level level);

// A one-line description of the CPU's features, for `quanta info --system`.
std::string cpu_features();

}  // namespace quanta::cpu
