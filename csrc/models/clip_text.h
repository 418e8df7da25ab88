// The CLIP text encoder (Hugging Face's CLIPTextModel) under
// cond_stage_model.transformer.text_model.*: token and position embeddings,
// pre-norm transformer layers with causal self-attention, a final layer norm.
// SD1 uses ViT-L/14's (quick-GELU), SD2 OpenCLIP-H's (GELU); the width, layers,
// context length and feed-forward size come from the shapes, the head count
// and activation from metadata.
#pragma once

#include <vector>

#include "models/sd_blocks.h"

namespace quanta::models {

enum class ClipActivation { QuickGelu, Gelu };

struct ClipLayer {
    Affine norm1, norm2;
    Attention attn;  // q_proj, k_proj, v_proj, out_proj (with biases)
    Linear fc1, fc2;
};

struct ClipTextWeights {
    Weight token_embd, position_embd;
    std::vector<ClipLayer> layers;
    Affine final_norm;
    int64_t n_embd = 0, n_ctx = 0, n_vocab = 0;
    ClipActivation activation = ClipActivation::QuickGelu;
    float norm_eps = 1e-5f;

    static ClipTextWeights bind(const Binder& b, int n_head, ClipActivation act, float norm_eps);
};

// Hidden states f32 [n_embd, n_ctx, N] for token ids (i32 [n_ctx * N]) after
// `n_layers` layers and the final layer norm; `causal_mask` is an f32
// [n_ctx, n_ctx] input holding 0 where a token may look and -inf elsewhere.
Tensor* build_clip_text(BlockBuilder& bb, const ClipTextWeights& w, int n_layers, Tensor* tokens, Tensor* causal_mask);

}  // namespace quanta::models
