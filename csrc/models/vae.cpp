// The VAE's binding and its two towers (vae.h).
#include "models/vae.h"

#include "base/error.h"

namespace quanta::models {
namespace {

const std::string kPrefix = "first_stage_model.";
constexpr float kEps = 1e-6f;  // every norm of AutoencoderKL

std::string at(const std::string& p, const char* list, int i) { return p + list + "." + std::to_string(i) + "."; }

// The middle: resnet, attention, resnet, at `c` channels.
void bind_mid(const Binder& b, const std::string& p, int64_t c, VaeCoder& v) {
    v.mid_1 = bind_res_block(b, p + "mid.block_1.", kVaeResBlock, c);
    v.mid_attn = bind_vae_attention(b, p + "mid.attn_1.", c);
    v.mid_2 = bind_res_block(b, p + "mid.block_2.", kVaeResBlock, c);
}

// The levels of one tower: `list` is "down" or "up", `sampler` the resampling
// conv's name; the decoder runs its levels from the highest index down.
int64_t bind_levels(const Binder& b, const std::string& p, const char* list, const char* sampler, bool reverse,
                    int64_t c, VaeCoder& v) {
    int n = 0;
    while (b.has(at(p, list, n) + "block.0.norm1.weight")) ++n;
    if (n == 0) fail(ErrorKind::Model, b.file().label() + ": VAE: no '" + p + list + ".0.block.0' tensors");
    for (int k = 0; k < n; ++k) {
        const std::string lp = at(p, list, reverse ? n - 1 - k : k);
        VaeLevel level;
        for (int j = 0; b.has(at(lp, "block", j) + "norm1.weight"); ++j) {
            level.blocks.push_back(bind_res_block(b, at(lp, "block", j), kVaeResBlock, c));
            c = level.blocks.back().c_out();
        }
        const std::string s = lp + sampler + ".conv.";
        if (b.has(s + "weight")) level.resample = bind_conv(b, s, c, c);
        v.levels.push_back(std::move(level));
    }
    return c;
}

VaeCoder bind_decoder(const Binder& b, int64_t z) {
    const std::string p = kPrefix + "decoder.";
    VaeCoder v;
    v.conv_in = bind_conv(b, p + "conv_in.", z);
    const int64_t c = v.conv_in.c_out();
    bind_mid(b, p, c, v);
    const int64_t out = bind_levels(b, p, "up", "upsample", true, c, v);
    v.norm_out = bind_affine(b, p + "norm_out.", out);
    v.conv_out = bind_conv(b, p + "conv_out.", out);
    return v;
}

VaeCoder bind_encoder(const Binder& b, int64_t z) {
    const std::string p = kPrefix + "encoder.";
    VaeCoder v;
    v.conv_in = bind_conv(b, p + "conv_in.", 0);
    const int64_t c = bind_levels(b, p, "down", "downsample", false, v.conv_in.c_out(), v);
    bind_mid(b, p, c, v);
    v.norm_out = bind_affine(b, p + "norm_out.", c);
    v.conv_out = bind_conv(b, p + "conv_out.", c, 2 * z);  // the latent distribution's mean and log-variance
    return v;
}

Tensor* run_mid(BlockBuilder& bb, const VaeCoder& v, int n_groups, Tensor* h) {
    h = bb.res_block(h, v.mid_1, nullptr, n_groups, kEps);
    h = bb.vae_attention(h, v.mid_attn, n_groups);
    return bb.res_block(h, v.mid_2, nullptr, n_groups, kEps);
}

Tensor* run_out(BlockBuilder& bb, const VaeCoder& v, int n_groups, Tensor* h) {
    return bb.conv(bb.g.silu(bb.group_norm(h, v.norm_out, n_groups, kEps)), v.conv_out);
}

}  // namespace

VaeWeights VaeWeights::bind(const Binder& b) {
    VaeWeights w;
    w.post_quant = bind_conv(b, kPrefix + "post_quant_conv.", 0, 0, 1);
    w.latent_channels = w.post_quant.c_in();
    w.decoder = bind_decoder(b, w.post_quant.c_out());
    for (const VaeLevel& l : w.decoder.levels)
        if (l.resample.w) w.downscale *= 2;
    if (b.has(kPrefix + "encoder.conv_in.weight")) {
        w.quant = bind_conv(b, kPrefix + "quant_conv.", 2 * w.latent_channels, 2 * w.latent_channels, 1);
        w.encoder = bind_encoder(b, w.latent_channels);
    }
    return w;
}

Tensor* build_vae_decoder(BlockBuilder& bb, const VaeWeights& w, int n_groups, Tensor* z) {
    return build_vae_decoder_tail(bb, w, n_groups, build_vae_decoder_head(bb, w, n_groups, z));
}

Tensor* build_vae_decoder_head(BlockBuilder& bb, const VaeWeights& w, int n_groups, Tensor* z) {
    return run_mid(bb, w.decoder, n_groups, bb.conv(bb.conv(z, w.post_quant), w.decoder.conv_in));
}

Tensor* build_vae_decoder_tail(BlockBuilder& bb, const VaeWeights& w, int n_groups, Tensor* h) {
    Graph& g = bb.g;
    for (const VaeLevel& l : w.decoder.levels) {
        for (const ResBlock& r : l.blocks) h = bb.res_block(h, r, nullptr, n_groups, kEps);
        if (l.resample.w) h = bb.conv(g.upsample(h, 2), l.resample);
    }
    return run_out(bb, w.decoder, n_groups, h);
}

Tensor* build_vae_encoder(BlockBuilder& bb, const VaeWeights& w, int n_groups, Tensor* image) {
    Graph& g = bb.g;
    Tensor* h = bb.conv(image, w.encoder.conv_in);
    for (const VaeLevel& l : w.encoder.levels) {
        for (const ResBlock& r : l.blocks) h = bb.res_block(h, r, nullptr, n_groups, kEps);
        // LDM pads only after (right and bottom) before its stride-2 conv.
        if (l.resample.w) h = bb.conv(h, l.resample, 2, 0, 1);
    }
    h = bb.conv(run_out(bb, w.encoder, n_groups, run_mid(bb, w.encoder, n_groups, h)), w.quant);
    // The mean: the first half of the channels.
    const int64_t z = w.latent_channels;
    Tensor* mean = g.view(h, {h->ne[0], h->ne[1], z, h->ne[3]}, {h->nb[1], h->nb[2], h->nb[3]}, 0);
    return g.cont(mean);
}

}  // namespace quanta::models
