// Every entry of every CPU kernel table this machine can run, against the
// scalar table on the same random data. The Python tests reach the kernels
// through graphs (tests/test_ops.py), which needs Python on the target; this
// program needs nothing but the C++ runtime, so the aarch64 build runs under
// qemu-user on an x86 machine (tests/test_cross_compile.py) and the NEON
// levels are checked without an ARM machine.
//
//     kernel_check            # every level but scalar; exit 1 on any mismatch
//
// Integer work (activation quantization, format conversions, max, the
// elementwise ops) must match bit for bit; float sums may differ by their
// order only, so they are held to a relative error over the sum of the
// terms' magnitudes, computed in double from dequantized values.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "cpu/act_formats.h"
#include "cpu/kernels.h"
#include "cpu/octets.h"
#include "cpu/panel.h"
#include "quant/dequantize.h"
#include "quant/fp16.h"
#include "quant/int8_groups.h"
#include "quant/quantize.h"
#include "quant/types.h"

using namespace quanta;
using namespace quanta::cpu;

namespace {

int g_failures = 0;
const char* g_level = "";

// Prints the first three failures of each kernel (the first word of `what`) at each level.
void check(bool ok, const std::string& what) {
    if (ok) return;
    ++g_failures;
    static std::map<std::string, int> printed;
    if (printed[g_level + (" " + what.substr(0, what.find(' ')))]++ < 3) std::printf("FAIL %s: %s\n", g_level, what.c_str());
}

// |got - want| within rel * scale + abs.
void close(double got, double want, double scale, double rel, const std::string& what, double abs = 0) {
    const bool ok = std::isfinite(got) && std::fabs(got - want) <= rel * scale + abs;
    if (!ok) {
        char buf[160];
        std::snprintf(buf, sizeof buf, " got %.9g want %.9g (scale %.3g)", got, want, scale);
        check(false, what + buf);
    }
}

// Float sums in another order: about an ulp per addition, over up to ~1000 terms (136 activation blocks of a
// 4352-long row), relative to the sum of the terms' magnitudes. Real mistakes are above 1e-3.
constexpr double kSumTol = 1e-5;

std::mt19937 g_rng(1234);
std::vector<float> normal(size_t n, float sd = 1.0f) {
    std::normal_distribution<float> dist(0.0f, sd);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(g_rng);
    return v;
}

// ---- quantized dot products and the GEMM tiles ---------------------------------------

// The exact dot of dequantized weight row w and activation row a, and the size of the terms the kernels
// add: they split each weight into its levels times a scale and an offset or min (q4_0's d * q - 8 d),
// which can each be near twice the largest weight of the 32 in its block.
struct Exact {
    double dot = 0, scale = 0;
};
Exact exact_dot(const float* w, const float* a, int64_t n) {
    Exact e;
    for (int64_t b = 0; b < n; b += 32) {
        double big = 0;
        for (int i = 0; i < 32; ++i) big = std::max(big, (double)std::fabs(w[b + i]));
        for (int i = 0; i < 32; ++i) {
            e.dot += (double)w[b + i] * a[b + i];
            e.scale += (std::fabs(w[b + i]) + 2 * big) * std::fabs(a[b + i]);
        }
    }
    return e;
}

const DType kQuantTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                             DType::Q4_K, DType::Q5_K, DType::Q6_K};
// The types the CUDA kernels read as int8 pairs (quant/int8_groups.h): those, and q2_k and q3_k.
const DType kPairTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                            DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};

// Activation rows as the kernels see them, and the values they stand for.
struct Acts {
    std::vector<uint8_t> bytes;
    size_t stride;
    std::vector<float> values;  // dequantized: levels times their block's d
};

