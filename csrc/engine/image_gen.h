// Text to image: the Stable Diffusion pipeline over a loaded model. The
// prompt and negative prompt are tokenized and encoded, the sampler walks its
// steps with the UNet (conditional and unconditional passes in one batch-2
// graph under classifier-free guidance, one pass when cfg_scale <= 1), and the
// VAE decodes the final latents. Everything runs in C++; the front ends only
// convert the pixels.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/sd_model.h"
#include "text/clip_bpe.h"

namespace quanta::engine {

// The VAE decodes in tiles of this many pixels where the image is larger (a
// 512x512 decode's activations, 0.67 GB for SD's 128-channel top level).
constexpr int kAutoVaeTile = 512;

struct ImageRequest {
    std::string prompt, negative_prompt;
    int width = 512, height = 512;
    int steps = 20;
    float cfg_scale = 7.0f;
    std::string sampler = "euler_a";     // euler, euler_a, ddim, dpmpp_2m, lcm
    std::string scheduler = "discrete";  // discrete, karras
    uint64_t seed = 0;
    int clip_skip = 1;  // A1111's convention: 1 = the last layer, 2 = the penultimate
    int vae_tile = kAutoVaeTile;  // pixels per VAE tile side, a multiple of the VAE's factor; 0: never tiled
    // Unit-variance initial noise [c, h, w] (h, w the latent size); empty: drawn from the seed.
    std::vector<float> latents;
    // Called after every step with the current latents [c, h, w] (n floats).
    std::function<void(int step, int steps, const float* latents, size_t n)> callback;
};

struct Image {
    int width = 0, height = 0;
    std::vector<float> rgb;  // height x width x 3 in [0, 1], rows top first
};

class ImageGenerator {
public:
    ImageGenerator(std::shared_ptr<const models::SdModel> model);
    const models::SdModel& model() const { return *model_; }
    const text::ClipTokenizer& tokenizer() const { return *tokenizer_; }

    // Checks the whole request (InvalidArgument naming the field) before any work.
    Image generate(const ImageRequest& request) const;

private:
    void check(const ImageRequest& r) const;
    // The text embeddings [width, n_ctx] of one prompt.
    std::vector<float> embed(const std::string& prompt, int clip_skip) const;

    std::shared_ptr<const models::SdModel> model_;
    std::unique_ptr<text::ClipTokenizer> tokenizer_;
};

}  // namespace quanta::engine
