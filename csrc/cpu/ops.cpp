// The CPU kernels of every op (ops.h): elementwise ops, the matmul paths
// (quantized row kernels, the panel GEMM, float tiles), attention pieces,
// diffusion's group norm and resampling, data movement, and the table that
// maps op ids to them.
#include "cpu/ops.h"

#include <cmath>
#include <cstring>

#include <algorithm>

#include "core/elements.h"
#include "core/sinusoids.h"
#include "cpu/act_formats.h"
#include "cpu/conv2d.h"
#include "cpu/dense_attention.h"
#include "cpu/octets.h"
#include "cpu/panel.h"
#include "quant/dequantize.h"
#include "quant/fp16.h"

namespace quanta::cpu {
namespace {

// Row r of a tensor's rows, as (i1, i2, i3).
struct RowIndex {
    int64_t i1, i2, i3;
};
RowIndex row_index(const Tensor* t, int64_t r) {
    return {r % t->ne[1], (r / t->ne[1]) % t->ne[2], r / (t->ne[1] * t->ne[2])};
}

// ---- elementwise -------------------------------------------------------

void binary_op(const Tensor& dst, const OpContext& c) {
    const Tensor* a = dst.src[0];
    const Tensor* b = dst.src[1];
    const bool is_add = dst.op == Op::Add;
    int64_t begin, end;
    split(dst.n_rows(), c, &begin, &end);
    const int64_t n0 = dst.ne[0], nb0 = b->ne[0];
    const bool rows_contiguous = a->nb[0] == 4 && b->nb[0] == 4;
    for (int64_t r = begin; r < end; ++r) {
        const RowIndex ri = row_index(&dst, r);
        float* y = reinterpret_cast<float*>(at(&dst, 0, ri.i1, ri.i2, ri.i3));
        const char* xa = at(a, 0, ri.i1, ri.i2, ri.i3);
        const char* xb = at(b, 0, ri.i1 % b->ne[1], ri.i2 % b->ne[2], ri.i3 % b->ne[3]);
        if (rows_contiguous) {
            for (int64_t j = 0; j < n0; j += nb0) {
                const float* pa = reinterpret_cast<const float*>(xa) + j;
                const float* pb = reinterpret_cast<const float*>(xb);
                if (is_add) c.k->add(y + j, pa, pb, nb0);
                else c.k->mul(y + j, pa, pb, nb0);
            }
            continue;
        }
        for (int64_t j = 0; j < n0; ++j) {
            const float va = load_float(DType::F32, xa + j * a->nb[0]);
            const float vb = load_float(DType::F32, xb + (j % nb0) * b->nb[0]);
            y[j] = is_add ? va + vb : va * vb;
        }
    }
}

// Floats per moments() call: 16 KiB, a run that stays in L1 between the
// kernel's two passes over it.
constexpr int64_t kMomentRun = 4096;

Moments moments_of(const Kernels& k, const float* x, int64_t n) {
    Moments m;
    for (int64_t i = 0; i < n; i += kMomentRun) m.merge(k.moments(x + i, std::min(kMomentRun, n - i)));
    return m;
}

// normalize()'s arguments for moments m: the mean as a float and the rest of it, scaled.
struct NormParams {
    float mean, s, shift;
};
NormParams norm_params(const Moments& m, float eps) {
    const double s = 1.0 / std::sqrt(m.variance() + (double)eps);
    const float mean = (float)m.mean;
    return {mean, (float)s, (float)(-(m.mean - mean) * s)};
}

void unary_op(const Tensor& dst, const OpContext& c) {
    const Tensor* a = dst.src[0];
    int64_t begin, end;
    split(dst.n_rows(), c, &begin, &end);
    const int64_t n0 = dst.ne[0];
    for (int64_t r = begin; r < end; ++r) {
        const RowIndex ri = row_index(&dst, r);
        float* y = reinterpret_cast<float*>(at(&dst, 0, ri.i1, ri.i2, ri.i3));
        const char* xr = at(a, 0, ri.i1, ri.i2, ri.i3);
        const float* x = reinterpret_cast<const float*>(xr);
        if (a->nb[0] != 4) {  // gather a strided row first
            for (int64_t j = 0; j < n0; ++j) y[j] = load_float(DType::F32, xr + j * a->nb[0]);
            x = y;
        }
        switch (dst.op) {
            case Op::Scale: c.k->scale(y, x, dst.f[0], n0); break;
            case Op::Silu: c.k->silu(y, x, n0); break;
            case Op::Gelu: c.k->gelu(y, x, n0); break;
            case Op::GeluErf: c.k->gelu_erf(y, x, n0); break;
            case Op::QuickGelu: c.k->quick_gelu(y, x, n0); break;
            case Op::RmsNorm: {
                const double mean = c.k->sum_squares(x, n0) / (double)n0;
                c.k->scale(y, x, (float)(1.0 / std::sqrt(mean + (double)dst.f[0])), n0);
                break;
            }
            case Op::LayerNorm: {
                const NormParams p = norm_params(moments_of(*c.k, x, n0), dst.f[0]);
                c.k->normalize(y, x, p.mean, p.s, p.shift, n0);
                break;
            }
            default: break;
        }
    }
}

// ---- diffusion -------------------------------------------------------------

// Calls f(x, y, n) over runs of channels [c0, c1) of image i3 of the group
// norm's source x and result y, in order: the whole group where x's channels
// lie back to back, else whole channel planes, else rows.
template <typename F>
void for_each_group_run(const Tensor& dst, int64_t c0, int64_t c1, int64_t i3, F f) {
    const Tensor* x = dst.src[0];
    const int64_t W = x->ne[0], H = x->ne[1];
    const auto run = [&](int64_t i1, int64_t ch, int64_t n) {
        f(reinterpret_cast<const float*>(at(x, 0, i1, ch, i3)), reinterpret_cast<float*>(at(&dst, 0, i1, ch, i3)), n);
    };
    const bool planes = x->nb[1] == (size_t)W * sizeof(float);
    if (planes && x->nb[2] == (size_t)(W * H) * sizeof(float)) return run(0, c0, W * H * (c1 - c0));
    for (int64_t ch = c0; ch < c1; ++ch)
        for (int64_t i1 = 0; i1 < H; i1 += planes ? H : 1) run(i1, ch, planes ? W * H : W);
}

// Threads take whole (image, group) pairs: the moments, then the normalized values.
void group_norm(const Tensor& dst, const OpContext& c) {
    const int64_t groups = dst.i[0], per_group = dst.ne[2] / groups;
    int64_t begin, end;
    split(groups * dst.ne[3], c, &begin, &end);
    for (int64_t task = begin; task < end; ++task) {
        const int64_t c0 = task % groups * per_group, i3 = task / groups;
        Moments m;
        if (const Tensor* given = dst.src[1]) {
            const float* mv = static_cast<const float*>(given->data) + task * 2;
            m = {1.0, mv[0], mv[1]};
        } else {
            for_each_group_run(dst, c0, c0 + per_group, i3,
                               [&](const float* x, float*, int64_t n) { m.merge(moments_of(*c.k, x, n)); });
        }
        const NormParams p = norm_params(m, dst.f[0]);
        for_each_group_run(dst, c0, c0 + per_group, i3,
                           [&](const float* x, float* y, int64_t n) { c.k->normalize(y, x, p.mean, p.s, p.shift, n); });
    }
}

// Threads take (image, group) pairs, merging the moments of each channel's rows in the window.
void group_moments(const Tensor& dst, const OpContext& c) {
    const Tensor* x = dst.src[0];
    const int32_t* win = static_cast<const int32_t*>(dst.src[1]->data);
    const int64_t groups = dst.i[0], per_group = x->ne[2] / groups, s = dst.i[1];
    const int64_t x0 = std::clamp<int64_t>(win[0] * s, 0, x->ne[0]), x1 = std::clamp<int64_t>(win[2] * s, x0, x->ne[0]);
    const int64_t y0 = std::clamp<int64_t>(win[1] * s, 0, x->ne[1]), y1 = std::clamp<int64_t>(win[3] * s, y0, x->ne[1]);
    int64_t begin, end;
    split(groups * x->ne[3], c, &begin, &end);
    for (int64_t task = begin; task < end; ++task) {
        const int64_t c0 = task % groups * per_group, i3 = task / groups;
        Moments m;
        for (int64_t ch = c0; ch < c0 + per_group; ++ch)
            for (int64_t i1 = y0; i1 < y1 && x1 > x0; ++i1)
                m.merge(moments_of(*c.k, reinterpret_cast<const float*>(at(x, x0, i1, ch, i3)), x1 - x0));
        float* out = static_cast<float*>(dst.data) + task * 3;
        out[0] = (float)m.n;
        out[1] = (float)m.mean;
        out[2] = (float)m.m2;
    }
}

// Threads take source rows: each widens its row into the first of the factor
// result rows it becomes and copies that into the others.
void upsample(const Tensor& dst, const OpContext& c) {
    const Tensor* x = dst.src[0];
    const int64_t f = dst.i[0], w = x->ne[0];
    int64_t begin, end;
    split(x->n_rows(), c, &begin, &end);
    for (int64_t r = begin; r < end; ++r) {
        const RowIndex ri = row_index(x, r);
        const float* xr = reinterpret_cast<const float*>(at(x, 0, ri.i1, ri.i2, ri.i3));
        float* y = reinterpret_cast<float*>(at(&dst, 0, ri.i1 * f, ri.i2, ri.i3));
        if (f == 2) {  // Stable Diffusion's factor, in a loop the compiler vectorizes
            for (int64_t j = 0; j < w; ++j) y[2 * j] = y[2 * j + 1] = xr[j];
        } else {
            for (int64_t j = 0; j < w; ++j)
                for (int64_t k = 0; k < f; ++k) y[j * f + k] = xr[j];
        }
        for (int64_t k = 1; k < f; ++k) std::memcpy(at(&dst, 0, ri.i1 * f + k, ri.i2, ri.i3), y, dst.row_size());
    }
}

// A chunk at a time through a buffer in L1: the gate and up rows read once, the output written once
// (against silu, then mul: the gate's activation written and read back). The buffer is not the output:
// the level's loops, vectorized for unknown pointers, fell back to scalar code on y == a (glu 2x slower).
void glu(const Tensor& dst, const OpContext& c) {
    const Tensor *gate = dst.src[0], *up = dst.src[1];
    const int64_t n0 = dst.ne[0];
    constexpr int64_t kChunk = 256;
    float act[kChunk];
    int64_t begin, end;
    split(dst.n_rows(), c, &begin, &end);
    for (int64_t r = begin; r < end; ++r) {
        const RowIndex ri = row_index(&dst, r);
        float* y = reinterpret_cast<float*>(at(&dst, 0, ri.i1, ri.i2, ri.i3));
        const float* g = reinterpret_cast<const float*>(at(gate, 0, ri.i1, ri.i2, ri.i3));
        const float* u = reinterpret_cast<const float*>(at(up, 0, ri.i1, ri.i2, ri.i3));
        for (int64_t j = 0; j < n0; j += kChunk) {
            const int64_t n = std::min(kChunk, n0 - j);
            if (dst.i[0] == (int32_t)GluAct::Silu) c.k->silu(act, g + j, n);
            else c.k->gelu(act, g + j, n);
            c.k->mul(y + j, act, u + j, n);
        }
    }
}

void geglu(const Tensor& dst, const OpContext& c) {
    const Tensor* x = dst.src[0];
    const int64_t half = dst.ne[0];
    int64_t begin, end;
    split(dst.n_rows(), c, &begin, &end);
    for (int64_t r = begin; r < end; ++r) {
        const RowIndex ri = row_index(&dst, r);
        const float* value = reinterpret_cast<const float*>(at(x, 0, ri.i1, ri.i2, ri.i3));
        float* y = reinterpret_cast<float*>(at(&dst, 0, ri.i1, ri.i2, ri.i3));
        c.k->gelu_erf(y, value + half, half);
        c.k->mul(y, y, value, half);
    }
}

void timestep_embedding(const Tensor& dst, const OpContext& c) {
    const float* t = static_cast<const float*>(dst.src[0]->data);
    int64_t begin, end;
    split(dst.ne[1], c, &begin, &end);
    for (int64_t m = begin; m < end; ++m)
        timestep_embedding_row(t[m], dst.i[0], dst.i[1] != 0, dst.f[0], reinterpret_cast<float*>(at(&dst, 0, m, 0, 0)));
}

// ---- matmul --------------------------------------------------------------

// Activation rows per cache block in the quantized matmul: a block of
// quantized activations stays in L2 while every weight row streams past it.
constexpr size_t kActBlockBytes = 192 * 1024;

// Prefill with many activation rows, where the level has a tiled GEMM: each
// thread unpacks kPanelRows weight rows at a time into a panel (panel.h), once
// for all activation rows, and runs the register tile over them. Unpacking
// costs about as much as 10-20 rows of the row kernels, so below that the row
// kernels win: measured crossovers on 2 threads (bench/README.md) were 14-15
// rows for q5_0/q8_0 and about 20 for q4_k/q6_k on AVX-512; on AVX2, where the
// tile runs 2-2.5x the row kernels' speed, unpacking costs 5-19 tile rows, for
// crossovers of 9 (q5_0, q8_0) to 15 (q4_k) and 20 (q6_k) rows.
//
// Weights in octets (octets.h) run the octet kernels below the crossover, and
// those hold their speed per row up to 64 rows and more: the GEMM caught up
// at about 32 rows for q4_k/q5_k and 48-64+ for the others (Xeon, 2 threads,
// avx2 and avx512, microseconds per row from 4 to 64 rows; bench/README.md).
// Both round alike, so the crossover moves speed only.
constexpr int64_t kGemmMinRows = 16;
int64_t gemm_min_rows(const Tensor& weight, const Kernels& k) {
    if (!weight.packed || !k.dot_octets) return kGemmMinRows;
    return weight.type == DType::Q4_K || weight.type == DType::Q5_K ? 32 : 64;
}

bool use_gemm(const Tensor& node, const Kernels& k) {
    return node.op == Op::MatMul && gemm_tile(k, node.src[0]->type) && node.src[1]->ne[1] >= gemm_min_rows(*node.src[0], k);
}

// Below that, weights the backend packed into octets run the level's octet kernels; levels without them (the
// level changed after the model loaded) read the rows as the file has them.
bool use_octets(const Tensor& node, const Kernels& k) {
    return node.op == Op::MatMul && node.src[0]->packed && k.dot_octets && !use_gemm(node, k);
}

// Phase one of a quantized matmul: the threads share quantizing every
// activation row into c.shared (row r at r * row_bytes), then meet.
template <typename QuantizeRow>
void quantize_activations(const Tensor* x, const OpContext& c, size_t row_bytes, QuantizeRow quantize_row) {
    int64_t begin, end;
    split(x->n_rows(), c, &begin, &end);
    for (int64_t r = begin; r < end; ++r) {
        const RowIndex ri = row_index(x, r);
        quantize_row(reinterpret_cast<const float*>(at(x, 0, ri.i1, ri.i2, ri.i3)), c.shared + r * row_bytes);
    }
    c.pool->barrier();
}

// The walk every matmul path shares: the threads split tasks of `rows`
// consecutive weight rows (per batch matrix), and each walks its tasks once per
// block of `m_block` activation rows, so that block stays in cache while the
// weights stream past it. body(n0, nw, i2, i3, m0, m1): weight rows
// [n0, n0 + nw) of batch (i2, i3) against activation rows [m0, m1).
template <typename Body>
void for_each_tile(const Tensor& dst, const OpContext& c, int64_t rows, int64_t m_block, Body body) {
    const Tensor* x = dst.src[1];
    const int64_t N = dst.ne[0], M = x->ne[1];
    const int64_t tiles = (N + rows - 1) / rows;
    int64_t begin, end;
    split(tiles * x->ne[2] * x->ne[3], c, &begin, &end);
    for (int64_t m0 = 0; m0 < M; m0 += m_block) {
        const int64_t m1 = std::min(M, m0 + m_block);
        for (int64_t task = begin; task < end; ++task) {
            const int64_t n0 = (task % tiles) * rows, b = task / tiles;
            body(n0, (int)std::min(rows, N - n0), b % x->ne[2], b / x->ne[2], m0, m1);
        }
    }
}

void matmul_gemm(const Tensor& dst, const OpContext& c) {
    const Tensor* w = dst.src[0];
    const Tensor* x = dst.src[1];
    const int64_t K = w->ne[0], M = x->ne[1];
    const int64_t r2 = x->ne[2] / w->ne[2], r3 = x->ne[3] / w->ne[3];
    const size_t arow = flat_act_row_bytes(K);
    quantize_activations(x, c, arow, [&](const float* row, uint8_t* out) { c.k->quantize_act_flat(row, out, K); });

    const GemmTileFn tile = gemm_tile(*c.k, w->type);
    uint8_t* panel = reinterpret_cast<uint8_t*>(c.scratch);
    const size_t group_bytes = panel_group_bytes(w->type, K);
    const size_t out_stride = dst.nb[1] / sizeof(float);
    // One block of all M rows: each panel is unpacked once, from the octets where the weight has them (so
    // the file's pages of it are never touched again).
    for_each_tile(dst, c, kPanelRows, M, [&](int64_t n0, int nw, int64_t i2, int64_t i3, int64_t, int64_t) {
        if (w->packed) {
            unpack_panel_octets(w->type, static_cast<const uint8_t*>(w->packed) + (size_t)(n0 / kOctetRows) *
                                octet_bytes(w->type, K), nw, K, c.k->panel_scales, panel);
        } else {
            const void* rows[kPanelRows];
            for (int i = 0; i < nw; ++i) rows[i] = at(w, 0, n0 + i, i2 / r2, i3 / r3);
            unpack_panel(w->type, rows, nw, K, c.k->panel_scales, panel);
        }
        const uint8_t* act = c.shared + (size_t)(M * (i2 + x->ne[2] * i3)) * arow;
        for (int64_t m = 0; m < M; m += 4) {
            float* out = reinterpret_cast<float*>(at(&dst, n0, m, i2, i3));
            tile(K, panel, group_bytes, act + m * arow, arow, (int)std::min<int64_t>(4, M - m), out, out_stride, nw,
                 w->type);
        }
    });
}

// Decode over octets: each thread takes a range of octets and runs the octet
// kernel against up to 4 activation rows (flat format) at a time.
void matmul_octets(const Tensor& dst, const OpContext& c) {
    const Tensor* w = dst.src[0];
    const Tensor* x = dst.src[1];
    const int64_t K = w->ne[0], M = x->ne[1];
    const size_t arow = flat_act_row_bytes(K);
    quantize_activations(x, c, arow, [&](const float* row, uint8_t* out) { c.k->quantize_act_flat(row, out, K); });

    const auto* octets = static_cast<const uint8_t*>(w->packed);
    const size_t ob = octet_bytes(w->type, K), out_stride = dst.nb[1] / sizeof(float);
    const int64_t m_block = std::max<int64_t>(4, (int64_t)(kActBlockBytes / arow) / 4 * 4);
    for_each_tile(dst, c, kOctetRows, m_block, [&](int64_t n0, int nr, int64_t i2, int64_t i3, int64_t m0, int64_t m1) {
        const uint8_t* octet = octets + (size_t)(n0 / kOctetRows) * ob;
        const uint8_t* act = c.shared + (size_t)(M * (i2 + x->ne[2] * i3)) * arow;
        for (int64_t m = m0; m < m1; m += 4)
            c.k->dot_octets(w->type, K, octet, act + m * arow, arow, (int)std::min<int64_t>(4, m1 - m),
                            reinterpret_cast<float*>(at(&dst, n0, m, i2, i3)), out_stride, nr);
    });
}

// Quantized weights: activations are quantized to 8 bits once (all threads
// share the work), then each thread takes a range of weight rows and runs the
// integer dot kernel against up to 4 activation rows at a time.
void matmul_quantized(const Tensor& dst, const OpContext& c, QuantDotFn dot) {
    if (use_gemm(dst, *c.k)) return matmul_gemm(dst, c);
    if (use_octets(dst, *c.k)) return matmul_octets(dst, c);
    const Tensor* w = dst.src[0];
    const Tensor* x = dst.src[1];
    const int64_t K = w->ne[0], M = x->ne[1];
    const int64_t r2 = x->ne[2] / w->ne[2], r3 = x->ne[3] / w->ne[3];
    const size_t arow = act_row_bytes(act_format_for(w->type), K);
    const QuantizeActFn quantize = quantize_act(*c.k, w->type);
    quantize_activations(x, c, arow, [&](const float* row, uint8_t* out) { quantize(row, out, K); });

    const size_t out_stride = dst.nb[1] / sizeof(float);
    const int64_t m_block = std::max<int64_t>(4, (int64_t)(kActBlockBytes / arow) / 4 * 4);
    for_each_tile(dst, c, 1, m_block, [&](int64_t n, int, int64_t i2, int64_t i3, int64_t m0, int64_t m1) {
        const char* wrow = at(w, 0, n, i2 / r2, i3 / r3);
        const uint8_t* act = c.shared + (size_t)(M * (i2 + x->ne[2] * i3)) * arow;
        for (int64_t m = m0; m < m1; m += 4) {
            float* out = reinterpret_cast<float*>(at(&dst, n, m, i2, i3));
            dot(K, wrow, act + m * arow, arow, out, out_stride, (int)std::min<int64_t>(4, m1 - m));
        }
    });
}

// Plain float weights with contiguous rows, several activation rows and a
// level with the tile: 4 weight rows x 4 activation rows in registers, the
// activation rows taken in blocks that stay in L2 while the weights stream.
bool use_float_tile(const Tensor& dst, const Kernels& k) {
    const Tensor* w = dst.src[0];
    const Tensor* x = dst.src[1];
    return k.float_tile && plain_float(w->type) && x->ne[1] >= 2 && w->nb[0] == type_info(w->type).block_bytes &&
           x->nb[0] == 4 && x->nb[1] % 4 == 0 && dst.nb[0] == 4 && dst.nb[1] % 4 == 0;
}

void matmul_float_tiled(const Tensor& dst, const OpContext& c) {
    const Tensor* w = dst.src[0];
    const Tensor* x = dst.src[1];
    const int64_t K = w->ne[0];
    const int64_t r2 = x->ne[2] / w->ne[2], r3 = x->ne[3] / w->ne[3];
    const int64_t m_block = std::max<int64_t>(4, (int64_t)(kActBlockBytes / (K * sizeof(float))) / 4 * 4);
    for_each_tile(dst, c, 4, m_block, [&](int64_t n0, int nw, int64_t i2, int64_t i3, int64_t m0, int64_t m1) {
        for (int64_t m = m0; m < m1; m += 4)
            c.k->float_tile(w->type, K, at(w, 0, n0, i2 / r2, i3 / r3), w->nb[1],
                            reinterpret_cast<const float*>(at(x, 0, m, i2, i3)), x->nb[1] / 4,
                            (int)std::min<int64_t>(4, m1 - m), reinterpret_cast<float*>(at(&dst, n0, m, i2, i3)),
                            dst.nb[1] / 4, nw);
    });
}

void matmul(const Tensor& dst, const OpContext& c) {
    if (QuantDotFn dot = quant_dot(*c.k, dst.src[0]->type)) return matmul_quantized(dst, c, dot);
    if (use_float_tile(dst, *c.k)) return matmul_float_tiled(dst, c);
    const Tensor* w = dst.src[0];
    const Tensor* x = dst.src[1];
    const int64_t K = w->ne[0], M = x->ne[1];
    const int64_t r2 = x->ne[2] / w->ne[2], r3 = x->ne[3] / w->ne[3];
    for_each_tile(dst, c, 1, M, [&](int64_t n, int, int64_t i2, int64_t i3, int64_t, int64_t) {
        const char* wrow = at(w, 0, n, i2 / r2, i3 / r3);
        const float* wf = nullptr;
        if (w->type != DType::F32 && w->type != DType::F16 && w->type != DType::BF16) {
            dequantize_row(w->type, wrow, c.scratch, K);
            wf = c.scratch;
        } else if (w->type == DType::F32) {
            wf = reinterpret_cast<const float*>(wrow);
        }
        for (int64_t m = 0; m < M; ++m) {
            const float* xr = reinterpret_cast<const float*>(at(x, 0, m, i2, i3));
            float* y = reinterpret_cast<float*>(at(&dst, n, m, i2, i3));
            if (wf) *y = c.k->dot_f32(wf, xr, K);
            else if (w->type == DType::F16) *y = c.k->dot_f16_f32(reinterpret_cast<const uint16_t*>(wrow), xr, K);
            else *y = c.k->dot_bf16_f32(reinterpret_cast<const uint16_t*>(wrow), xr, K);
        }
    });
}

// ---- attention pieces ------------------------------------------------------

void rope(const Tensor& dst, const OpContext& c) {
    const Tensor* x = dst.src[0];
    const int32_t* pos = static_cast<const int32_t*>(dst.src[1]->data);
    const int n_rot = dst.i[0], half = n_rot / 2;
    const bool neox = static_cast<RopeMode>(dst.i[1]) == RopeMode::Neox;
    const double base = dst.f[0], freq_scale = dst.f[1];
    const float* factors = dst.src[2] ? static_cast<const float*>(dst.src[2]->data) : nullptr;
    float* cos_sin = c.scratch;  // [cos(theta_i), sin(theta_i)] for the current token
    double* freq = reinterpret_cast<double*>(c.scratch + n_rot);  // base^(-2i / n_rot), the same for every token
    for (int i = 0; i < half; ++i) freq[i] = std::pow(base, -2.0 * i / n_rot);
    int64_t cached_token = -1;
    int64_t begin, end;
    split(dst.n_rows(), c, &begin, &end);
    for (int64_t r = begin; r < end; ++r) {
        const RowIndex ri = row_index(&dst, r);
        if (ri.i2 != cached_token) {
            for (int i = 0; i < half; ++i) {
                double theta = pos[ri.i2] * freq_scale * freq[i];
                if (factors) theta /= factors[i];
                cos_sin[2 * i] = (float)std::cos(theta);
                cos_sin[2 * i + 1] = (float)std::sin(theta);
            }
            cached_token = ri.i2;
        }
        const float* xr = reinterpret_cast<const float*>(at(x, 0, ri.i1, ri.i2, ri.i3));
        float* y = reinterpret_cast<float*>(at(&dst, 0, ri.i1, ri.i2, ri.i3));
        for (int i = 0; i < half; ++i) {
            const int j0 = neox ? i : 2 * i, j1 = neox ? i + half : 2 * i + 1;
            const float x0 = xr[j0], x1 = xr[j1], cs = cos_sin[2 * i], sn = cos_sin[2 * i + 1];
            y[j0] = x0 * cs - x1 * sn;
            y[j1] = x0 * sn + x1 * cs;
        }
        for (int64_t j = n_rot; j < dst.ne[0]; ++j) y[j] = xr[j];
    }
}

void softmax(const Tensor& dst, const OpContext& c) {
    const Tensor* x = dst.src[0];
    const Tensor* mask = dst.src[1];
    const float scale = dst.f[0];
    const int64_t n0 = dst.ne[0];
    int64_t begin, end;
    split(dst.n_rows(), c, &begin, &end);
    for (int64_t r = begin; r < end; ++r) {
        const RowIndex ri = row_index(&dst, r);
        float* y = reinterpret_cast<float*>(at(&dst, 0, ri.i1, ri.i2, ri.i3));
        c.k->scale(y, reinterpret_cast<const float*>(at(x, 0, ri.i1, ri.i2, ri.i3)), scale, n0);
        if (mask) c.k->add(y, y, reinterpret_cast<const float*>(at(mask, 0, ri.i1, 0, 0)), n0);
        const float m = c.k->max(y, n0);
        if (m == -INFINITY) {  // fully masked row: attend to nothing
            std::memset(y, 0, n0 * sizeof(float));
            continue;
        }
        const double sum = c.k->exp_shifted(y, y, m, n0);
        c.k->scale(y, y, (float)(1.0 / sum), n0);
    }
}

// Token t, kv head: the query heads that share it attend to the token's
// listed cells (the level's attend kernel), cell by cell in list order, so
// the result depends only on which cells are listed and in what order.
//
// Tasks of up to kAttendQueries consecutive tokens and one kv head, dealt out in turn (a causal prompt's later
// tokens list more cells: contiguous ranges would leave the first thread idle for half of it). A task's tokens
// go to the kernel together where each one's list is a prefix of the longest (a prompt's own tokens), the
// others one at a time; either way each token's result is the same.
void attention(const Tensor& dst, const OpContext& c) {
    const Tensor *q = dst.src[0], *k = dst.src[1], *v = dst.src[2], *cells = dst.src[3];
    const int64_t H = q->ne[1], T = q->ne[2], Hkv = k->ne[2], group = H / Hkv, stride = cells->ne[0];
    const int64_t blocks = (T + kAttendQueries - 1) / kAttendQueries;
    const int32_t* lists = static_cast<const int32_t*>(cells->data);
    const auto list_of = [&](int64_t t) { return lists + t * stride; };  // [n, cell 0, .., cell n-1]
    const auto run = [&](int64_t t, int nq, int64_t kvh, const int32_t* list, const int32_t* counts) {
        c.k->attend(k->type == DType::F16, (int)group, q->ne[0], v->ne[0], nq,
                    reinterpret_cast<const float*>(at(q, 0, kvh * group, t, 0)), q->nb[2] / sizeof(float),
                    at(k, 0, 0, kvh, 0), k->nb[1], at(v, 0, 0, kvh, 0), v->nb[1], list, counts, dst.f[0], c.scratch,
                    reinterpret_cast<float*>(at(&dst, 0, kvh * group, t, 0)), dst.nb[2] / sizeof(float));
    };
    for (int64_t task = c.ith; task < blocks * Hkv; task += c.nth) {
        const int64_t t0 = task / Hkv * kAttendQueries, kvh = task % Hkv;
        const int nq = (int)std::min<int64_t>(kAttendQueries, T - t0);
        bool valid[kAttendQueries];
        int longest = -1;
        for (int i = 0; i < nq; ++i) {
            const int32_t* list = list_of(t0 + i);
            const int32_t n = list[0];
            valid[i] = n >= 1 && n < stride;
            for (int32_t j = 0; valid[i] && j < n; ++j) valid[i] = list[1 + j] >= 0 && list[1 + j] < k->ne[1];
            if (!valid[i]) {
                std::memset(at(&dst, 0, kvh * group, t0 + i, 0), 0, (size_t)(group * v->ne[0]) * sizeof(float));
                c.bad_row_id->store(true, std::memory_order_relaxed);
            } else if (longest < 0 || n > list_of(t0 + longest)[0]) {
                longest = i;
            }
        }
        if (longest < 0) continue;
        const int32_t* shared = list_of(t0 + longest);
        bool together = true;
        int32_t counts[kAttendQueries];
        for (int i = 0; i < nq; ++i) {
            const int32_t* list = list_of(t0 + i);
            counts[i] = list[0];
            together = together && valid[i] && std::memcmp(list + 1, shared + 1, list[0] * sizeof(int32_t)) == 0;
        }
        if (together) {
            run(t0, nq, kvh, shared + 1, counts);
            continue;
        }
        for (int i = 0; i < nq; ++i)
            if (valid[i]) run(t0 + i, 1, kvh, list_of(t0 + i) + 1, &counts[i]);
    }
}

// ---- data movement -------------------------------------------------------

void get_rows(const Tensor& dst, const OpContext& c) {
    const Tensor* table = dst.src[0];
    const int32_t* ids = static_cast<const int32_t*>(dst.src[1]->data);
    const int64_t K = table->ne[0];
    int64_t begin, end;
    split(dst.ne[1], c, &begin, &end);
    for (int64_t m = begin; m < end; ++m) {
        float* y = reinterpret_cast<float*>(at(&dst, 0, m, 0, 0));
        const int32_t id = ids[m];
        if (id < 0 || id >= table->ne[1]) {
            std::memset(y, 0, K * sizeof(float));
            c.bad_row_id->store(true, std::memory_order_relaxed);
            continue;
        }
        const char* row = at(table, 0, id, 0, 0);
        if (table->type == DType::F16) c.k->f16_to_f32(reinterpret_cast<const uint16_t*>(row), y, K);
        else dequantize_row(table->type, row, y, K);
    }
}

// Converts one row of n elements between plain float types; strides in bytes.
void convert_row(DType st, const char* s, size_t s_stride, DType dt, char* d, size_t d_stride, int64_t n,
                 const OpContext& c) {
    const size_t s_size = type_info(st).block_bytes, d_size = type_info(dt).block_bytes;
    if (s_stride == s_size && d_stride == d_size) {
        if (st == dt) {
            std::memcpy(d, s, n * s_size);
            return;
        }
        const auto* s16 = reinterpret_cast<const uint16_t*>(s);
        auto* d16 = reinterpret_cast<uint16_t*>(d);
        if (st == DType::F32 && dt == DType::F16) return c.k->f32_to_f16(reinterpret_cast<const float*>(s), d16, n);
        if (st == DType::F16 && dt == DType::F32) return c.k->f16_to_f32(s16, reinterpret_cast<float*>(d), n);
        if (st == DType::F32 && dt == DType::BF16) return c.k->f32_to_bf16(reinterpret_cast<const float*>(s), d16, n);
        if (st == DType::BF16 && dt == DType::F32) return c.k->bf16_to_f32(s16, reinterpret_cast<float*>(d), n);
    }
    for (int64_t j = 0; j < n; ++j) store_float(dt, d + j * d_stride, load_float(st, s + j * s_stride));
}

void copy(const Tensor& dst, const OpContext& c) {
    const Tensor* src = dst.src[0];
    int64_t begin, end;
    split(dst.n_rows(), c, &begin, &end);
    if (src->same_shape(dst)) {
        for (int64_t r = begin; r < end; ++r) {
            const RowIndex ri = row_index(&dst, r);
            convert_row(src->type, at(src, 0, ri.i1, ri.i2, ri.i3), src->nb[0], dst.type,
                        at(&dst, 0, ri.i1, ri.i2, ri.i3), dst.nb[0], dst.ne[0], c);
        }
        return;
    }
    // Same element count, different shapes: walk both in logical row-major order.
    for (int64_t r = begin; r < end; ++r) {
        const RowIndex ri = row_index(&dst, r);
        for (int64_t j = 0; j < dst.ne[0]; ++j) {
            int64_t flat = r * dst.ne[0] + j;
            const int64_t s0 = flat % src->ne[0];
            flat /= src->ne[0];
            const int64_t s1 = flat % src->ne[1];
            flat /= src->ne[1];
            const int64_t s2 = flat % src->ne[2], s3 = flat / src->ne[2];
            store_float(dst.type, at(&dst, j, ri.i1, ri.i2, ri.i3), load_float(src->type, at(src, s0, s1, s2, s3)));
        }
    }
}

void concat(const Tensor& dst, const OpContext& c) {
    const Tensor* a = dst.src[0];
    const Tensor* b = dst.src[1];
    const int dim = dst.i[0];
    const size_t es = type_info(dst.type).block_bytes;
    int64_t begin, end;
    split(dst.n_rows(), c, &begin, &end);
    for (int64_t r = begin; r < end; ++r) {
        const RowIndex ri = row_index(&dst, r);
        int64_t idx[4] = {0, ri.i1, ri.i2, ri.i3};
        char* y = at(&dst, 0, ri.i1, ri.i2, ri.i3);
        for (int64_t j = 0; j < dst.ne[0]; ++j) {
            idx[0] = j;
            const bool from_a = idx[dim] < a->ne[dim];
            const Tensor* s = from_a ? a : b;
            int64_t si[4] = {idx[0], idx[1], idx[2], idx[3]};
            if (!from_a) si[dim] -= a->ne[dim];
            std::memcpy(y + j * es, at(s, si[0], si[1], si[2], si[3]), es);
        }
    }
}

// Writes row t of src[1] over row ids[t] of the destination src[0] aliases.
void set_rows(const Tensor& dst, const OpContext& c) {
    const Tensor* rows = dst.src[1];
    const int32_t* ids = static_cast<const int32_t*>(dst.src[2]->data);
    int64_t begin, end;
    split(rows->n_rows(), c, &begin, &end);
    for (int64_t r = begin; r < end; ++r) {
        const RowIndex ri = row_index(rows, r);
        const int32_t id = ids[ri.i1];
        if (id < 0 || id >= dst.ne[1]) {
            c.bad_row_id->store(true, std::memory_order_relaxed);
            continue;
        }
        convert_row(DType::F32, at(rows, 0, ri.i1, ri.i2, ri.i3), rows->nb[0], dst.type, at(&dst, 0, id, ri.i2, ri.i3),
                    dst.nb[0], dst.ne[0], c);
    }
}

bool f32_result(const Tensor& node) { return node.type == DType::F32; }
bool rows_contiguous(const Tensor& node) { return node.src[0]->nb[0] == 4; }
bool weights_dequantize(const Tensor& node) { return type_info(node.src[0]->type).can_dequantize; }
bool plain_copy(const Tensor& node) { return plain_float(node.src[0]->type) && plain_float(node.type); }
bool unquantized(const Tensor& node) { return type_info(node.type).block_size == 1; }

size_t matmul_shared_bytes(const Tensor& node, const Kernels& k) {
    const Tensor* w = node.src[0];
    if (!quant_dot(k, w->type)) return 0;
    const size_t row = use_gemm(node, k) || use_octets(node, k) ? flat_act_row_bytes(w->ne[0])
                                                                : act_row_bytes(act_format_for(w->type), w->ne[0]);
    return row * (size_t)node.src[1]->n_rows();
}

size_t matmul_scratch_floats(const Tensor& node) {  // a dequantized row, or a GEMM panel
    const Tensor* w = node.src[0];
    const size_t panel = act_format_for(w->type) == ActFormat::None ? 0 : (panel_bytes(w->type, w->ne[0]) + 3) / 4;
    return std::max((size_t)w->ne[0], panel);
}

size_t rope_scratch_floats(const Tensor& node) { return 2 * (size_t)node.i[0]; }  // cos_sin, then the doubles freq
// Scores of every query head of a group for every listed cell, and the widened key or value rows.
size_t attention_scratch_floats(const Tensor& node) {
    const int64_t group = node.src[0]->ne[1] / node.src[1]->ne[2];
    return attend_work(kAttendQueries, group, node.src[3]->ne[0], node.src[0]->ne[0], node.src[2]->ne[0]);
}

constexpr CpuKernel kKernels[kOpCount] = {
    /* None    */ {nullptr, nullptr, nullptr, nullptr},
    /* View    */ {nullptr, nullptr, nullptr, nullptr},
    /* Copy    */ {copy, plain_copy, nullptr, nullptr},
    /* Add     */ {binary_op, f32_result, nullptr, nullptr},
    /* Mul     */ {binary_op, f32_result, nullptr, nullptr},
    /* Scale   */ {unary_op, f32_result, nullptr, nullptr},
    /* MatMul  */ {matmul, weights_dequantize, matmul_scratch_floats, matmul_shared_bytes},
    /* RmsNorm */ {unary_op, f32_result, nullptr, nullptr},
    /* Rope    */ {rope, rows_contiguous, rope_scratch_floats, nullptr},
    /* SoftMax */ {softmax, rows_contiguous, nullptr, nullptr},
    /* Silu    */ {unary_op, f32_result, nullptr, nullptr},
    /* Gelu    */ {unary_op, f32_result, nullptr, nullptr},
    /* GetRows */ {get_rows, weights_dequantize, nullptr, nullptr},
    /* SetRows */ {set_rows, nullptr, nullptr, nullptr},
    /* Concat  */ {concat, unquantized, nullptr, nullptr},
    /* Attention */ {attention, nullptr, attention_scratch_floats, nullptr},
    /* GroupNorm */ {group_norm, nullptr, nullptr, nullptr},
    /* LayerNorm */ {unary_op, nullptr, nullptr, nullptr},
    /* Upsample  */ {upsample, nullptr, nullptr, nullptr},
    /* GeluErf   */ {unary_op, nullptr, nullptr, nullptr},
    /* QuickGelu */ {unary_op, nullptr, nullptr, nullptr},
    /* Geglu     */ {geglu, nullptr, nullptr, nullptr},
    /* TimestepEmbedding */ {timestep_embedding, nullptr, nullptr, nullptr},
    /* Conv2d  */ {conv2d, nullptr, conv2d_scratch_floats, conv2d_shared_bytes},
    /* DenseAttention */ {dense_attention, nullptr, dense_attention_scratch_floats, nullptr},
    /* GroupMoments */ {group_moments, nullptr, nullptr, nullptr},
    /* Glu     */ {glu, nullptr, nullptr, nullptr},
};

}  // namespace

const CpuKernel& cpu_kernel(Op op) { return kKernels[static_cast<int>(op)]; }

}  // namespace quanta::cpu
