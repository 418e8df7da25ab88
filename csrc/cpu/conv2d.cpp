// conv2d on the CPU (conv2d.h). The threads share tiles of output pixels. For
// its tile a thread gathers each pixel's patch (the KW x KH x Cin inputs under
// the kernel, zeros in the padding, in the order of a kernel row) into its
// scratch, so no image-sized im2col is ever made, and runs the patches against
// every kernel row with the matmul's inner kernels: the float tile (4 kernels
// x 4 pixels) for plain float kernels, the quantized row kernels on 8-bit
// patches for quantized ones, one dot per output where the level has neither.
// Outputs land in [OW, OH, Cout, N] planes, pixels contiguous.
#include "cpu/conv2d.h"

#include <algorithm>

#include "core/elements.h"
#include "cpu/act_formats.h"
#include "quant/dequantize.h"

namespace quanta::cpu {
namespace {

struct Geometry {
    int64_t w, h, cin, ow, cout, k, pixels;  // k: a kernel row's length; pixels: per output plane
    int64_t stride, pad, kw, kh;
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
    g.k = g.kw * g.kh * g.cin;
    g.w_row = row_bytes(w->type, g.k);
    return g;
}

// Pixels per tile: the tile's f32 patches take about kPatchBytes, a third of
// a 2 MiB L2, so they stay there while the kernel rows stream past 4 at a
// time; each tile reads every kernel row once. 640 KiB against the matmul's
// 192 KiB (kActBlockBytes): 52 against 16 pixels for SD's 320-channel 3x3
// layers, f32 kernels 34 -> 52 GFLOP/s and f16 62 -> 71 on 2 threads
// (bench/conv_bench.py). At least 4 pixels (one float tile), at most 64.
constexpr size_t kPatchBytes = 640 * 1024;
int64_t tile_pixels(int64_t k) {
    return std::clamp<int64_t>((int64_t)(kPatchBytes / ((size_t)k * sizeof(float))) / 4 * 4, 4, 64);
}

// A thread's scratch, offsets in floats: the tile's patches, their 8-bit form
// (quantized kernels with a row kernel), one dequantized kernel row (the others).
struct ScratchLayout {
    size_t act, widened, floats;
};
ScratchLayout scratch_layout(const Geometry& g, DType type) {
    const size_t patches = (size_t)(tile_pixels(g.k) * g.k);
    const size_t act = (act_row_bytes(act_format_for(type), g.k) * (size_t)tile_pixels(g.k) + 3) / 4;
    return {patches, patches + act, patches + act + (size_t)g.k};
}

// Patches of pixels [p0, p0 + np) of image n, one row of g.k floats each, in
// a kernel row's order: channel, then kernel row, then kernel column.
void gather_patches(const float* x, const Geometry& g, int64_t n, int64_t p0, int64_t np, float* out) {
    for (int64_t m = 0; m < np; ++m) {
        const int64_t oy = (p0 + m) / g.ow, ox = (p0 + m) % g.ow;
        const int64_t x0 = ox * g.stride - g.pad, y0 = oy * g.stride - g.pad;
        float* row = out + m * g.k;
        for (int64_t ci = 0; ci < g.cin; ++ci) {
            const float* plane = x + (n * g.cin + ci) * g.h * g.w;
            for (int64_t ky = 0; ky < g.kh; ++ky) {
                const int64_t iy = y0 + ky;
                const bool row_in = iy >= 0 && iy < g.h;
                for (int64_t kx = 0; kx < g.kw; ++kx) {
                    const int64_t ix = x0 + kx;
                    *row++ = row_in && ix >= 0 && ix < g.w ? plane[iy * g.w + ix] : 0.0f;
                }
            }
        }
    }
}

float dot_plain(const Kernels& k, DType type, const char* w, const float* x, int64_t n) {
    const auto* w16 = reinterpret_cast<const uint16_t*>(w);
    switch (type) {
        case DType::F16: return k.dot_f16_f32(w16, x, n);
        case DType::BF16: return k.dot_bf16_f32(w16, x, n);
        default: return k.dot_f32(reinterpret_cast<const float*>(w), x, n);
    }
}

// One tile against every kernel row; out: image n's output planes, bias: null or Cout floats.
void run_tile(const Tensor& dst, const OpContext& c, const Geometry& g, float* patches, int64_t p0, int64_t np,
              float* out, const float* bias) {
    const Tensor* w = dst.src[1];
    const char* kernels = static_cast<const char*>(w->data);
    const Kernels& k = *c.k;
    if (plain_float(w->type) && k.float_tile) {
        float block[16];  // [pixel][kernel], 4 x 4
        for (int64_t co = 0; co < g.cout; co += 4) {
            const int nw = (int)std::min<int64_t>(4, g.cout - co);
            for (int64_t m = 0; m < np; m += 4) {
                const int na = (int)std::min<int64_t>(4, np - m);
                k.float_tile(w->type, g.k, kernels + co * g.w_row, g.w_row, patches + m * g.k, g.k, na, block, 4, nw);
                for (int i = 0; i < nw; ++i) {
                    float* y = out + (co + i) * g.pixels + p0 + m;
                    const float b = bias ? bias[co + i] : 0.0f;
                    for (int j = 0; j < na; ++j) y[j] = block[i + 4 * j] + b;
                }
            }
        }
        return;
    }
    const QuantDotFn dot = quant_dot(k, w->type);
    const ScratchLayout layout = scratch_layout(g, w->type);
    uint8_t* act = reinterpret_cast<uint8_t*>(patches + layout.act);
    float* widened = patches + layout.widened;
    const size_t arow = act_row_bytes(act_format_for(w->type), g.k);
    if (dot) {
        const QuantizeActFn quantize = quantize_act(k, w->type);
        for (int64_t m = 0; m < np; ++m) quantize(patches + m * g.k, act + m * arow, g.k);
    }
    for (int64_t co = 0; co < g.cout; ++co) {
        const char* row = kernels + co * g.w_row;
        float* y = out + co * g.pixels + p0;
        if (dot) {
            for (int64_t m = 0; m < np; m += 4) dot(g.k, row, act + m * arow, arow, y + m, 1, (int)std::min<int64_t>(4, np - m));
        } else if (plain_float(w->type)) {
            for (int64_t m = 0; m < np; ++m) y[m] = dot_plain(k, w->type, row, patches + m * g.k, g.k);
        } else {
            dequantize_row(w->type, row, widened, g.k);
            for (int64_t m = 0; m < np; ++m) y[m] = k.dot_f32(widened, patches + m * g.k, g.k);
        }
        if (bias)
            for (int64_t m = 0; m < np; ++m) y[m] += bias[co];
    }
}

}  // namespace

void conv2d(const Tensor& dst, const OpContext& c) {
    const Geometry g = geometry(dst);
    const float* x = static_cast<const float*>(dst.src[0]->data);
    const float* bias = dst.src[2] ? static_cast<const float*>(dst.src[2]->data) : nullptr;
    const int64_t tm = tile_pixels(g.k), tiles = (g.pixels + tm - 1) / tm;
    int64_t begin, end;
    split(tiles * dst.ne[3], c, &begin, &end);
    for (int64_t task = begin; task < end; ++task) {
        const int64_t n = task / tiles, p0 = (task % tiles) * tm, np = std::min(tm, g.pixels - p0);
        gather_patches(x, g, n, p0, np, c.scratch);
        run_tile(dst, c, g, c.scratch, p0, np, static_cast<float*>(dst.data) + n * g.cout * g.pixels, bias);
    }
}

size_t conv2d_scratch_floats(const Tensor& node) {
    return scratch_layout(geometry(node), node.src[1]->type).floats;
}

}  // namespace quanta::cpu