Acts make_acts(const Kernels& k, DType weight, int rows, int64_t n) {
    const ActFormat format = act_format_for(weight);
    Acts a{std::vector<uint8_t>(), act_row_bytes(format, n), std::vector<float>((size_t)rows * n)};
    a.bytes.assign(a.stride * rows, 0);
    for (int r = 0; r < rows; ++r) {
        std::vector<float> x = normal(n);
        if (r == 1) x[5] = 40.0f;  // one outlier: its block's scale is coarse
        // Every level at +127: against weight row 5 this is the largest int16 sum of products the AVX2
        // kernels hold before widening (vpmaddubsw saturates).
        if (r == 3) x.assign((size_t)n, 1.0f);
        quantize_act(k, weight)(x.data(), a.bytes.data() + r * a.stride, n);
        const uint8_t* row = a.bytes.data() + r * a.stride;
        for (int64_t b = 0; b < n / 32; ++b) {
            float d;
            const int8_t* q;
            if (format == ActFormat::Paired) {
                const ActBlock32Ref blk = act_block32(row, b);
                d = blk.d, q = blk.q;
            } else {
                const FlatActRow f = flat_act_row(row, n);
                d = f.d[b], q = f.q + 32 * b;
            }
            for (int i = 0; i < 32; ++i) a.values[(size_t)r * n + 32 * b + i] = d * q[i];
        }
    }
    return a;
}

void check_activation_formats(const Kernels& k, const Kernels& ref) {
    for (int64_t n : {32, 96, 512, 4096 + 32}) {
        const std::vector<float> x = normal(n, 3.0f);
        for (ActFormat f : {ActFormat::Paired, ActFormat::Flat}) {
            const QuantizeActFn mine = f == ActFormat::Paired ? k.quantize_act_paired : k.quantize_act_flat;
            const QuantizeActFn theirs = f == ActFormat::Paired ? ref.quantize_act_paired : ref.quantize_act_flat;
            std::vector<uint8_t> a(act_row_bytes(f, n), 0xab), b(act_row_bytes(f, n), 0xab);
            mine(x.data(), a.data(), n);
            theirs(x.data(), b.data(), n);
            check(a == b, std::string(f == ActFormat::Paired ? "paired" : "flat") + " activations, n=" +
                              std::to_string(n) + ": bytes differ from scalar");
        }
    }
}

// Quantized weight rows (one with an outlier) and their dequantized values, made once per type and
// length: the k-quant search is slow under emulation.
constexpr int kWeightRows = 37;
struct Weights {
    std::vector<uint8_t> bytes;
    std::vector<float> values;
};
const Weights& weights_of(DType t, int64_t n) {
    static std::map<std::pair<DType, int64_t>, Weights> cache;
    Weights& w = cache[{t, n}];
    if (w.bytes.empty()) {
        const size_t rb = row_bytes(t, n);
        w.bytes.resize(rb * kWeightRows);
        w.values.resize((size_t)kWeightRows * n);
        for (int r = 0; r < kWeightRows; ++r) {
            std::vector<float> x = normal(n);
            if (r == 3) x[7] = -25.0f;
            // Levels at the top of their range: each block's one negative element sets the scale.
            if (r == 5)
                for (int64_t i = 0; i < n; ++i) x[(size_t)i] = i % 32 ? 1.0f : -1.0f;
            quantize_row(t, x.data(), w.bytes.data() + r * rb, n);
            dequantize_row(t, w.bytes.data() + r * rb, w.values.data() + (size_t)r * n, n);
        }
    }
    return w;
}

