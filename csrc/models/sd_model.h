// A Stable Diffusion file loaded for running: its config (metadata with
// stable-diffusion.cpp-compatible defaults), the three parts' weights bound by
// name, and the file's tensor data placed once on a backend. Each part runs
// through a graph built for the shape at hand whose arena lives only as long
// as its runner, so the text encoder's, UNet's and VAE's activations are never
// held at once.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "gguf/reader.h"
#include "models/clip_text.h"
#include "models/sd_lora.h"
#include "models/unet.h"
#include "models/vae.h"

namespace quanta::models {

struct SdConfig {
    std::string version;      // "sd1" or "sd2"
    bool v_prediction = false;
    // Where v_prediction comes from: "metadata" (sd.prediction_type), "argument" (SdModel::load's caller),
    // "default" (an SD1 file without the key: epsilon, as every SD1 model is) or "guessed" (an SD2 file
    // without it: SdModel::load runs stable-diffusion.cpp's test, v_prediction_score).
    std::string prediction_source = "metadata";
    float latent_scale = 0.18215f;
    std::vector<float> betas;  // the training noise schedule
    int steps_offset = 1;
    int unet_groups = 32, vae_groups = 32;
    std::vector<int> unet_heads;  // per level
    int unet_head_dim = 0;        // without unet_heads: each level's channels / this
    int clip_heads = 12;
    ClipActivation clip_activation = ClipActivation::QuickGelu;
    float clip_norm_eps = 1e-5f;

    // Model errors name the key; a file that is not a Stable Diffusion
    // pipeline (an LLM, say) is a Model error saying what it is.
    static SdConfig from_gguf(const gguf::File& file);
};

// The three parts, whose tensors sit under their own name prefix.
enum class SdPart { TextEncoder, UNet, Vae };

struct SdModel {
    std::shared_ptr<gguf::File> file;
    std::shared_ptr<Backend> backend;
    std::string device_note;  // why device "auto" chose the CPU (backends::load_on), else empty
    SdConfig config;
    ClipTextWeights clip;
    UNetWeights unet;
    VaeWeights vae;
    std::unique_ptr<Buffer> weight_memory;
    std::vector<std::pair<const uint8_t*, size_t>> part_bytes[3];  // per SdPart: merged tensor byte ranges
    MergedWeights lora;  // the weights LoRA patches changed, read in place of the file's

    // Image sizes must be multiples of this: the VAE's factor times the UNet's
    // 2^downsamples, so every skip connection meets a tensor of its own size.
    int size_multiple() const { return vae.downscale << unet.n_downsamples; }
    // An inpainting UNet takes the latents, the latent mask and the masked image's latents: 2 c + 1 channels.
    bool has_inpainting_unet() const { return unet.conv_in.c_in() == 2 * vae.latent_channels + 1; }

    // Drops the part's weight pages from memory once it is done (the file stays
    // mapped; the next image reads them back from the page cache), so that at
    // most one part's weights are resident with its activations.
    void release(SdPart part) const;

    // prediction_type: "epsilon" or "v_prediction" overrides the file's; "" keeps it (or guesses, see SdConfig).
    static std::shared_ptr<SdModel> load(std::shared_ptr<gguf::File> file, std::shared_ptr<Backend> backend,
                                         const std::string& prediction_type = "",
                                         const std::vector<LoraPatch>& loras = {});
};

// One graph on the model's backend with its arena: build, then run any number of times.
class PartRunner {
public:
    explicit PartRunner(const SdModel& m) : m_(m), bb_(graph_, m.weight_memory->base(), &m.lora.addresses) {}
    BlockBuilder& builder() { return bb_; }
    Tensor* input(DType type, const Shape& ne, const std::string& name) { return graph_.input(type, ne, name); }
    void finish(Tensor* out) { finish(std::vector<Tensor*>{out}); }
    void finish(const std::vector<Tensor*>& outs);  // marks the outputs and prepares the graph
    void set(Tensor* t, const void* src) { m_.backend->set_tensor(t, src, t->n_bytes()); }
    void run(float* out);  // computes and copies the first output out
    void compute() { m_.backend->compute(graph_); }
    void get(const Tensor* t, float* dst) { m_.backend->get_tensor(t, dst, t->n_bytes()); }

private:
    const SdModel& m_;
    Graph graph_;
    BlockBuilder bb_;
    Tensor* out_ = nullptr;
    std::unique_ptr<Buffer> arena_;
};

// Text embeddings [n_embd, n_ctx] for n_ctx token ids after `n_layers` layers.
std::vector<float> encode_text(const SdModel& m, const std::vector<int32_t>& ids, int n_layers);

// The UNet for one latent size and batch, reused across the sampler's steps.
// Its graph takes at most kUNetLatentsPerGraph latent pixels (a 512x512 image's
// conditional and unconditional pass, 221 MB of activations for SD1.5): larger
// batches run as several graphs of fewer images each, so the UNet's memory
// stays that size's at any image size (a 1024x1024 image's two passes: 0.44 GB
// more in one graph).
constexpr int64_t kUNetLatentsPerGraph = 2 * 64 * 64;

class UNetRunner {
public:
    UNetRunner(const SdModel& m, int64_t w, int64_t h, int64_t n);
    // x [w, h, c, n], t [n], context [context_dim, n_ctx, n] -> out [w, h, latent c, n] (c is 2 latent c + 1
    // for an inpainting UNet).
    void run(const float* x, const float* t, const float* context, float* out);
    size_t latent_floats() const { return (size_t)(x_->n_elements() / per_graph_ * n_); }

private:
    PartRunner r_;
    int64_t n_, per_graph_;  // images in all, and per graph run (a divisor of n_)
    Tensor *x_, *t_, *context_, *out_;
};

// stable-diffusion.cpp's test for an SD2 file that does not say what its UNet predicts: one UNet pass on
// constant latents (0.5, 8x8) and context (0.5) at t = 999; a v-prediction UNet's output is then far below its
// input (mean(out - x) < -1), an eps-prediction UNet's is not. Returns that mean.
double v_prediction_score(const SdModel& m);

// Unscaled latents [w, h, c] -> pixels [w * f, h * f, 3] in about [-1, 1].
// tile > 0: in tiles of tile x tile latents (vae_tiles.h) where the latents are larger.
std::vector<float> decode_latents(const SdModel& m, const float* z, int64_t w, int64_t h, int64_t tile = 0);
// Pixels [W, H, 3] in [-1, 1] -> the latent distribution's mean (unscaled).
std::vector<float> encode_image(const SdModel& m, const float* pixels, int64_t w, int64_t h);

}  // namespace quanta::models
