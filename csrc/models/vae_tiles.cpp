// Tiled VAE decoding (vae_tiles.h): the head once, then two passes of the tail
// over the windows, the first measuring the group norms' statistics and the
// second normalizing by them.
#include "models/vae_tiles.h"

#include <algorithm>
#include <array>
#include <string>

#include "base/error.h"
#include "core/moments.h"

namespace quanta::models {
namespace {

// One axis of a window: latents [start, start + size) go in, [core0, core1) are kept.
struct Span {
    int64_t start, size, core0, core1;
};

// Windows of `tile` latents whose cores split [0, n) evenly. Windows at the
// image's edges shift inward rather than shrink, so every window has one size
// and one graph serves them all.
std::vector<Span> spans(int64_t n, int64_t tile) {
    if (n <= tile) return {{0, n, 0, n}};
    const int64_t core = tile - 2 * kVaeHalo, count = (n + core - 1) / core;
    std::vector<Span> out;
    for (int64_t k = 0; k < count; ++k) {
        const int64_t c0 = n * k / count, c1 = n * (k + 1) / count;
        out.push_back({std::clamp<int64_t>(c0 - kVaeHalo, 0, n - tile), tile, c0, c1});
    }
    return out;
}

// First pass: each norm normalizes by its own input and reports its moments in
// the window's core (`core`: i32 x0, y0, x1, y1 in latents of the window).
class MeasureTap : public GroupNormTap {
public:
    MeasureTap(Tensor* core, int64_t window_width) : core_(core), width_(window_width) {}
    Tensor* normalize(Graph& g, Tensor* x, int n_groups, float eps) override {
        moments.push_back(g.group_moments(x, core_, n_groups, (int)(x->ne[0] / width_)));
        return g.group_norm(x, n_groups, eps);
    }
    std::vector<Tensor*> moments;  // [3, groups, 1] per norm, in graph order

private:
    Tensor* core_;
    int64_t width_;
};

// Second pass: each norm normalizes by given moments, an input [2, groups, 1] (mean, variance) per norm.
class ImposeTap : public GroupNormTap {
public:
    Tensor* normalize(Graph& g, Tensor* x, int n_groups, float eps) override {
        inputs.push_back(g.input(DType::F32, {2, n_groups, 1}, "moments." + std::to_string(inputs.size())));
        return g.group_norm(x, n_groups, eps, inputs.back());
    }
    std::vector<Tensor*> inputs;
};

}  // namespace

std::vector<float> decode_latents_tiled(const SdModel& m, const float* z, int64_t w, int64_t h, int64_t tile) {
    QUANTA_CHECK_ARG(tile >= kVaeMinTile, "VAE tiles must be at least " + std::to_string(kVaeMinTile) + " latents");
    const VaeWeights& vae = m.vae;
    const int groups = m.config.vae_groups;
    const int64_t f = vae.downscale;

    // The head, once over all the latents: [w, h, c].
    std::vector<float> head;
    int64_t c = 0;
    {
        PartRunner r(m);
        Tensor* in = r.input(DType::F32, {w, h, vae.latent_channels, 1}, "latents");
        Tensor* out = build_vae_decoder_head(r.builder(), vae, groups, in);
        c = out->ne[2];
        r.finish(out);
        r.set(in, z);
        head.resize((size_t)out->n_elements());
        r.run(head.data());
    }

    const std::vector<Span> xs = spans(w, tile), ys = spans(h, tile);
    const int64_t tw = xs[0].size, th = ys[0].size;
    std::vector<float> window((size_t)(tw * th * c));
    // Copies the window's latents out of the head's output.
    auto cut = [&](const Span& sx, const Span& sy) {
        for (int64_t ch = 0; ch < c; ++ch)
            for (int64_t y = 0; y < th; ++y) {
                const float* src = head.data() + (ch * h + sy.start + y) * w + sx.start;
                std::copy(src, src + tw, window.data() + (ch * th + y) * tw);
            }
    };

    // First pass: every norm's moments in each window's core, merged over the image.
    std::vector<std::vector<Moments>> whole;  // per norm, per group, merged window by window
    {
        PartRunner r(m);
        Tensor* in = r.input(DType::F32, {tw, th, c, 1}, "head");
        Tensor* core = r.input(DType::I32, {4}, "core");
        MeasureTap tap(core, tw);
        r.builder().tap = &tap;
        build_vae_decoder_tail(r.builder(), vae, groups, in);
        r.finish(tap.moments);
        whole.assign(tap.moments.size(), std::vector<Moments>((size_t)groups));
        std::vector<float> got((size_t)groups * 3);
        for (const Span& sy : ys)
            for (const Span& sx : xs) {
                cut(sx, sy);
                const std::array<int32_t, 4> box{(int32_t)(sx.core0 - sx.start), (int32_t)(sy.core0 - sy.start),
                                                 (int32_t)(sx.core1 - sx.start), (int32_t)(sy.core1 - sy.start)};
                r.set(in, window.data());
                r.set(core, box.data());
                r.compute();
                for (size_t k = 0; k < whole.size(); ++k) {
                    r.get(tap.moments[k], got.data());
                    for (int g = 0; g < groups; ++g) whole[k][g].merge({got[g * 3], got[g * 3 + 1], got[g * 3 + 2]});
                }
            }
    }

    // Second pass: each window normalized by the whole image's moments; its core's pixels kept.
    const int64_t W = w * f, H = h * f, pw = tw * f, ph = th * f;
    std::vector<float> pixels((size_t)(W * H * 3));
    {
        PartRunner r(m);
        Tensor* in = r.input(DType::F32, {tw, th, c, 1}, "head");
        ImposeTap tap;
        r.builder().tap = &tap;
        Tensor* out = build_vae_decoder_tail(r.builder(), vae, groups, in);
        r.finish(out);
        // [2, groups] per norm: the mean and (biased) variance.
        std::vector<std::vector<float>> given(whole.size(), std::vector<float>((size_t)groups * 2));
        for (size_t k = 0; k < whole.size(); ++k)
            for (int g = 0; g < groups; ++g) {
                given[k][g * 2] = (float)whole[k][g].mean;
                given[k][g * 2 + 1] = (float)whole[k][g].variance();
            }
        std::vector<float> part((size_t)out->n_elements());
        for (const Span& sy : ys)
            for (const Span& sx : xs) {
                cut(sx, sy);
                r.set(in, window.data());
                // Inputs are set before every run: the plan reuses an input's memory once it is read.
                for (size_t k = 0; k < given.size(); ++k) r.set(tap.inputs[k], given[k].data());
                r.run(part.data());
                for (int64_t ch = 0; ch < 3; ++ch)
                    for (int64_t y = sy.core0 * f; y < sy.core1 * f; ++y) {
                        const float* row = part.data() + (ch * ph + y - sy.start * f) * pw;
                        std::copy(row + (sx.core0 - sx.start) * f, row + (sx.core1 - sx.start) * f,
                                  pixels.data() + (ch * H + y) * W + sx.core0 * f);
                    }
            }
    }
    return pixels;
}

}  // namespace quanta::models