// Octets (octets.h): packing is undone exactly, and the level's octet kernel agrees with the exact dot and,
// bit for bit, with its GEMM tile on the same rows, so a row's result does not depend on its batch's size.
void check_octets(const Kernels& k, DType t, int64_t n, const Weights& weights, const std::string& name) {
    const size_t rb = row_bytes(t, n);
    std::vector<uint8_t> octets(octets_bytes(t, kWeightRows, n)), row(rb);
    pack_octets(t, weights.bytes.data(), rb, kWeightRows, n, octets.data());
    for (int r = 0; r < kWeightRows; ++r) {
        octet_row_to_plain(t, octets.data() + (r / kOctetRows) * octet_bytes(t, n), n, r % kOctetRows, row.data());
        check(std::memcmp(row.data(), weights.bytes.data() + r * rb, rb) == 0,
              "octets " + name + " row " + std::to_string(r) + ": unpacked bytes differ");
    }
    if (!k.dot_octets) return;
    const Acts flat = make_acts(k, DType::Q4_K, 4, n);
    const GemmTileFn tile = gemm_tile(k, t);
    std::vector<float> gemm((size_t)4 * kPanelRows);
    if (tile) {
        std::vector<const void*> ptrs(kPanelRows);
        for (int r = 0; r < kPanelRows; ++r) ptrs[r] = weights.bytes.data() + r * rb;
        std::vector<uint8_t> panel(panel_bytes(t, n));
        unpack_panel(t, ptrs.data(), kPanelRows, n, k.panel_scales, panel.data());
        std::vector<uint8_t> from_octets(panel.size());
        unpack_panel_octets(t, octets.data(), kPanelRows, n, k.panel_scales, from_octets.data());
        check(from_octets == panel, "octets " + name + ": the panel unpacked from octets differs");
        tile(n, panel.data(), panel_group_bytes(t, n), flat.bytes.data(), flat.stride, 4, gemm.data(), kPanelRows,
             kPanelRows, t);
    }
    for (int o = 0; o * kOctetRows < kWeightRows; ++o) {
        const int nr = std::min(kOctetRows, kWeightRows - o * kOctetRows);
        for (int na = 1; na <= 4; ++na) {
            float out[4 * kOctetRows];
            k.dot_octets(t, n, octets.data() + o * octet_bytes(t, n), flat.bytes.data(), flat.stride, na, out,
                         kOctetRows, nr);
            for (int j = 0; j < na; ++j)
                for (int i = 0; i < nr; ++i) {
                    const int r = o * kOctetRows + i;
                    const std::string what = name + " row " + std::to_string(r) + " na=" + std::to_string(na);
                    const Exact e = exact_dot(&weights.values[(size_t)r * n], &flat.values[(size_t)j * n], n);
                    close(out[j * kOctetRows + i], e.dot, e.scale, kSumTol, "octets " + what);
                    if (tile && r < kPanelRows)
                        check(out[j * kOctetRows + i] == gemm[(size_t)j * kPanelRows + r],
                              "octets-vs-gemm " + what + ": not the GEMM tile's bits");
                }
        }
    }
}

void check_quant_dots(const Kernels& k, const Kernels& ref) {
    for (DType t : kQuantTypes) {
        const int block = type_info(t).block_size;
        for (int64_t n : {(int64_t)block, (int64_t)block * 3, (int64_t)4096 + (block == 256 ? 256 : 96)}) {
            if (n % block) continue;
            const int rows = kWeightRows;
            const size_t rb = row_bytes(t, n);
            const Weights& weights = weights_of(t, n);
            const std::vector<uint8_t>& w = weights.bytes;
            const std::vector<float>& wv = weights.values;
            const Acts acts = make_acts(k, t, 5, n);
            const std::string name = std::string(type_name(t)) + " n=" + std::to_string(n);
            for (int r = 0; r < rows; ++r) {
                const uint8_t* a1 = acts.bytes.data() + acts.stride;  // rows 1..4: the outlier row first
                float want[4];
                Exact e[4];
                quant_dot(ref, t)(n, w.data() + r * rb, a1, acts.stride, want, 1, 4);
                for (int j = 0; j < 4; ++j) {
                    e[j] = exact_dot(&wv[(size_t)r * n], &acts.values[(size_t)(j + 1) * n], n);
                    close(want[j], e[j].dot, e[j].scale, kSumTol, name + " scalar against double, row " + std::to_string(r));
                }
                for (int na = 1; na <= 4; ++na) {
                    float got[4];
                    quant_dot(k, t)(n, w.data() + r * rb, a1, acts.stride, got, 1, na);
                    for (int j = 0; j < na; ++j)
                        close(got[j], want[j], e[j].scale, kSumTol, name + " row " + std::to_string(r) + " na=" + std::to_string(na));
                }
            }
            check_octets(k, t, n, weights, name);
            // The prefill GEMM tile, where the level has one: a panel of the first kPanelRows rows.
            const GemmTileFn tile = gemm_tile(k, t);
            if (!tile) continue;
            for (int nw : {kPanelRows, 5}) {
                std::vector<const void*> ptrs(nw);
                for (int r = 0; r < nw; ++r) ptrs[r] = w.data() + r * rb;
                const Acts flat = make_acts(k, DType::Q4_K, 4, n);  // the GEMM reads the flat format
                std::vector<uint8_t> panel(panel_bytes(t, n));
                unpack_panel(t, ptrs.data(), nw, n, k.panel_scales, panel.data());
                for (int na = 1; na <= 4; ++na) {
                    std::vector<float> out((size_t)na * kPanelRows, NAN);
                    tile(n, panel.data(), panel_group_bytes(t, n), flat.bytes.data(), flat.stride, na, out.data(),
                         kPanelRows, nw, t);
                    for (int j = 0; j < na; ++j)
                        for (int r = 0; r < nw; ++r) {
                            const Exact e = exact_dot(&wv[(size_t)r * n], &flat.values[(size_t)j * n], n);
                            close(out[(size_t)j * kPanelRows + r], e.dot, e.scale, kSumTol,
                                  name + " gemm tile row " + std::to_string(r) + " na=" + std::to_string(na));
                        }
                }
            }
        }
    }
}

