// Loading a Stable Diffusion file and running its parts (sd_model.h).
#include "models/sd_model.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "base/error.h"
#include "models/vae_tiles.h"

namespace quanta::models {
namespace {

// SD1's and SD2's training schedule ("scaled_linear" from 0.00085 to 0.012 over
// 1000 steps), for files that carry no betas (stable-diffusion.cpp's).
std::vector<float> default_betas() {
    std::vector<float> betas(1000);
    const double a = std::sqrt(0.00085), b = std::sqrt(0.012);
    for (int i = 0; i < 1000; ++i) {
        const double s = a + (b - a) * i / 999.0;
        betas[i] = (float)(s * s);
    }
    return betas;
}

// Each SdPart's tensor names begin with (the LDM checkpoint's prefixes).
const char* const kPartPrefix[] = {"cond_stage_model.", "model.diffusion_model.", "first_stage_model."};

// The byte ranges of the tensors under `prefix`, in file order, adjacent ones merged.
std::vector<std::pair<const uint8_t*, size_t>> tensor_ranges(const gguf::File& file, const std::string& prefix) {
    std::vector<const gguf::TensorInfo*> ts;
    for (const gguf::TensorInfo& t : file.tensors())
        if (t.name.compare(0, prefix.size(), prefix) == 0) ts.push_back(&t);
    std::sort(ts.begin(), ts.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    std::vector<std::pair<const uint8_t*, size_t>> out;
    for (const gguf::TensorInfo* t : ts) {
        if (!out.empty() && out.back().first + out.back().second + file.alignment() >= t->data)
            out.back().second = (size_t)(t->data + t->nbytes - out.back().first);
        else
            out.push_back({t->data, t->nbytes});
    }
    return out;
}

const char* kClipEmbedding = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight";

// One run of a part with one f32 input: its graph built for `shape`, fed `src`, the output returned.
template <typename Build>
std::vector<float> run_once(const SdModel& m, const Shape& shape, const char* name, const float* src, Build build) {
    PartRunner r(m);
    Tensor* in = r.input(DType::F32, shape, name);
    Tensor* out = build(r.builder(), in);
    r.finish(out);
    r.set(in, src);
    std::vector<float> result((size_t)out->n_elements());
    r.run(result.data());
    return result;
}

}  // namespace

SdConfig SdConfig::from_gguf(const gguf::File& file) {
    const gguf::Value* arch = file.find("general.architecture");
    const bool has_unet = file.find_tensor("model.diffusion_model.input_blocks.0.0.weight") != nullptr;
    if (arch && arch->type == gguf::ValueType::String && arch->str != "stable-diffusion")
        fail(ErrorKind::Model, file.label() + ": this is a '" + arch->str +
                                   "' model, not a Stable Diffusion pipeline (load it with quanta.LLM)");
    if (!has_unet)
        fail(ErrorKind::Model, file.label() + ": not a Stable Diffusion pipeline (no model.diffusion_model.* UNet tensors)");

    const MetadataReader md(file, "sd.");
    SdConfig c;
    // stable-diffusion.cpp's rule where the file says nothing: SD2's text encoder is 1024 wide.
    const gguf::TensorInfo* embd = file.find_tensor(kClipEmbedding);
    c.version = md.text("version", embd && embd->ne[0] == 1024 ? "sd2" : "sd1");
    if (c.version != "sd1" && c.version != "sd2")
        fail(ErrorKind::Unsupported, file.label() + ": Stable Diffusion version '" + c.version + "' (quanta runs sd1 and sd2)");
    const std::string prediction = md.text("prediction_type", "epsilon");
    if (prediction != "epsilon" && prediction != "v_prediction")
        fail(ErrorKind::Unsupported, file.label() + ": prediction type '" + prediction + "' (epsilon or v_prediction)");
    c.v_prediction = prediction == "v_prediction";
    if (!md.find("prediction_type")) c.prediction_source = c.version == "sd1" ? "default" : "guessed";
    c.latent_scale = md.real("latent_scale", 0.18215f);
    for (double b : md.numbers("scheduler.betas")) {
        if (!(b > 0 && b < 1)) fail(ErrorKind::Model, file.label() + ": sd.scheduler.betas must lie in (0, 1)");
        c.betas.push_back((float)b);
    }
    if (c.betas.empty()) c.betas = default_betas();
    c.steps_offset = (int)md.integer("scheduler.steps_offset", 1, false, 0, 1000);
    c.unet_groups = (int)md.integer("unet.norm_groups", 32, false, 1, 1024);
    c.vae_groups = (int)md.integer("vae.norm_groups", 32, false, 1, 1024);
    for (double h : md.numbers("unet.head_count")) {
        if (h < 1 || h > 1024 || h != std::floor(h)) fail(ErrorKind::Model, file.label() + ": bad sd.unet.head_count");
        c.unet_heads.push_back((int)h);
    }
    // stable-diffusion.cpp's rule for files without head counts: SD1 has 8
    // heads everywhere, SD2 heads of 64 channels.
    if (c.unet_heads.empty() && c.version == "sd1") c.unet_heads.assign(8, 8);
    if (c.unet_heads.empty()) c.unet_head_dim = 64;
    const int64_t clip_width = embd ? embd->ne[0] : 768;
    c.clip_heads = (int)md.integer("clip.head_count", clip_width / 64, false, 1, 1024);
    const std::string act = md.text("clip.hidden_act", c.version == "sd2" ? "gelu" : "quick_gelu");
    if (act != "quick_gelu" && act != "gelu")
        fail(ErrorKind::Unsupported, file.label() + ": CLIP activation '" + act + "' (quick_gelu or gelu)");
    c.clip_activation = act == "gelu" ? ClipActivation::Gelu : ClipActivation::QuickGelu;
    c.clip_norm_eps = md.real("clip.layer_norm_eps", 1e-5f);
    return c;
}

std::shared_ptr<SdModel> SdModel::load(std::shared_ptr<gguf::File> file, std::shared_ptr<Backend> backend,
                                       const std::string& prediction_type, const std::vector<LoraPatch>& loras) {
    QUANTA_CHECK_ARG(backend != nullptr, "SdModel::load: no backend");
    QUANTA_CHECK_ARG(prediction_type.empty() || prediction_type == "epsilon" || prediction_type == "v_prediction",
                     "prediction_type must be epsilon or v_prediction, not '" + prediction_type + "'");
    // The CUDA backend has none of the image ops yet (issue 15): said here, before any weight is uploaded, so
    // that device "auto" falls back to the CPU at once.
    if (backend->device() == "cuda") fail(ErrorKind::Unsupported, "the CUDA backend has no diffusion kernels yet");
    auto m = std::make_shared<SdModel>();
    m->config = SdConfig::from_gguf(*file);
    if (!prediction_type.empty()) {
        m->config.v_prediction = prediction_type == "v_prediction";
        m->config.prediction_source = "argument";
    }
    const Binder b(*file);
    m->clip = ClipTextWeights::bind(b, m->config.clip_heads, m->config.clip_activation, m->config.clip_norm_eps);
    m->unet = UNetWeights::bind(b, m->config.unet_heads, m->config.unet_head_dim);
    m->vae = VaeWeights::bind(b);
    if (m->unet.context_dim != m->clip.n_embd)
        fail(ErrorKind::Model, file->label() + ": the UNet attends to " + std::to_string(m->unet.context_dim) +
                                   "-wide text embeddings but the text encoder is " + std::to_string(m->clip.n_embd) + " wide");
    const int64_t c = m->vae.latent_channels;
    if ((m->unet.conv_in.c_in() != c && !m->has_inpainting_unet()) || m->unet.conv_out.c_out() != c)
        fail(ErrorKind::Model, file->label() + ": the UNet takes " + std::to_string(m->unet.conv_in.c_in()) +
                                   " channels and predicts " + std::to_string(m->unet.conv_out.c_out()) +
                                   ", but the VAE's latents have " + std::to_string(c) + " (a UNet takes " +
                                   std::to_string(c) + ", or " + std::to_string(2 * c + 1) + " to inpaint)");
    m->weight_memory = backend->place(file->tensor_data(), file->tensor_data_size());
    for (int p = 0; p < 3; ++p) m->part_bytes[p] = tensor_ranges(*file, kPartPrefix[p]);
    m->lora = merge_loras(*file, *backend, loras);
    m->file = std::move(file);
    m->backend = std::move(backend);
    if (m->config.prediction_source == "guessed") m->config.v_prediction = v_prediction_score(*m) < -1.0;
    return m;
}

void SdModel::release(SdPart part) const {
    for (auto [begin, bytes] : part_bytes[(int)part]) file->drop_pages(begin, bytes);
}

double v_prediction_score(const SdModel& m) {
    // 8x8 latents as stable-diffusion.cpp uses, or the smallest size the UNet's downsamplers allow.
    const int64_t side = std::max<int64_t>(8, m.size_multiple() / m.vae.downscale);
    UNetRunner unet(m, side, side, 1);
    // A context of identical tokens: cross-attention gives the same whatever their number (it uses 2).
    std::vector<float> x(unet.latent_floats(), 0.5f), out(x.size());
    std::vector<float> context((size_t)(m.unet.context_dim * m.clip.n_ctx), 0.5f);
    const float t = 999.0f;
    unet.run(x.data(), &t, context.data(), out.data());
    double sum = 0;
    for (size_t i = 0; i < x.size(); ++i) sum += (double)out[i] - x[i];
    return sum / (double)x.size();
}

void PartRunner::finish(const std::vector<Tensor*>& outs) {
    out_ = outs.at(0);
    for (Tensor* t : outs) graph_.mark_output(t);
    arena_ = m_.backend->prepare(graph_);
}

void PartRunner::run(float* out) {
    compute();
    get(out_, out);
}

std::vector<float> encode_text(const SdModel& m, const std::vector<int32_t>& ids, int n_layers) {
    const ClipTextWeights& w = m.clip;
    QUANTA_CHECK_ARG((int64_t)ids.size() == w.n_ctx, "encode_text: expected " + std::to_string(w.n_ctx) + " token ids");
    QUANTA_CHECK_ARG(n_layers >= 1 && n_layers <= (int)w.layers.size(),
                     "clip layers must be 1.." + std::to_string(w.layers.size()));
    PartRunner r(m);
    Tensor* tokens = r.input(DType::I32, {w.n_ctx}, "tokens");
    Tensor* mask = r.input(DType::F32, {w.n_ctx, w.n_ctx}, "causal_mask");
    r.finish(build_clip_text(r.builder(), w, n_layers, tokens, mask));
    std::vector<float> causal((size_t)(w.n_ctx * w.n_ctx));
    for (int64_t q = 0; q < w.n_ctx; ++q)
        for (int64_t k = 0; k < w.n_ctx; ++k)
            causal[q * w.n_ctx + k] = k <= q ? 0.0f : -std::numeric_limits<float>::infinity();
    r.set(tokens, ids.data());
    r.set(mask, causal.data());
    std::vector<float> out((size_t)(w.n_embd * w.n_ctx));
    r.run(out.data());
    return out;
}

// The largest divisor of n whose images fit kUNetLatentsPerGraph (at least one).
int64_t images_per_graph(int64_t n, int64_t latents) {
    int64_t per = std::clamp<int64_t>(kUNetLatentsPerGraph / latents, 1, n);
    while (n % per) --per;
    return per;
}

UNetRunner::UNetRunner(const SdModel& m, int64_t w, int64_t h, int64_t n)
    : r_(m), n_(n), per_graph_(images_per_graph(n, w * h)) {
    const int64_t c = m.unet.conv_in.c_in();
    x_ = r_.input(DType::F32, {w, h, c, per_graph_}, "latents");
    t_ = r_.input(DType::F32, {per_graph_}, "timesteps");
    context_ = r_.input(DType::F32, {m.unet.context_dim, m.clip.n_ctx, per_graph_}, "context");
    out_ = build_unet(r_.builder(), m.unet, m.config.unet_groups, x_, t_, context_);
    r_.finish(out_);
}

void UNetRunner::run(const float* x, const float* t, const float* context, float* out) {
    const size_t xs = (size_t)x_->n_elements(), cs = (size_t)context_->n_elements(), os = (size_t)out_->n_elements();
    for (int64_t i = 0; i < n_ / per_graph_; ++i) {
        r_.set(x_, x + i * xs);
        r_.set(t_, t + i * per_graph_);
        r_.set(context_, context + i * cs);
        r_.run(out + i * os);
    }
}

std::vector<float> decode_latents(const SdModel& m, const float* z, int64_t w, int64_t h, int64_t tile) {
    if (tile > 0 && (w > tile || h > tile)) return decode_latents_tiled(m, z, w, h, tile);
    return run_once(m, {w, h, m.vae.latent_channels, 1}, "latents", z,
                    [&](BlockBuilder& bb, Tensor* in) { return build_vae_decoder(bb, m.vae, m.config.vae_groups, in); });
}

std::vector<float> encode_image(const SdModel& m, const float* pixels, int64_t w, int64_t h) {
    if (!m.vae.has_encoder()) fail(ErrorKind::Model, m.file->label() + ": the file has no VAE encoder");
    return run_once(m, {w, h, 3, 1}, "pixels", pixels,
                    [&](BlockBuilder& bb, Tensor* in) { return build_vae_encoder(bb, m.vae, m.config.vae_groups, in); });
}

}  // namespace quanta::models
