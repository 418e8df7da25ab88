// Stable Diffusion's VAE (LDM's AutoencoderKL) under first_stage_model.*:
// the decoder (latents -> image) and the encoder (image -> latents, for
// image-to-image). Levels and blocks per level come from the names
// (decoder.up.I.block.J, encoder.down.I.block.J), channels from the shapes.
#pragma once

#include <vector>

#include "models/sd_blocks.h"

namespace quanta::models {

struct VaeLevel {
    std::vector<ResBlock> blocks;
    Conv resample;  // down.I.downsample or up.I.upsample; absent on the last level
};

struct VaeCoder {  // the encoder's or the decoder's tower
    Conv conv_in, conv_out;
    ResBlock mid_1, mid_2;
    VaeAttention mid_attn;
    Affine norm_out;
    std::vector<VaeLevel> levels;  // in the order they run
};

struct VaeWeights {
    VaeCoder decoder;
    VaeCoder encoder;          // encoder.conv_in.w null when the file has no encoder
    Conv post_quant, quant;    // 1x1, on the latents
    int64_t latent_channels = 0;
    int downscale = 1;         // image pixels per latent, 2^(levels - 1)

    bool has_encoder() const { return encoder.conv_in.w != nullptr; }
    static VaeWeights bind(const Binder& b);
};

// Latents (f32 [w, h, latent_channels, N], already divided by the latent
// scale) to images f32 [w * downscale, h * downscale, 3, N] in about [-1, 1].
Tensor* build_vae_decoder(BlockBuilder& bb, const VaeWeights& w, int n_groups, Tensor* z);
// The decoder in two: the head (post_quant_conv, conv_in and the mid block,
// whose attention spans every latent) and the tail (the up levels and the
// output, where the memory goes), which can run in tiles of the head's output.
Tensor* build_vae_decoder_head(BlockBuilder& bb, const VaeWeights& w, int n_groups, Tensor* z);
Tensor* build_vae_decoder_tail(BlockBuilder& bb, const VaeWeights& w, int n_groups, Tensor* h);
// Images in [-1, 1] to the mean of the latent distribution (unscaled).
Tensor* build_vae_encoder(BlockBuilder& bb, const VaeWeights& w, int n_groups, Tensor* image);

}  // namespace quanta::models