// ---- float kernels ----------------------------------------------------------------------

void check_float_rows(const Kernels& k, const Kernels& ref) {
    for (int64_t n : {1, 7, 16, 33, 100, 1031}) {
        const std::vector<float> a = normal(n, 2.0f), b = normal(n, 2.0f);
        const std::string at = " n=" + std::to_string(n);
        double scale = 0;
        for (int64_t i = 0; i < n; ++i) scale += std::fabs((double)a[i] * b[i]);
        close(k.dot_f32(a.data(), b.data(), n), ref.dot_f32(a.data(), b.data(), n), scale, kSumTol, "dot_f32" + at);

        std::vector<uint16_t> h(n), h_ref(n), bf(n), bf_ref(n);
        k.f32_to_f16(a.data(), h.data(), n);
        ref.f32_to_f16(a.data(), h_ref.data(), n);
        check(h == h_ref, "f32_to_f16" + at);
        k.f32_to_bf16(a.data(), bf.data(), n);
        ref.f32_to_bf16(a.data(), bf_ref.data(), n);
        check(bf == bf_ref, "f32_to_bf16" + at);
        std::vector<float> y(n), y_ref(n);
        k.f16_to_f32(h.data(), y.data(), n);
        ref.f16_to_f32(h.data(), y_ref.data(), n);
        check(y == y_ref, "f16_to_f32" + at);
        k.bf16_to_f32(bf.data(), y.data(), n);
        ref.bf16_to_f32(bf.data(), y_ref.data(), n);
        check(y == y_ref, "bf16_to_f32" + at);
        close(k.dot_f16_f32(h.data(), b.data(), n), ref.dot_f16_f32(h.data(), b.data(), n), scale, kSumTol, "dot_f16_f32" + at, 1e-6);
        close(k.dot_bf16_f32(bf.data(), b.data(), n), ref.dot_bf16_f32(bf.data(), b.data(), n), scale, kSumTol, "dot_bf16_f32" + at, 1e-6);

        k.add(y.data(), a.data(), b.data(), n), ref.add(y_ref.data(), a.data(), b.data(), n);
        check(y == y_ref, "add" + at);
        k.mul(y.data(), a.data(), b.data(), n), ref.mul(y_ref.data(), a.data(), b.data(), n);
        check(y == y_ref, "mul" + at);
        k.scale(y.data(), a.data(), -0.37f, n), ref.scale(y_ref.data(), a.data(), -0.37f, n);
        check(y == y_ref, "scale" + at);
        check(k.max(a.data(), n) == ref.max(a.data(), n), "max" + at);
        double squares = 0;
        for (float v : a) squares += (double)v * v;
        close(k.sum_squares(a.data(), n), ref.sum_squares(a.data(), n), squares, 1e-6, "sum_squares" + at);

        // Activations: elementwise, each value within a few ulps of the scalar one.
        using Unary = void (*)(float*, const float*, int64_t);
        const std::pair<const char*, Unary> unary[][2] = {
            {{"silu", k.silu}, {"", ref.silu}}, {{"gelu", k.gelu}, {"", ref.gelu}},
            {{"gelu_erf", k.gelu_erf}, {"", ref.gelu_erf}}, {{"quick_gelu", k.quick_gelu}, {"", ref.quick_gelu}}};
        for (const auto& u : unary) {
            u[0].second(y.data(), a.data(), n), u[1].second(y_ref.data(), a.data(), n);
            for (int64_t i = 0; i < n; ++i)
                close(y[i], y_ref[i], std::fabs(y_ref[i]), 2e-6, std::string(u[0].first) + at, 1e-7);
        }
        const float shift = k.max(a.data(), n);
        const double sum = k.exp_shifted(y.data(), a.data(), shift, n);
        const double sum_ref = ref.exp_shifted(y_ref.data(), a.data(), shift, n);
        close(sum, sum_ref, sum_ref, 1e-6, "exp_shifted sum" + at);
        for (int64_t i = 0; i < n; ++i) close(y[i], y_ref[i], y_ref[i], 2e-6, "exp_shifted" + at, 1e-30);

        const Moments m = k.moments(a.data(), n), m_ref = ref.moments(a.data(), n);
        check(m.n == m_ref.n, "moments count" + at);
        close(m.mean, m_ref.mean, std::sqrt(m_ref.m2 / n) + std::fabs(m_ref.mean), 1e-6, "moments mean" + at);
        close(m.m2, m_ref.m2, m_ref.m2, 1e-6, "moments m2" + at);
        k.normalize(y.data(), a.data(), 0.25f, 1.7f, -0.1f, n), ref.normalize(y_ref.data(), a.data(), 0.25f, 1.7f, -0.1f, n);
        for (int64_t i = 0; i < n; ++i) close(y[i], y_ref[i], std::fabs(y_ref[i]), 1e-6, "normalize" + at, 1e-6);
    }
}

