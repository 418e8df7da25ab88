// Text to image, image to image and inpainting: the Stable Diffusion pipeline
// over a loaded model. The prompt and negative prompt are tokenized and
// encoded, the sampler walks its steps with the UNet (for a batch of B images,
// the unconditional and conditional passes in one batch-2B graph under
// classifier-free guidance, one batch-B pass when cfg_scale <= 1), and the VAE
// decodes the final latents. With an init image the run starts part way, from
// the image's latents noised to that step (diffusers' img2img); with a mask
// too, only the masked part is repainted (latent blending for a 4-channel
// UNet, the mask and masked image as extra input channels for a 9-channel
// inpainting UNet). Everything runs in C++; the front ends only convert the
// pixels.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/sd_model.h"
#include "text/clip_bpe.h"

namespace quanta::engine {

// ImageRequest::vae_tile's automatic choice: one pass up to kVaeOnePassMax
// pixels a side (a 512x512 SD decode's activations are 0.67 GB), windows of
// kVaeAutoWindow beyond (0.38 GB each; a 1024x1024 image's 4 x 4 windows do the
// work of 3 x 3 of 512, since halos are a smaller share of larger windows).
constexpr int kAutoVaeTile = -1;
constexpr int kVaeOnePassMax = 512, kVaeAutoWindow = 384;
// The most images one request may make (ImageRequest::batch_size).
constexpr int kMaxImageBatch = 64;

struct ImageRequest {
    std::string prompt, negative_prompt;
    int width = 512, height = 512;
    int steps = 20;
    float cfg_scale = 7.0f;
    std::string sampler = "euler_a";     // euler, euler_a, ddim, dpmpp_2m, lcm
    std::string scheduler = "discrete";  // discrete, karras
    uint64_t seed = 0;  // image i of a batch draws from seed + i, so it equals a batch of one at that seed
    int clip_skip = 1;  // A1111's convention: 1 = the last layer, 2 = the penultimate
    // Pixels per VAE window side where the image is larger, a multiple of the VAE's factor; 0: never tiled.
    int vae_tile = kAutoVaeTile;
    int batch_size = 1;
    // Unit-variance noise [batch_size, c, h, w] (h, w the latent size); empty: drawn from the seeds.
    std::vector<float> latents;
    // img2img: height x width x 3 in [0, 1] (Image's layout); empty: text to image.
    std::vector<float> init_image;
    double strength = 0.75;  // with init_image: the last int(steps * strength) steps run
    // Inpainting, with init_image: height x width, the pixels >= 0.5 are repainted. Empty: all of them.
    std::vector<float> mask;
    // Called after every step with the current latents [batch_size, c, h, w] (n floats); steps is the
    // number of steps that run (fewer than `steps` for img2img).
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

    // batch_size images. Checks the whole request (InvalidArgument naming the field) before any work.
    std::vector<Image> generate(const ImageRequest& request) const;

private:
    void check(const ImageRequest& r) const;
    // The text embeddings [width, n_ctx] of one prompt.
    std::vector<float> embed(const std::string& prompt, int clip_skip) const;

    std::shared_ptr<const models::SdModel> model_;
    std::unique_ptr<text::ClipTokenizer> tokenizer_;
};

}  // namespace quanta::engine
