// Decoding latents in tiles, for images whose one-graph VAE decode would not
// fit the memory budget (a 1024x1024 SD image: 2.7 GB of activations against
// 0.67 GB at 512x512), with the result of one pass up to rounding:
//   - the head (post_quant_conv, conv_in, the mid block with its attention
//     over every latent) runs once on the whole latents: it works at latent
//     resolution, and attention cannot be tiled;
//   - the tail (the up levels, where the memory goes) runs on windows of
//     tile x tile latents of the head's output; each keeps the core of its
//     window and discards a halo of kHalo latents each side, wider than what
//     the convolutions' zero padding at the window's edge reaches the core by;
//   - every group norm uses the whole image's statistics. A first pass over
//     the windows, each normalized by its own, measures each norm's moments in
//     the window's core; the merged moments are what the second pass
//     normalizes by. Each window's own statistics alone (diffusers' tiled
//     decode) differ from one pass by up to 8/255 on the SD1.5-shaped VAE with
//     random weights; measured moments, by 0.7/255.
#pragma once

#include <cstdint>
#include <vector>

#include "models/sd_model.h"

namespace quanta::models {

// Latents of a window's halo on each side (measured on the SD1.5-shaped VAE: a
// halo of 8 leaves 0.7/255 between tiled and one-pass decodes, at any tile size).
constexpr int64_t kVaeHalo = 8;
// The smallest tile, so that a window's core is at least half its size.
constexpr int64_t kVaeMinTile = 4 * kVaeHalo;

// Unscaled latents [w, h, c] -> pixels [w * f, h * f, 3], in windows of at
// most tile x tile latents (tile >= kVaeMinTile).
std::vector<float> decode_latents_tiled(const SdModel& m, const float* z, int64_t w, int64_t h, int64_t tile);

}  // namespace quanta::models