void check_float_tile(const Kernels& k) {
    if (!k.float_tile) return;
    for (DType t : {DType::F32, DType::F16, DType::BF16})
        for (int64_t kk : {37, 96, 300}) {
            const int rows = 4, na = 4;
            const size_t elt = t == DType::F32 ? 4 : 2, ws = (size_t)kk * elt;
            std::vector<char> w(ws * rows);
            std::vector<float> wv(rows * kk);
            const std::vector<float> src = normal(rows * kk), x = normal(na * kk);
            for (int i = 0; i < rows * kk; ++i) {
                if (t == DType::F32) std::memcpy(&w[4 * i], &src[i], 4), wv[i] = src[i];
                else {
                    const uint16_t h = t == DType::F16 ? f32_to_f16(src[i]) : f32_to_bf16(src[i]);
                    std::memcpy(&w[2 * i], &h, 2);
                    wv[i] = t == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
                }
            }
            for (int nw = 1; nw <= rows; nw += 3)
                for (int m = 1; m <= na; ++m) {
                    std::vector<float> out(rows * na, NAN);
                    k.float_tile(t, kk, w.data(), ws, x.data(), kk, m, out.data(), rows, nw);
                    for (int j = 0; j < m; ++j)
                        for (int r = 0; r < nw; ++r) {
                            double exact = 0, scale = 0;
                            for (int e = 0; e < kk; ++e) {
                                const double p = (double)wv[r * kk + e] * x[j * kk + e];
                                exact += p, scale += std::fabs(p);
                            }
                            close(out[j * rows + r], exact, scale, kSumTol,
                                  std::string("float_tile ") + type_name(t) + " k=" + std::to_string(kk));
                        }
                }
        }
}

// ---- attention and convolution ----------------------------------------------------------

