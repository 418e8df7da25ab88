// The image loop (image_gen.h), as diffusers' StableDiffusionPipeline, StableDiffusionImg2ImgPipeline and
// StableDiffusionInpaintPipeline run it.
#include "engine/image_gen.h"

#include <algorithm>

#include "base/error.h"
#include "models/vae_tiles.h"
#include "sample/diffusion_sampler.h"

namespace quanta::engine {
namespace {

using models::SdModel;
using sample::DiffusionSampler;

// What an init image gives the loop, at the latent size ([c, h, w] scaled latents, [h, w] mask).
struct InitLatents {
    std::vector<float> image;         // the init image's latents: img2img's start, 4-channel inpainting's blend
    std::vector<float> mask;          // inpainting: 1 where the image is repainted, else 0
    std::vector<float> masked_image;  // a 9-channel UNet's extra input: the latents of the image outside the mask
};

// Pixels (height x width x 3 in [0, 1]) -> the VAE's input planes [3, H, W] in [-1, 1] (diffusers' 2 x - 1),
// zero where `keep` is false (diffusers' masked image). Empty pixels give zeros.
std::vector<float> to_planes(const std::vector<float>& rgb, const std::vector<bool>& keep) {
    const size_t plane = keep.size();
    std::vector<float> planes(plane * 3, 0.0f);
    if (rgb.empty()) return planes;
    for (size_t p = 0; p < plane; ++p)
        for (int c = 0; c < 3; ++c) planes[c * plane + p] = keep[p] ? 2.0f * rgb[p * 3 + c] - 1.0f : 0.0f;
    return planes;
}

// The VAE encoder's latent mean (not a sample of the posterior, so the seed only names the noise) times the
// latent scale, as diffusers scales the latents it noises.
std::vector<float> encode_scaled(const SdModel& m, const std::vector<float>& planes, int width, int height) {
    std::vector<float> z = models::encode_image(m, planes.data(), width, height);
    for (float& v : z) v *= m.config.latent_scale;
    return z;
}

// The pixels a request repaints: diffusers binarizes the mask at 0.5; no mask repaints everything.
std::vector<bool> repainted(const ImageRequest& r) {
    std::vector<bool> out((size_t)r.width * r.height, true);
    for (size_t p = 0; p < r.mask.size(); ++p) out[p] = r.mask[p] >= 0.5f;
    return out;
}

// The repainted pixels downscaled by f to the latent size as torch's nearest interpolate does it: latent
// (y, x) takes pixel (f y, f x).
std::vector<float> latent_mask(const std::vector<bool>& repaint, int width, int height, int f) {
    const int w = width / f, h = height / f;
    std::vector<float> mask((size_t)w * h);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) mask[(size_t)y * w + x] = repaint[(size_t)y * f * width + x * f] ? 1.0f : 0.0f;
    return mask;
}

// diffusers' inpainting at strength 1 and text to image start from scaled noise; otherwise the run starts
// from the init image noised to its first step.
bool starts_from_noise(const ImageRequest& r) {
    return r.init_image.empty() || (!r.mask.empty() && r.strength == 1.0);
}

// Encodes what the request's init image and mask give the loop. A 9-channel UNet always gets a mask and a
// masked image (without a mask: repaint all, which leaves the masked image blank).
InitLatents prepare_init(const SdModel& m, const ImageRequest& r) {
    InitLatents init;
    const bool inpaint_unet = m.has_inpainting_unet();
    if (!r.init_image.empty() && !(inpaint_unet && starts_from_noise(r)))
        init.image = encode_scaled(m, to_planes(r.init_image, std::vector<bool>((size_t)r.width * r.height, true)),
                                   r.width, r.height);
    if (r.mask.empty() && !inpaint_unet) return init;
    const std::vector<bool> repaint = repainted(r);
    init.mask = latent_mask(repaint, r.width, r.height, m.vae.downscale);
    if (inpaint_unet) {
        std::vector<bool> keep(repaint.size());
        std::transform(repaint.begin(), repaint.end(), keep.begin(), [](bool p) { return !p; });
        init.masked_image = encode_scaled(m, to_planes(r.init_image, keep), r.width, r.height);
    }
    return init;
}

// One image's start latents x from its unit noise: scaled noise, or the init latents noised to the first step.
void start_latents(const DiffusionSampler& s, const ImageRequest& r, const InitLatents& init, const float* noise,
                   float* x, size_t n) {
    if (starts_from_noise(r)) {
        std::transform(noise, noise + n, x, [&s](float v) { return v * s.init_noise_sigma(); });
        return;
    }
    s.add_noise(s.first_step(), init.image.data(), noise, x, n);
}

// One UNet input [C_in, h, w]: the latents times the step's input scale, then for a 9-channel UNet the latent
// mask and the masked image's latents (diffusers concatenates them after scaling).
void unet_input(float scale, const float* x, size_t n, const InitLatents& init, float* in) {
    std::transform(x, x + n, in, [scale](float v) { return v * scale; });
    if (init.masked_image.empty()) return;
    in = std::copy(init.mask.begin(), init.mask.end(), in + n);
    std::copy(init.masked_image.begin(), init.masked_image.end(), in);
}

// 4-channel inpainting after step i: outside the mask, x goes back to the init latents noised to the next
// step's level (after the last step, the init latents themselves), diffusers' latent blending.
void blend_outside_mask(const DiffusionSampler& s, int i, const InitLatents& init, const float* noise, float* x,
                        size_t n) {
    std::vector<float> original = init.image;
    if (i + 1 < s.steps()) s.add_noise(i + 1, init.image.data(), noise, original.data(), n);
    const size_t plane = init.mask.size();
    for (size_t k = 0; k < n; ++k)
        if (init.mask[k % plane] == 0.0f) x[k] = original[k];
}

// Scaled latents [c, h, w] -> the image in [0, 1], the VAE in tiles of `tile` pixels (0: one pass).
Image decode(const SdModel& m, const float* z, size_t n, int64_t w, int64_t h, int tile) {
    std::vector<float> unscaled(z, z + n);
    for (float& v : unscaled) v /= m.config.latent_scale;
    const std::vector<float> planes = models::decode_latents(m, unscaled.data(), w, h, tile / m.vae.downscale);
    Image img;
    img.width = (int)(w * m.vae.downscale);
    img.height = (int)(h * m.vae.downscale);
    const size_t plane = (size_t)img.width * img.height;
    img.rgb.resize(plane * 3);
    for (size_t p = 0; p < plane; ++p)
        for (int c = 0; c < 3; ++c) img.rgb[p * 3 + c] = std::clamp(planes[c * plane + p] * 0.5f + 0.5f, 0.0f, 1.0f);
    return img;
}

}  // namespace

