// conv2d on the CPU (conv2d.h). A task is a tile of up to kTilePixels output
// pixels of one image and a group of output channels; no image-sized im2col
// is ever made. For its tile a thread gathers the patches (the KW x KH x Cin
// inputs under the kernel at each pixel, zeros in the padding, in a kernel
// row's order) into its scratch and runs them against its kernel rows:
//   plain float kernels: patches transposed ([element][pixel]), a chunk of
//     input channels at a time, into the level's conv_tile (kernels.h), whose
//     sums land in the pixel-contiguous output planes; f16/bf16 rows are
//     widened kConvChannels at a time;
//   quantized kernels: one patch row per pixel, quantized to 8 bits, into the
//     matmul's prefill GEMM tile over panels of 32 kernel rows, which the
//     threads unpack together once per run (panel.h), where the level has the
//     tile; else into the row kernels (dequantized rows and float dots for
//     types without one).
#include "cpu/conv2d.h"

#include <algorithm>

#include "core/elements.h"
#include "cpu/act_formats.h"
#include "cpu/panel.h"
#include "cpu/winograd.h"
#include "quant/dequantize.h"

namespace quanta::cpu {
namespace {

struct Geometry {
    int64_t w, h, cin, ow, cout, k, pixels;  // k: a kernel row's length; pixels: per output plane
    int64_t stride, pad, kw, kh, taps;       // taps: kw * kh
    size_t w_row;  // bytes per kernel row
};

Geometry geometry(const Tensor& node) {
    const Tensor *x = node.src[0], *w = node.src[1];
    Geometry g;
    g.w = x->ne[0];
    g.h = x->ne[1];
    g.cin = x->ne[2];
    g.ow = node.ne[0];
    g.cout = node.ne[2];
    g.pixels = node.ne[0] * node.ne[1];
    g.stride = node.i[0];
    g.pad = node.i[1];
    g.kw = node.i[3];
    g.kh = node.i[4];
    g.taps = g.kw * g.kh;
    g.k = g.taps * g.cin;
    g.w_row = row_bytes(w->type, g.k);
    return g;
}

// Pixels per tile: 64, one row of conv_tile's widest register tile (4 vectors
// of 16), so each broadcast weight feeds 4 FMAs.
constexpr int64_t kTilePixels = 64;

// Input channels per chunk of transposed patches: the chunk takes at most
// kChunkBytes, in L2 (2 MiB) while every output channel passes over it; SD's
// 320-channel 3x3 layers take two chunks of 160 channels (360 KiB). 16, 96
// and 384 KiB measured alike within noise (bench/conv_bench.py); the larger
// passes over the task's outputs fewer times.
constexpr size_t kChunkBytes = 384 * 1024;
int64_t chunk_channels(const Geometry& g) {
    const int64_t most = std::max<int64_t>(1, (int64_t)(kChunkBytes / (kTilePixels * sizeof(float))) / g.taps);
    const int64_t chunks = (g.cin + most - 1) / most;
    return (g.cin + chunks - 1) / chunks;
}

// Quantized kernels: pixels per tile such that the f32 patch rows take about
// kPatchBytes (a third of L2: each tile reads every kernel row once), at least 4, at most 64.
constexpr size_t kPatchBytes = 640 * 1024;
int64_t quantized_tile_pixels(int64_t k) {
    return std::clamp<int64_t>((int64_t)(kPatchBytes / ((size_t)k * sizeof(float))) / 4 * 4, 4, 64);
}

// A thread's scratch, offsets in floats. Plain float kernels: transposed
// patches of a channel chunk, then kConvChannels widened kernel rows of it.
// Quantized: f32 patch rows, their 8-bit form, one dequantized kernel row.
struct ScratchLayout {
    size_t second, third, floats;
};
ScratchLayout scratch_layout(const Geometry& g, DType type) {
    if (plain_float(type)) {
        const size_t chunk = (size_t)(chunk_channels(g) * g.taps);
        return {chunk * kTilePixels, 0, chunk * (kTilePixels + kConvChannels)};
    }
    const size_t tm = (size_t)quantized_tile_pixels(g.k), patches = tm * (size_t)g.k;
    const size_t act = (std::max(act_row_bytes(act_format_for(type), g.k), flat_act_row_bytes(g.k)) * tm + 3) / 4;
    return {patches, patches + act, patches + act + (size_t)g.k};
}

// The input position under the kernel's first tap at output pixel p (may lie in the padding).
struct Origin {
    int64_t y0, x0;
};
Origin origin(const Geometry& g, int64_t p) { return {p / g.ow * g.stride - g.pad, p % g.ow * g.stride - g.pad}; }

// Transposed patches of input channels [c0, c1) at pixels [p0, p0 + np) of
// image n: row ((ci - c0) * KH + ky) * KW + kx holds that tap of every pixel.
// The tile is walked by runs of pixels on one output row, which read one
// input row at a stride: a block copy with zeros at the edges (stride 1).
void gather_transposed(const float* x, const Geometry& g, int64_t n, int64_t c0, int64_t c1, int64_t p0, int64_t np,
                       float* out) {
    for (int64_t m0 = 0; m0 < np;) {
        const int64_t ox0 = (p0 + m0) % g.ow, len = std::min(np - m0, g.ow - ox0);
        const Origin o = origin(g, p0 + m0);
        for (int64_t ci = c0; ci < c1; ++ci) {
            const float* plane = x + (n * g.cin + ci) * g.h * g.w;
            for (int64_t ky = 0; ky < g.kh; ++ky) {
                const int64_t iy = o.y0 + ky;
                for (int64_t kx = 0; kx < g.kw; ++kx) {
                    float* row = out + (((ci - c0) * g.kh + ky) * g.kw + kx) * kTilePixels + m0;
                    if (iy < 0 || iy >= g.h) {
                        std::fill(row, row + len, 0.0f);
                        continue;
                    }
                    // Pixels j of the run read input column ix0 + j * stride: inside the row for j in [lo, hi).
                    const int64_t ix0 = o.x0 + kx;
                    const int64_t first_in = ix0 >= 0 ? 0 : (-ix0 + g.stride - 1) / g.stride;
                    const int64_t first_out = ix0 >= g.w ? 0 : (g.w - ix0 + g.stride - 1) / g.stride;
                    const int64_t lo = std::min(len, first_in), hi = std::max(lo, std::min(len, first_out));
                    const float* src = plane + iy * g.w + ix0 + lo * g.stride;  // pixel lo's input
                    std::fill(row, row + lo, 0.0f);
                    if (g.stride == 1) std::copy(src, src + (hi - lo), row + lo);
                    else
                        for (int64_t j = lo; j < hi; ++j) row[j] = src[(j - lo) * g.stride];
                    std::fill(row + hi, row + len, 0.0f);
                }
            }
        }
        m0 += len;
    }
}

// Patch rows (g.k floats each) of pixels [p0, p0 + np) of image n.
void gather_rows(const float* x, const Geometry& g, int64_t n, int64_t p0, int64_t np, float* out) {
    for (int64_t m = 0; m < np; ++m) {
        const Origin o = origin(g, p0 + m);
        float* row = out + m * g.k;
        for (int64_t ci = 0; ci < g.cin; ++ci) {
            const float* plane = x + (n * g.cin + ci) * g.h * g.w;
            for (int64_t ky = 0; ky < g.kh; ++ky) {
                const int64_t iy = o.y0 + ky;
                for (int64_t kx = 0; kx < g.kw; ++kx) {
                    const int64_t ix = o.x0 + kx;
                    *row++ = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w ? plane[iy * g.w + ix] : 0.0f;
                }
            }
        }
    }
}

// The work of one task: pixels [p0, p0 + np) of image n, output channels [co0, co1).
struct Task {
    int64_t n, p0, np, co0, co1;
};

// Plain float kernels: per channel chunk, the transposed patches against every
// output channel of the task, kConvChannels at a time.
void run_float(const Tensor& dst, const OpContext& c, const Geometry& g, const Task& t, float* out) {
    const Tensor* w = dst.src[1];
    const float* x = static_cast<const float*>(dst.src[0]->data);
    const char* kernels = static_cast<const char*>(w->data);
    const size_t elem = type_info(w->type).block_bytes;
    const int64_t cc = chunk_channels(g);
    float* pt = c.scratch;
    float* widened = c.scratch + scratch_layout(g, w->type).second;
    for (int64_t c0 = 0; c0 < g.cin; c0 += cc) {
        const int64_t c1 = std::min(g.cin, c0 + cc), kc = (c1 - c0) * g.taps;
        gather_transposed(x, g, t.n, c0, c1, t.p0, t.np, pt);
        for (int64_t co = t.co0; co < t.co1; co += kConvChannels) {
            const int nr = (int)std::min<int64_t>(kConvChannels, t.co1 - co);
            const char* first = kernels + co * g.w_row + (size_t)(c0 * g.taps) * elem;
            const float* rows = reinterpret_cast<const float*>(first);
            size_t ws = g.w_row / sizeof(float);
            if (w->type != DType::F32) {
                for (int r = 0; r < nr; ++r) {
                    const auto* half = reinterpret_cast<const uint16_t*>(first + r * g.w_row);
                    if (w->type == DType::F16) c.k->f16_to_f32(half, widened + r * kc, kc);
                    else c.k->bf16_to_f32(half, widened + r * kc, kc);
                }
                rows = widened;
                ws = (size_t)kc;
            }
            c.k->conv_tile(kc, rows, ws, nr, pt, kTilePixels, (int)t.np, out + co * g.pixels + t.p0, g.pixels, c0 > 0);
        }
    }
}

// Every panel of 32 kernel rows, unpacked into the shared buffer by the
// threads together, which then meet.
void unpack_panels(const Tensor& dst, const OpContext& c, const Geometry& g) {
    const Tensor* w = dst.src[1];
    const size_t bytes = panel_bytes(w->type, g.k);
    int64_t begin, end;
    split((g.cout + kPanelRows - 1) / kPanelRows, c, &begin, &end);
    for (int64_t p = begin; p < end; ++p) {
        const void* rows[kPanelRows];
        const int n = (int)std::min<int64_t>(kPanelRows, g.cout - p * kPanelRows);
        for (int i = 0; i < n; ++i) rows[i] = static_cast<const char*>(w->data) + (p * kPanelRows + i) * g.w_row;
        unpack_panel(w->type, rows, n, g.k, c.k->panel_scales, c.shared + p * bytes);
    }
    c.pool->barrier();
}

// Quantized kernels with the GEMM tile: the tile's patch rows in the flat
// 8-bit format against the task's panels, 4 pixels a call; each call's
// [pixel][kernel row] block is stored transposed into the output planes.
void run_panels(const Tensor& dst, const OpContext& c, const Geometry& g, const Task& t, float* out, GemmTileFn tile) {
    const DType type = dst.src[1]->type;
    float* patches = c.scratch;
    uint8_t* act = reinterpret_cast<uint8_t*>(c.scratch + scratch_layout(g, type).second);
    const size_t arow = flat_act_row_bytes(g.k), bytes = panel_bytes(type, g.k);
    gather_rows(static_cast<const float*>(dst.src[0]->data), g, t.n, t.p0, t.np, patches);
    for (int64_t m = 0; m < t.np; ++m) c.k->quantize_act_flat(patches + m * g.k, act + m * arow, g.k);
    float block[4 * kPanelRows];
    for (int64_t co = t.co0; co < t.co1; co += kPanelRows) {
        const uint8_t* panel = c.shared + co / kPanelRows * bytes;
        const int nw = (int)std::min<int64_t>(kPanelRows, t.co1 - co);
        for (int64_t m = 0; m < t.np; m += 4) {
            const int na = (int)std::min<int64_t>(4, t.np - m);
            tile(g.k, panel, panel_group_bytes(type, g.k), act + m * arow, arow, na, block, kPanelRows, nw, type);
            for (int i = 0; i < nw; ++i)
                for (int j = 0; j < na; ++j) out[(co + i) * g.pixels + t.p0 + m + j] = block[i + j * kPanelRows];
        }
    }
}

// Quantized kernels without the GEMM tile: patch rows quantized for the
// type's row kernel, or float dots against each dequantized kernel row.
void run_quantized(const Tensor& dst, const OpContext& c, const Geometry& g, const Task& t, float* out) {
    const Tensor* w = dst.src[1];
    const float* x = static_cast<const float*>(dst.src[0]->data);
    const char* kernels = static_cast<const char*>(w->data);
    const ScratchLayout layout = scratch_layout(g, w->type);
    float* patches = c.scratch;
    uint8_t* act = reinterpret_cast<uint8_t*>(c.scratch + layout.second);
    float* widened = c.scratch + layout.third;
    const size_t arow = act_row_bytes(act_format_for(w->type), g.k);
    gather_rows(x, g, t.n, t.p0, t.np, patches);
    const QuantDotFn dot = quant_dot(*c.k, w->type);
    if (dot) {
        const QuantizeActFn quantize = quantize_act(*c.k, w->type);
        for (int64_t m = 0; m < t.np; ++m) quantize(patches + m * g.k, act + m * arow, g.k);
    }
    for (int64_t co = t.co0; co < t.co1; ++co) {
        const char* row = kernels + co * g.w_row;
        float* y = out + co * g.pixels + t.p0;
        if (dot) {
            for (int64_t m = 0; m < t.np; m += 4)
                dot(g.k, row, act + m * arow, arow, y + m, 1, (int)std::min<int64_t>(4, t.np - m));
        } else {
            dequantize_row(w->type, row, widened, g.k);
            for (int64_t m = 0; m < t.np; ++m) y[m] = c.k->dot_f32(widened, patches + m * g.k, g.k);
        }
    }
}

}  // namespace

// Tasks: pixel tiles times groups of output channels, the groups (multiples
// of the kernels' channel tile) only as many as it takes to give each thread
// about 4 tasks, since each group gathers the tile's patches again: SD's 8x8
// latents are a single 64-pixel tile.
void conv2d(const Tensor& dst, const OpContext& c) {
    if (winograd_applies(dst)) return conv2d_winograd(dst, c);
    const Geometry g = geometry(dst);
    const bool plain = plain_float(dst.src[1]->type);
    const GemmTileFn gemm = plain ? nullptr : gemm_tile(*c.k, dst.src[1]->type);
    if (gemm) unpack_panels(dst, c, g);
    const int64_t unit = plain ? kConvChannels : gemm ? kPanelRows : 1;
    const int64_t tm = plain ? kTilePixels : quantized_tile_pixels(g.k);
    const int64_t tiles = (g.pixels + tm - 1) / tm * dst.ne[3];
    const int64_t blocks = (g.cout + unit - 1) / unit;
    const int64_t groups = std::clamp<int64_t>((4 * c.nth + tiles - 1) / tiles, 1, blocks);
    const int64_t group = (blocks + groups - 1) / groups * unit;
    const float* bias = dst.src[2] ? static_cast<const float*>(dst.src[2]->data) : nullptr;
    int64_t begin, end;
    split(tiles * groups, c, &begin, &end);
    for (int64_t task = begin; task < end; ++task) {
        const int64_t tile = task / groups, per_image = tiles / dst.ne[3];
        Task t;
        t.n = tile / per_image;
        t.p0 = tile % per_image * tm;
        t.np = std::min(tm, g.pixels - t.p0);
        t.co0 = task % groups * group;
        t.co1 = std::min(g.cout, t.co0 + group);
        if (t.co0 >= t.co1) continue;
        float* out = static_cast<float*>(dst.data) + t.n * g.cout * g.pixels;
        if (plain) run_float(dst, c, g, t, out);
        else if (gemm) run_panels(dst, c, g, t, out, gemm);
        else run_quantized(dst, c, g, t, out);
        if (bias)
            for (int64_t co = t.co0; co < t.co1; ++co)
                for (int64_t m = 0; m < t.np; ++m) out[co * g.pixels + t.p0 + m] += bias[co];
    }
}

size_t conv2d_scratch_floats(const Tensor& node) {
    if (winograd_applies(node)) return winograd_scratch_floats(node);
    return scratch_layout(geometry(node), node.src[1]->type).floats;
}

size_t conv2d_shared_bytes(const Tensor& node, const Kernels& k) {
    if (winograd_applies(node)) return winograd_shared_bytes(node);
    const DType type = node.src[1]->type;
    if (plain_float(type) || !gemm_tile(k, type)) return 0;
    const Geometry g = geometry(node);
    return (size_t)((g.cout + kPanelRows - 1) / kPanelRows) * panel_bytes(type, g.k);
}

}  // namespace quanta::cpu