void check_attention(const Kernels& k, const Kernels& ref) {
    for (bool f16 : {false, true}) {
        const int g = 3, n = 45;
        const int64_t hd = 40, hdv = 24;
        const size_t elt = f16 ? 2 : 4, k_cell = hd * elt + 8, v_cell = hdv * elt;
        const int cells_total = 60;
        std::vector<char> keys(k_cell * cells_total), vals(v_cell * cells_total);
        const std::vector<float> kf = normal(hd * cells_total), vf = normal(hdv * cells_total);
        for (int c = 0; c < cells_total; ++c)
            for (int64_t e = 0; e < std::max(hd, hdv); ++e) {
                auto put = [&](std::vector<char>& dst, size_t cell, float v) {
                    if (f16) {
                        const uint16_t h = f32_to_f16(v);
                        std::memcpy(&dst[cell + 2 * e], &h, 2);
                    } else {
                        std::memcpy(&dst[cell + 4 * e], &v, 4);
                    }
                };
                if (e < hd) put(keys, c * k_cell, kf[c * hd + e]);
                if (e < hdv) put(vals, c * v_cell, vf[c * hdv + e]);
            }
        std::vector<int32_t> cells(n);
        for (int j = 0; j < n; ++j) cells[j] = (j * 7) % cells_total;
        // Three tokens listing prefixes of one list (45, 44 and 1 cells), together and each alone: the same bits.
        const std::vector<float> q3 = normal(3 * g * hd);
        const int32_t counts[3] = {n, n - 1, 1};
        std::vector<float> work(attend_work(3, g, n, hd, hdv)), out(3 * g * hdv), out_ref(3 * g * hdv);
        k.attend(f16, g, hd, hdv, 3, q3.data(), g * hd, keys.data(), k_cell, vals.data(), v_cell, cells.data(), counts,
                 0.15f, work.data(), out.data(), g * hdv);
        for (int t = 0; t < 3; ++t) {
            std::vector<float> alone(g * hdv);
            k.attend(f16, g, hd, hdv, 1, q3.data() + t * g * hd, 0, keys.data(), k_cell, vals.data(), v_cell,
                     cells.data(), counts + t, 0.15f, work.data(), alone.data(), 0);
            ref.attend(f16, g, hd, hdv, 1, q3.data() + t * g * hd, 0, keys.data(), k_cell, vals.data(), v_cell,
                       cells.data(), counts + t, 0.15f, work.data(), out_ref.data() + t * g * hdv, 0);
            check(std::memcmp(alone.data(), out.data() + t * g * hdv, alone.size() * sizeof(float)) == 0,
                  std::string("attend f16=") + (f16 ? "1" : "0") + " token " + std::to_string(t) + ": not its bits alone");
        }
        for (int i = 0; i < 3 * g * hdv; ++i) close(out[i], out_ref[i], 1.0, 1e-5, std::string("attend f16=") + (f16 ? "1" : "0"));

        // Dense attention: contiguous keys, more than one key block, a partial query tile.
        const int nq = 11;
        const int64_t nk = 150;
        std::vector<char> dk(k_cell * nk), dv(v_cell * nk);
        std::memcpy(dk.data(), keys.data(), k_cell * std::min<int64_t>(nk, cells_total));
        std::memcpy(dv.data(), vals.data(), v_cell * std::min<int64_t>(nk, cells_total));
        for (int64_t c = cells_total; c < nk; ++c) {
            std::memcpy(&dk[c * k_cell], &keys[(c % cells_total) * k_cell], k_cell);
            std::memcpy(&dv[c * v_cell], &vals[((c * 3) % cells_total) * v_cell], v_cell);
        }
        const std::vector<float> dq = normal(nq * hd);
        std::vector<float> dwork(dense_attend_work(hd, hdv, nq)), dout(nq * hdv), dout_ref(nq * hdv);
        k.attend_dense(f16, hd, hdv, dq.data(), hd, nq, dk.data(), k_cell, dv.data(), v_cell, nk, 0.15f,
                       dwork.data(), dout.data(), hdv);
        ref.attend_dense(f16, hd, hdv, dq.data(), hd, nq, dk.data(), k_cell, dv.data(), v_cell, nk, 0.15f,
                         dwork.data(), dout_ref.data(), hdv);
        for (int i = 0; i < nq * hdv; ++i)
            close(dout[i], dout_ref[i], 1.0, 1e-5, std::string("attend_dense f16=") + (f16 ? "1" : "0"));
    }
}