ImageGenerator::ImageGenerator(std::shared_ptr<const models::SdModel> model)
    : model_(std::move(model)), tokenizer_(text::ClipTokenizer::from_gguf(*model_->file)) {}

void ImageGenerator::check(const ImageRequest& r) const {
    const int f = model_->size_multiple();
    for (auto [name, v] : {std::pair{"width", r.width}, std::pair{"height", r.height}})
        QUANTA_CHECK_ARG(v >= f && v <= 8192 && v % f == 0,
                         std::string(name) + " " + std::to_string(v) + " must be a multiple of " + std::to_string(f) +
                             " from " + std::to_string(f) + " to 8192 (this model's latent factor " +
                             std::to_string(model_->vae.downscale) + " times its UNet's " +
                             std::to_string(f / model_->vae.downscale) + ")");
    QUANTA_CHECK_ARG(r.steps >= 1, "steps must be at least 1");
    const int64_t f_vae = model_->vae.downscale, min_tile = models::kVaeMinTile * f_vae;
    QUANTA_CHECK_ARG(r.vae_tile == 0 || r.vae_tile == kAutoVaeTile || (r.vae_tile >= min_tile && r.vae_tile % f_vae == 0),
                     "vae_tile_size " + std::to_string(r.vae_tile) + " must be a multiple of " + std::to_string(f_vae) +
                         " from " + std::to_string(min_tile) + " (or tiling off)");
    QUANTA_CHECK_ARG(r.cfg_scale >= 0 && r.cfg_scale <= 100, "cfg_scale must be in [0, 100]");
    const int n_layers = (int)model_->clip.layers.size();
    QUANTA_CHECK_ARG(r.clip_skip >= 1 && r.clip_skip <= n_layers,
                     "clip_skip must be 1.." + std::to_string(n_layers) + " (1 = the last layer)");
    QUANTA_CHECK_ARG(r.batch_size >= 1 && r.batch_size <= kMaxImageBatch,
                     "batch_size must be 1.." + std::to_string(kMaxImageBatch));
    const size_t n = (size_t)model_->vae.latent_channels * (r.width / model_->vae.downscale) *
                     (r.height / model_->vae.downscale);
    QUANTA_CHECK_ARG(r.latents.empty() || r.latents.size() == n * r.batch_size,
                     "latents must hold " + std::to_string(n * r.batch_size) +
                         " values (batch_size x channels x height x width of the latents)");
    const size_t pixels = (size_t)r.width * r.height;
    QUANTA_CHECK_ARG(r.init_image.empty() || r.init_image.size() == pixels * 3,
                     "init_image must hold " + std::to_string(pixels * 3) + " values (height x width x 3)");
    QUANTA_CHECK_ARG(r.mask.empty() || !r.init_image.empty(), "a mask needs an init_image to inpaint");
    QUANTA_CHECK_ARG(r.mask.empty() || r.mask.size() == pixels,
                     "mask must hold " + std::to_string(pixels) + " values (height x width)");
    if (!r.init_image.empty()) sample::first_step_for_strength(r.steps, r.strength);
    if ((!r.init_image.empty() || model_->has_inpainting_unet()) && !model_->vae.has_encoder())
        fail(ErrorKind::Model, model_->file->label() + ": the file has no VAE encoder, which " +
                                   (r.init_image.empty() ? "its inpainting UNet" : "an init_image") + " needs");
}

