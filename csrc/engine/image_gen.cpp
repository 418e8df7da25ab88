// The text-to-image loop (image_gen.h), as diffusers' StableDiffusionPipeline runs it.
#include "engine/image_gen.h"

#include <algorithm>

#include "base/error.h"
#include "models/vae_tiles.h"
#include "sample/diffusion_sampler.h"

namespace quanta::engine {

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
    QUANTA_CHECK_ARG(r.vae_tile == 0 || (r.vae_tile >= min_tile && r.vae_tile % f_vae == 0),
                     "vae_tile_size " + std::to_string(r.vae_tile) + " must be a multiple of " + std::to_string(f_vae) +
                         " from " + std::to_string(min_tile) + " (or tiling off)");
    QUANTA_CHECK_ARG(r.cfg_scale >= 0 && r.cfg_scale <= 100, "cfg_scale must be in [0, 100]");
    const int n_layers = (int)model_->clip.layers.size();
    QUANTA_CHECK_ARG(r.clip_skip >= 1 && r.clip_skip <= n_layers,
                     "clip_skip must be 1.." + std::to_string(n_layers) + " (1 = the last layer)");
    const size_t n = (size_t)model_->vae.latent_channels * (r.width / model_->vae.downscale) *
                     (r.height / model_->vae.downscale);
    QUANTA_CHECK_ARG(r.latents.empty() || r.latents.size() == n,
                     "latents must hold " + std::to_string(n) + " values (channels x height x width of the latents)");
}

std::vector<float> ImageGenerator::embed(const std::string& prompt, int clip_skip) const {
    const std::vector<int32_t> ids = tokenizer_->encode(prompt, (int32_t)model_->clip.n_ctx, true);
    return models::encode_text(*model_, ids, (int)model_->clip.layers.size() - (clip_skip - 1));
}

Image ImageGenerator::generate(const ImageRequest& r) const {
    check(r);
    const models::SdModel& m = *model_;
    // The sampler first: it validates the sampler, scheduler and steps.
    sample::DiffusionSampler sampler(m.config.betas, m.config.steps_offset,
                                     m.config.v_prediction ? sample::Prediction::V : sample::Prediction::Epsilon,
                                     sample::parse_diffusion_sampler(r.sampler), sample::parse_schedule(r.scheduler),
                                     r.steps, r.seed);
    const bool guided = r.cfg_scale > 1.0f;  // diffusers skips the unconditional pass at guidance <= 1
    const int64_t w = r.width / m.vae.downscale, h = r.height / m.vae.downscale;
    const size_t n = (size_t)(m.vae.latent_channels * w * h);

    // Text embeddings, unconditional first (diffusers' order).
    std::vector<float> context = embed(r.prompt, r.clip_skip);
    if (guided) {
        std::vector<float> uncond = embed(r.negative_prompt, r.clip_skip);
        context.insert(context.begin(), uncond.begin(), uncond.end());
    }
    m.release(models::SdPart::TextEncoder);

    std::vector<float> x = r.latents;
    if (x.empty()) {
        x.resize(n);
        sampler.fill_normal(x.data(), n);
    }
    for (float& v : x) v *= sampler.init_noise_sigma();

    const int batch = guided ? 2 : 1;
    {
        models::UNetRunner unet(m, w, h, batch);
        std::vector<float> in(n * batch), out(n * batch), t(batch);
        for (int i = 0; i < sampler.steps(); ++i) {
            const float scale = sampler.input_scale(i);
            for (int b = 0; b < batch; ++b)
                std::transform(x.begin(), x.end(), in.begin() + b * n, [scale](float v) { return v * scale; });
            std::fill(t.begin(), t.end(), sampler.timestep(i));
            unet.run(in.data(), t.data(), context.data(), out.data());
            if (guided) {
                // eps_u + w (eps_c - eps_u), into the conditional half's place.
                const float* u = out.data();
                float* c = out.data() + n;
                for (size_t k = 0; k < n; ++k) c[k] = u[k] + r.cfg_scale * (c[k] - u[k]);
            }
            sampler.step(i, out.data() + (guided ? n : 0), x.data(), n);
            if (r.callback) r.callback(i + 1, sampler.steps(), x.data(), n);
        }
    }
    m.release(models::SdPart::UNet);

    for (float& v : x) v /= m.config.latent_scale;
    const std::vector<float> planes = models::decode_latents(m, x.data(), w, h, r.vae_tile / m.vae.downscale);
    m.release(models::SdPart::Vae);
    Image img;
    img.width = r.width;
    img.height = r.height;
    img.rgb.resize((size_t)r.width * r.height * 3);
    const size_t plane = (size_t)r.width * r.height;
    for (size_t p = 0; p < plane; ++p)
        for (int c = 0; c < 3; ++c) img.rgb[p * 3 + c] = std::clamp(planes[c * plane + p] * 0.5f + 0.5f, 0.0f, 1.0f);
    return img;
}

}  // namespace quanta::engine