void check_convolution(const Kernels& k, const Kernels& ref) {
    const int64_t kk = 75;
    const int np = 37;
    const std::vector<float> w = normal(kConvChannels * kk), pt = normal(kk * np);
    for (int nr = 1; nr <= kConvChannels; nr += kConvChannels - 1)
        for (bool accumulate : {false, true}) {
            std::vector<float> out(nr * np, 0.5f), out_ref(nr * np, 0.5f);
            k.conv_tile(kk, w.data(), kk, nr, pt.data(), np, np, out.data(), np, accumulate);
            ref.conv_tile(kk, w.data(), kk, nr, pt.data(), np, np, out_ref.data(), np, accumulate);
            for (int r = 0; r < nr; ++r)
                for (int p = 0; p < np; ++p) {
                    double scale = 0.5;
                    for (int e = 0; e < kk; ++e) scale += std::fabs((double)w[r * kk + e] * pt[e * np + p]);
                    close(out[r * np + p], out_ref[r * np + p], scale, kSumTol, "conv_tile");
                }
        }

    // Winograd F(2x2, 3x3): kernels, inputs and outputs transforms.
    const int64_t n = 21;
    const size_t plane = 24;
    const std::vector<float> g = normal(9 * n);
    std::vector<float> u(16 * plane), u_ref(16 * plane);
    k.winograd_kernels(g.data(), n, u.data(), plane), ref.winograd_kernels(g.data(), n, u_ref.data(), plane);
    for (int pos = 0; pos < 16; ++pos)
        for (int64_t i = 0; i < n; ++i) close(u[pos * plane + i], u_ref[pos * plane + i], 4.0, 1e-6, "winograd kernels");
    // Each tile reads 4 rows of 4 columns: even columns 0, 2 and odd columns 1, 3 of its rows.
    const std::vector<float> img = normal(4 * 2 * (n + 1) * 2);
    std::vector<const float*> even(4), odd(4);
    for (int r = 0; r < 4; ++r) {
        even[r] = img.data() + r * 2 * (2 * (n + 1));
        odd[r] = even[r] + 2 * (n + 1);
    }
    std::vector<float> v(16 * plane), v_ref(16 * plane);
    k.winograd_inputs(even.data(), odd.data(), n, v.data(), plane);
    ref.winograd_inputs(even.data(), odd.data(), n, v_ref.data(), plane);
    for (int pos = 0; pos < 16; ++pos)
        for (int64_t j = 0; j < n; ++j) close(v[pos * plane + j], v_ref[pos * plane + j], 8.0, 1e-6, "winograd inputs");
    const size_t ys = 2 * n + 3;
    std::vector<float> y(4 * ys, 0), y_ref(4 * ys, 0);
    k.winograd_outputs(v_ref.data(), plane, n, 0.3f, y.data(), ys);
    ref.winograd_outputs(v_ref.data(), plane, n, 0.3f, y_ref.data(), ys);
    for (size_t i = 0; i < y.size(); ++i) close(y[i], y_ref[i], 32.0, 1e-6, "winograd outputs");
}

}  // namespace

// Group j of pair `pair`'s element i as a * (q + offset) + b.
template <DType T>
float pair_value(const block::Int8Pair& pair, int j, int i) {
    const int q = (int8_t)(pair.q[4 * j + i / 4] >> (8 * (i % 4)));
    return pair.a[j] * (float)(q + block::code_offset(T)) + pair.b[j];
}

// quant/int8_groups.h, which the CUDA matmul kernels read: the pairs of each block cover its groups once, and
// every element's a * (q + offset) + b equals what the reference dequantizes (NaN where it is NaN), on random
// bytes (every code and scale, q2_k and q3_k too, which have no quantizer) and on quantized rows.
void check_int8_pairs() {
    std::uniform_int_distribution<int> byte(0, 255);
    for (DType t : kPairTypes) block::with_pair_type(t, [&](auto type) {
        constexpr DType T = decltype(type)::value;
        const int64_t n = 1024, per_block = type_info(T).block_size;
        const size_t rb = row_bytes(T, n), block = type_info(T).block_bytes;
        std::vector<uint8_t> row(rb);
        for (int r = 0; r < 40; ++r) {
            if (r < 32 || !can_quantize(T))
                for (auto& b : row) b = (uint8_t)byte(g_rng);
            else
                std::memcpy(row.data(), weights_of(T, n).bytes.data() + (r - 32) * rb, rb);
            std::vector<float> want(n);
            dequantize_row(T, row.data(), want.data(), n);
            for (int64_t blk = 0; blk < n / per_block; ++blk) {
                std::vector<int> seen(per_block / block::kGroup, 0);
                for (int p = 0; p < block::pairs_per_block(T); ++p) {
                    const block::Int8Pair pair = block::int8_pair<T, block::pair_alignment(T)>(row.data() + blk * block, p);
                    for (int j = 0; j < 2; ++j) {
                        ++seen.at(pair.g[j]);
                        for (int i = 0; i < block::kGroup; ++i) {
                            const int64_t e = blk * per_block + block::kGroup * pair.g[j] + i;
                            const float got = pair_value<T>(pair, j, i), w = want[e];
                            check(got == w || (std::isnan(got) && std::isnan(w)),
                                  std::string("int8_pair ") + type_name(T) + " element " + std::to_string(e) + ": " +
                                      std::to_string(got) + " != " + std::to_string(w));
                        }
                    }
                }
                for (int c : seen) check(c == 1, std::string("int8_pair ") + type_name(T) + ": a group not covered once");
            }
        }
    });
}