std::vector<float> ImageGenerator::embed(const std::string& prompt, int clip_skip) const {
    const std::vector<int32_t> ids = tokenizer_->encode(prompt, (int32_t)model_->clip.n_ctx, true);
    return models::encode_text(*model_, ids, (int)model_->clip.layers.size() - (clip_skip - 1));
}

std::vector<Image> ImageGenerator::generate(const ImageRequest& r) const {
    check(r);
    const SdModel& m = *model_;
    const int batch = r.batch_size;
    // One sampler per image, image b's seeded with seed + b; the first validates the sampler, scheduler and steps.
    std::vector<DiffusionSampler> samplers;
    for (int b = 0; b < batch; ++b)
        samplers.emplace_back(m.config.betas, m.config.steps_offset,
                              m.config.v_prediction ? sample::Prediction::V : sample::Prediction::Epsilon,
                              sample::parse_diffusion_sampler(r.sampler), sample::parse_schedule(r.scheduler),
                              r.steps, r.seed + (uint64_t)b);
    // img2img runs only the schedule's last steps.
    const int first = r.init_image.empty() ? 0 : sample::first_step_for_strength(r.steps, r.strength);
    for (DiffusionSampler& s : samplers) s.begin_at(first);
    const int steps = samplers[0].steps();
    const bool guided = r.cfg_scale > 1.0f;  // diffusers skips the unconditional pass at guidance <= 1
    const int64_t w = r.width / m.vae.downscale, h = r.height / m.vae.downscale;
    const size_t n = (size_t)(m.vae.latent_channels * w * h);  // one image's latents

    // Text embeddings: the unconditional one per image, then the conditional one per image (diffusers' order).
    std::vector<float> context;
    const std::vector<float> cond = embed(r.prompt, r.clip_skip);
    if (guided) {
        const std::vector<float> uncond = embed(r.negative_prompt, r.clip_skip);
        for (int b = 0; b < batch; ++b) context.insert(context.end(), uncond.begin(), uncond.end());
    }
    for (int b = 0; b < batch; ++b) context.insert(context.end(), cond.begin(), cond.end());
    m.release(models::SdPart::TextEncoder);

    // The init image's latents, mask and masked image, where the request has an init image or the UNet inpaints.
    const InitLatents init = prepare_init(m, r);
    m.release(models::SdPart::Vae);  // the encoder's pages, where it ran

    // Each image's unit noise (given, or drawn from its seed), then its start latents.
    std::vector<float> noise = r.latents;
    if (noise.empty()) {
        noise.resize(n * batch);
        for (int b = 0; b < batch; ++b) samplers[b].fill_normal(noise.data() + b * n, n);
    }
    std::vector<float> x(n * batch);
    for (int b = 0; b < batch; ++b) start_latents(samplers[b], r, init, noise.data() + b * n, x.data() + b * n, n);

    const int unet_batch = guided ? 2 * batch : batch;
    const bool blend = !r.mask.empty() && !m.has_inpainting_unet();
    {
        models::UNetRunner unet(m, w, h, unet_batch);
        const size_t n_in = (size_t)(m.unet.conv_in.c_in() * w * h);  // one UNet input
        std::vector<float> in(n_in * unet_batch), out(n * unet_batch), t(unet_batch);
        for (int i = first; i < steps; ++i) {
            // Each image's input at the step's scale, the same again for the unconditional half under CFG.
            for (int b = 0; b < batch; ++b)
                unet_input(samplers[b].input_scale(i), x.data() + b * n, n, init, in.data() + b * n_in);
            if (guided) std::copy(in.begin(), in.begin() + batch * n_in, in.begin() + batch * n_in);
            std::fill(t.begin(), t.end(), samplers[0].timestep(i));
            unet.run(in.data(), t.data(), context.data(), out.data());
            float* eps = out.data() + (guided ? batch * n : 0);
            if (guided) {
                // eps_u + w (eps_c - eps_u), into the conditional half's place.
                const float* u = out.data();
                for (size_t k = 0; k < batch * n; ++k) eps[k] = u[k] + r.cfg_scale * (eps[k] - u[k]);
            }
            for (int b = 0; b < batch; ++b) {
                samplers[b].step(i, eps + b * n, x.data() + b * n, n);
                if (blend) blend_outside_mask(samplers[b], i, init, noise.data() + b * n, x.data() + b * n, n);
            }
            if (r.callback) r.callback(i + 1 - first, steps - first, x.data(), x.size());
        }
    }
    m.release(models::SdPart::UNet);

    std::vector<Image> images;
    const int auto_tile = std::max(r.width, r.height) > kVaeOnePassMax ? kVaeAutoWindow : 0;
    const int tile = r.vae_tile == kAutoVaeTile ? auto_tile : r.vae_tile;
    for (int b = 0; b < batch; ++b) images.push_back(decode(m, x.data() + b * n, n, w, h, tile));
    m.release(models::SdPart::Vae);
    return images;
}

}  // namespace quanta::engine
