// Winograd F(2x2, 3x3) convolution (winograd.h). Per call:
//   1. the threads transform the kernels together, U = G g G^T, into the
//      shared buffer as 16 matrices [Cout][Cin] (one per position of the 4x4
//      transformed tile), then meet;
//   2. a task is a chunk of kTiles 2x2 output tiles of one image and a group
//      of output channels: it transforms its input tiles, V = B^T d B, into
//      16 matrices [Cin][kTiles] in its scratch, multiplies each by its U in
//      the level's conv_tile (kernel rows against pixel-contiguous columns:
//      the same register tile as the direct convolution) into 16 matrices
//      [group][kTiles], and takes each output tile back, Y = A^T M A, adding
//      the bias.
// The transforms' arithmetic is the level's (winograd_impl.inc); this file
// lays out their rows.
#include "cpu/winograd.h"

#include <algorithm>

#include "core/elements.h"

namespace quanta::cpu {
namespace {

constexpr int kPositions = 16;  // the 4x4 transformed tile
// Output tiles per task: 64 columns, conv_tile's widest register tile (4
// vectors of 16 lanes), so every broadcast kernel value feeds 4 FMAs. 128
// measured slower (bench/conv_bench.py).
constexpr int64_t kTiles = 64;
// The transformed kernels (16/9 the f32 size of the kernels) live in the
// shared buffer. 40 MiB takes SD's layers up to 960 -> 640 channels; letting
// the 1280-channel ones in (105 MiB) made the UNet slower at 512x512: at 16x16
// and below, transforming their kernels costs more than it saves.
constexpr size_t kMaxTransformedBytes = 40u << 20;
// At least this many output tiles per image (a 16x16 output): below it the
// kernel transform is not repaid.
constexpr int64_t kMinTiles = 256;

struct Shape {
    int64_t w, h, cin, ow, oh, cout, pad, n;
    int64_t tw, th;  // output tiles across and down
};

Shape shape_of(const Tensor& node) {
    const Tensor* x = node.src[0];
    Shape s{x->ne[0], x->ne[1], x->ne[2], node.ne[0], node.ne[1], node.ne[2], node.i[1], node.ne[3], 0, 0};
    s.tw = (s.ow + 1) / 2;
    s.th = (s.oh + 1) / 2;
    return s;
}

size_t transformed_kernel_floats(const Shape& s) { return (size_t)kPositions * s.cout * s.cin; }

// U[pos][co][ci] for output channels [co0, co1): each channel's kernels
// widened to f32, then laid out tap-major ([9][Cin]) for the level's transform.
void transform_kernels(const Tensor& node, const Shape& s, const Kernels& k, int64_t co0, int64_t co1, float* u,
                       float* work) {
    const Tensor* w = node.src[1];
    const size_t n = (size_t)s.cin * 9, plane = (size_t)(s.cout * s.cin);
    float* widened = work;
    float* taps = work + n;
    for (int64_t co = co0; co < co1; ++co) {
        const float* g = widened;
        if (w->type == DType::F32) g = static_cast<const float*>(w->data) + co * n;
        else if (w->type == DType::F16) k.f16_to_f32(static_cast<const uint16_t*>(w->data) + co * n, widened, (int64_t)n);
        else k.bf16_to_f32(static_cast<const uint16_t*>(w->data) + co * n, widened, (int64_t)n);
        for (int64_t ci = 0; ci < s.cin; ++ci)
            for (int tap = 0; tap < 9; ++tap) taps[tap * s.cin + ci] = g[ci * 9 + tap];
        k.winograd_kernels(taps, s.cin, u + co * s.cin, plane);
    }
}

// Input row iy of image plane `img` split into even and odd columns from
// x0: even[j] = row[x0 + 2j], odd[j] = row[x0 + 2j + 1], zeros outside.
void split_row(const float* img, const Shape& s, int64_t iy, int64_t x0, int64_t n, float* even, float* odd) {
    if (iy < 0 || iy >= s.h) {
        std::fill(even, even + n, 0.0f);
        std::fill(odd, odd + n, 0.0f);
        return;
    }
    const float* row = img + iy * s.w;
    // Columns j in [lo, hi) have both x0 + 2j and x0 + 2j + 1 inside the row.
    const int64_t lo = std::min(n, std::max<int64_t>(0, (1 - x0) / 2));
    const int64_t hi = std::max(lo, std::min(n, (s.w - x0) / 2));
    auto at = [&](int64_t ix) { return ix >= 0 && ix < s.w ? row[ix] : 0.0f; };
    for (int64_t j = 0; j < lo; ++j) {
        even[j] = at(x0 + 2 * j);
        odd[j] = at(x0 + 2 * j + 1);
    }
    for (int64_t j = lo; j < hi; ++j) {
        even[j] = row[x0 + 2 * j];
        odd[j] = row[x0 + 2 * j + 1];
    }
    for (int64_t j = hi; j < n; ++j) {
        even[j] = at(x0 + 2 * j);
        odd[j] = at(x0 + 2 * j + 1);
    }
}

// V for output tiles [t0, t0 + nt) of image n, every input channel:
// v[pos][ci][tile], kTiles columns per row, walked by runs of tiles on one
// tile row (whose four input rows the level's transform reads split).
void transform_inputs(const float* x, const Shape& s, const Kernels& k, int64_t n, int64_t t0, int64_t nt, float* v,
                      float* work) {
    const size_t plane = (size_t)(s.cin * kTiles);
    const int64_t width = s.tw + 1;
    const float* even[4];
    const float* odd[4];
    for (int64_t j0 = 0; j0 < nt;) {
        const int64_t tile = t0 + j0, tx0 = tile % s.tw, len = std::min(nt - j0, s.tw - tx0);
        const int64_t y0 = tile / s.tw * 2 - s.pad, x0 = tx0 * 2 - s.pad;
        for (int64_t ci = 0; ci < s.cin; ++ci) {
            const float* img = x + (n * s.cin + ci) * s.h * s.w;
            for (int r = 0; r < 4; ++r) {
                float* e = work + (2 * r) * width;
                float* o = e + width;
                split_row(img, s, y0 + r, x0, len + 1, e, o);
                even[r] = e;
                odd[r] = o;
            }
            k.winograd_inputs(even, odd, len, v + ci * kTiles + j0, plane);
        }
        j0 += len;
    }
}

// Y for nr output channels from co of tiles [t0, t0 + nt): the level's
// transform into four rows per channel, then stored by runs on one tile row.
void transform_outputs(const float* m, int nr, const Shape& s, const Kernels& k, int64_t co, int64_t t0, int64_t nt,
                       const float* bias, float* out, float* y) {
    const size_t plane = (size_t)nr * kTiles;
    for (int r = 0; r < nr; ++r) {
        k.winograd_outputs(m + r * kTiles, plane, nt, bias ? bias[co + r] : 0.0f, y, kTiles);
        float* img = out + (co + r) * s.oh * s.ow;
        for (int64_t j0 = 0; j0 < nt;) {
            const int64_t tile = t0 + j0, tx0 = tile % s.tw, len = std::min(nt - j0, s.tw - tx0);
            const int64_t oy = tile / s.tw * 2;
            for (int i = 0; i < 2 && oy + i < s.oh; ++i) {
                float* row = img + (oy + i) * s.ow;
                const float *left = y + (2 * i) * kTiles + j0, *right = left + kTiles;
                for (int64_t j = 0; j < len; ++j) {
                    const int64_t ox = (tx0 + j) * 2;
                    row[ox] = left[j];
                    if (ox + 1 < s.ow) row[ox + 1] = right[j];
                }
            }
            j0 += len;
        }
    }
}

}  // namespace

bool winograd_applies(const Tensor& node) {
    const Tensor* w = node.src[1];
    if (!plain_float(w->type) || w->n_dims != 4 || w->ne[0] != 3 || w->ne[1] != 3 || node.i[0] != 1) return false;
    const Shape s = shape_of(node);
    return s.cin >= 8 && s.tw * s.th >= kMinTiles && transformed_kernel_floats(s) * sizeof(float) <= kMaxTransformedBytes;
}

// Per thread: V, M, then work rows (split input rows; widened and tap-major kernels; output rows).
size_t winograd_scratch_floats(const Tensor& node) {
    const Shape s = shape_of(node);
    const size_t work = std::max({8 * (size_t)(s.tw + 1), 18 * (size_t)s.cin, 4 * (size_t)kTiles,
                                  (size_t)(kConvChannels * s.cin)});
    return (size_t)kPositions * kTiles * (s.cin + s.cout) + work;
}

size_t winograd_shared_bytes(const Tensor& node) { return transformed_kernel_floats(shape_of(node)) * sizeof(float); }

// Tasks as in the direct convolution: tile chunks times groups of output
// channels, the groups only as many as give each thread about 4 tasks, since
// each group transforms its chunk's inputs again.
void conv2d_winograd(const Tensor& node, const OpContext& c) {
    const Shape s = shape_of(node);
    const Kernels& k = *c.k;
    float* u = reinterpret_cast<float*>(c.shared);
    float* v = c.scratch;
    float* m = v + (size_t)kPositions * s.cin * kTiles;
    float* work = m + (size_t)kPositions * s.cout * kTiles;
    int64_t begin, end;
    split(s.cout, c, &begin, &end);
    transform_kernels(node, s, k, begin, end, u, work);
    c.pool->barrier();

    const int64_t per_image = (s.tw * s.th + kTiles - 1) / kTiles, chunks = per_image * s.n;
    const int64_t blocks = (s.cout + kConvChannels - 1) / kConvChannels;
    const int64_t groups = std::clamp<int64_t>((4 * c.nth + chunks - 1) / chunks, 1, blocks);
    const int64_t group = (blocks + groups - 1) / groups * kConvChannels;
    const float* x = static_cast<const float*>(node.src[0]->data);
    const float* bias = node.src[2] ? static_cast<const float*>(node.src[2]->data) : nullptr;
    const size_t u_plane = (size_t)(s.cout * s.cin);
    split(chunks * groups, c, &begin, &end);
    for (int64_t task = begin; task < end; ++task) {
        const int64_t chunk = task / groups, n = chunk / per_image;
        const int64_t t0 = chunk % per_image * kTiles, nt = std::min(kTiles, s.tw * s.th - t0);
        const int64_t co0 = task % groups * group, co1 = std::min(s.cout, co0 + group), nc = co1 - co0;
        if (nc <= 0) continue;
        transform_inputs(x, s, k, n, t0, nt, v, work);
        // Position by position, so one position's inputs (Cin x kTiles) stay in
        // cache while every output channel of the group passes over them.
        for (int pos = 0; pos < kPositions; ++pos)
            for (int64_t co = co0; co < co1; co += kConvChannels)
                k.conv_tile(s.cin, u + pos * u_plane + co * s.cin, (size_t)s.cin,
                            (int)std::min<int64_t>(kConvChannels, co1 - co), v + (size_t)pos * s.cin * kTiles, kTiles,
                            (int)nt, m + ((size_t)pos * nc + (co - co0)) * kTiles, kTiles, false);
        transform_outputs(m, (int)nc, s, k, co0, t0, nt, bias, static_cast<float*>(node.data) + n * s.cout * s.oh * s.ow,
                          work);
    }
}

}  // namespace quanta::cpu