// The CUDA matmul kernel's arithmetic on the CPU: a weight row of each type as int8 pairs (int8_groups.h)
// against flat activation rows, the groups' shares summed, agrees with the exact dot of the dequantized values.
// Rows of random bytes (their f16 scales made finite and small) and, where the type quantizes, real rows.
void check_int8_pair_dots(const Kernels& ref) {
    const auto f16_fields = [](DType t) -> std::vector<int> {  // byte offsets of a block's f16 fields
        switch (t) {
            case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: return {0};
            case DType::Q2_K: return {80, 82};
            case DType::Q3_K: return {108};
            case DType::Q6_K: return {208};
            default: return {0, 2};  // q4_1, q5_1, q4_k, q5_k
        }
    };
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> scale(0.001f, 0.1f);
    const int64_t n = 4096 + 256;
    const Acts acts = make_acts(ref, DType::Q4_K, 4, n);  // the flat format
    for (DType t : kPairTypes) block::with_pair_type(t, [&](auto type) {
        constexpr DType T = decltype(type)::value;
        constexpr int kPairs = block::pairs_per_block(T);
        const size_t rb = row_bytes(T, n), block = type_info(T).block_bytes;
        std::vector<uint8_t> rows(rb * 8);
        for (auto& b : rows) b = (uint8_t)byte(g_rng);
        for (size_t at = 0; at < rows.size(); at += block)
            for (int f : f16_fields(T)) {
                const uint16_t h = f32_to_f16(scale(g_rng));
                std::memcpy(&rows[at + f], &h, 2);
            }
        if (can_quantize(T)) std::memcpy(rows.data() + 4 * rb, weights_of(T, n).bytes.data(), 4 * rb);
        for (int r = 0; r < 8; ++r) {
            const uint8_t* w = rows.data() + r * rb;
            std::vector<float> wv(n);
            dequantize_row(T, w, wv.data(), n);
            for (int j = 0; j < 4; ++j) {
                const FlatActRow a = flat_act_row(acts.bytes.data() + j * acts.stride, n);
                float got = 0;
                for (int64_t i = 0; i < n / 32; ++i) {
                    const int64_t blk = i / kPairs;
                    const block::Int8Pair pair = block::int8_pair<T, block::pair_alignment(T)>(w + blk * block, (int)(i % kPairs));
                    for (int g = 0; g < 2; ++g)
                        got += block::int8_group_dot<T>(pair, g, block::act_group(a, blk * 2 * kPairs + pair.g[g]));
                }
                const Exact e = exact_dot(wv.data(), &acts.values[(size_t)j * n], n);
                close(got, e.dot, e.scale, kSumTol,
                      std::string("int8 pair dot ") + type_name(T) + " row " + std::to_string(r) + " act " +
                          std::to_string(j));
            }
        }
    });
}

int main() {
    const Kernels& ref = kernels_for(Level::Scalar);
    std::printf("cpu features: %s\n", cpu_features().c_str());
    for (Level level : available_levels()) {
        if (level == Level::Scalar) continue;
        const Kernels& k = kernels_for(level);
        g_level = k.name;
        const int before = g_failures;
        check_activation_formats(k, ref);
        check_quant_dots(k, ref);
        check_float_rows(k, ref);
        check_float_tile(k);
        check_attention(k, ref);
        check_convolution(k, ref);
        std::printf("%s: %s\n", k.name, g_failures == before ? "ok" : "MISMATCH");
    }
    // The scalar level's own quantized dots against double sums of the dequantized values.
    g_level = "scalar";
    const int before = g_failures;
    check_quant_dots(ref, ref);
    check_float_tile(ref);
    check_int8_pairs();
    check_int8_pair_dots(ref);
    std::printf("scalar: %s\n", g_failures == before ? "ok" : "MISMATCH");
    return g_failures ? 1 : 0;
}
