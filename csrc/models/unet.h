// Stable Diffusion's UNet (LDM's UNetModel, diffusers' UNet2DConditionModel)
// as the file's tensors describe it: the blocks under
// model.diffusion_model.input_blocks.N, middle_block and output_blocks.N are
// read in order, each a list of layers (resnet, spatial transformer, down- or
// upsampling conv), so channels, levels and layers per level all come from
// the names and shapes. Only the heads per level come from metadata.
#pragma once

#include <vector>

#include "models/sd_blocks.h"

namespace quanta::models {

struct UNetLayer {
    enum class Kind { Res, Transformer, Down, Up } kind;
    ResBlock res;
    SpatialTransformer transformer;
    Conv conv;  // Down: stride 2; Up: after a nearest 2x upsample
};
using UNetEntry = std::vector<UNetLayer>;

struct UNetWeights {
    Conv conv_in, conv_out;
    Linear time_in, time_out;  // time_embed.0 and .2
    Affine norm_out;
    std::vector<UNetEntry> input_blocks;  // input_blocks.1 onwards (input_blocks.0 is conv_in)
    UNetEntry middle_block;
    std::vector<UNetEntry> output_blocks;
    int64_t model_channels = 0, context_dim = 0;
    int n_downsamples = 0;

    // heads[level]: attention heads of each level's transformers (the middle
    // block's are the last level's); past its end, channels / head_dim.
    static UNetWeights bind(const Binder& b, const std::vector<int>& heads, int head_dim);
};

// The noise prediction for latents x (f32 [W, H, C, N]) at timesteps t
// (f32 [N]) given text embeddings context (f32 [context_dim, T, N]).
Tensor* build_unet(BlockBuilder& bb, const UNetWeights& w, int n_groups, Tensor* x, Tensor* t, Tensor* context);

}  // namespace quanta::models
