// Stable Diffusion model bindings: the engine side of quanta.Diffusion. The
// parts (text encoder, UNet, VAE) are exposed one by one over numpy arrays in
// PyTorch's layouts ((N, C, H, W) images, (T, width) embeddings), which share
// memory order with the engine's [W, H, C, N], so tests compare each part with
// diffusers. Every call releases the GIL.
#include "bindings.h"
#include "backends/registry.h"
#include "base/error.h"
#include "engine/image_gen.h"
#include "models/sd_model.h"
#include "models/vae_tiles.h"

namespace quanta::bindings {
namespace {

using models::SdModel;
using F32Array = py::array_t<float, py::array::c_style | py::array::forcecast>;

py::dict config_dict(const SdModel& m) {
    const models::SdConfig& c = m.config;
    py::dict d;
    d["version"] = c.version;
    d["prediction_type"] = c.v_prediction ? "v_prediction" : "epsilon";
    d["prediction_source"] = c.prediction_source;
    d["latent_scale"] = c.latent_scale;
    d["steps_offset"] = c.steps_offset;
    d["betas"] = c.betas;
    d["unet_heads"] = c.unet_heads;
    d["latent_channels"] = m.vae.latent_channels;
    d["downscale"] = m.vae.downscale;
    d["size_multiple"] = m.size_multiple();
    d["context_dim"] = m.unet.context_dim;
    d["clip_layers"] = (int)m.clip.layers.size();
    d["clip_ctx"] = m.clip.n_ctx;
    d["clip_width"] = m.clip.n_embd;
    d["has_vae_encoder"] = m.vae.has_encoder();
    d["inpainting"] = m.has_inpainting_unet();
    return d;
}

// Checks a numpy array's shape: -1 entries accept any size.
void check_shape(const F32Array& a, const char* what, std::vector<py::ssize_t> want) {
    bool ok = a.ndim() == (py::ssize_t)want.size();
    for (size_t d = 0; ok && d < want.size(); ++d) ok = want[d] < 0 || a.shape(d) == want[d];
    if (!ok) {
        std::string got = "(";
        for (py::ssize_t d = 0; d < a.ndim(); ++d) got += std::to_string(a.shape(d)) + (d + 1 < a.ndim() ? ", " : "");
        fail(ErrorKind::InvalidArgument, std::string(what) + " has shape " + got + "), which does not fit the model");
    }
}

F32Array new_array(std::vector<py::ssize_t> shape, const std::vector<float>& data) {
    F32Array out(shape);
    std::copy(data.begin(), data.end(), out.mutable_data());
    return out;
}

// (target, source, down (rank, row), up (out, rank), scale) tuples, as python/quanta/lora.py reads them.
std::vector<models::LoraPatch> lora_patches(const py::list& loras) {
    std::vector<models::LoraPatch> patches;
    for (const py::handle& item : loras) {
        const auto [target, source, down, up, scale] =
            item.cast<std::tuple<std::string, std::string, F32Array, F32Array, float>>();
        QUANTA_CHECK_ARG(down.ndim() == 2 && up.ndim() == 2 && up.shape(1) == down.shape(0),
                         "LoRA module '" + source + "': down must be (rank, inputs) and up (outputs, rank)");
        models::LoraPatch p{target, source, down.shape(0), {}, {}, scale};
        p.down.assign(down.data(), down.data() + down.size());
        p.up.assign(up.data(), up.data() + up.size());
        patches.push_back(std::move(p));
    }
    return patches;
}

}  // namespace

void bind_sd(py::module_& m) {
    py::class_<SdModel, std::shared_ptr<SdModel>>(m, "SdModel")
        .def(py::init([](std::shared_ptr<gguf::File> file, const std::string& device, int n_threads,
                         const std::string& prediction_type, const py::list& loras) {
                 BackendOptions options;
                 options.n_threads = n_threads;
                 std::vector<models::LoraPatch> patches = lora_patches(loras);
                 py::gil_scoped_release release;
                 return backends::load_on(device, options, [&](std::shared_ptr<Backend> b) {
                     return SdModel::load(file, std::move(b), prediction_type, patches);
                 });
             }),
             py::arg("file"), py::arg("device") = "auto", py::arg("n_threads") = 0, py::arg("prediction_type") = "",
             py::arg("loras") = py::list(),
             "loras: (target tensor, LoRA module, down (rank, inputs), up (outputs, rank), scale) tuples merged "
             "into the weights at load")
        .def_property_readonly("config", [](const SdModel& s) { return config_dict(s); })
        .def_property_readonly("n_threads", [](const SdModel& s) { return s.backend->n_threads(); })
        .def_property_readonly("device", [](const SdModel& s) { return s.backend->device(); })
        .def_property_readonly("device_note", [](const SdModel& s) { return s.device_note; })
        .def("encode_text",
             [](const SdModel& s, std::vector<int32_t> ids, int n_layers) {
                 std::vector<float> out;
                 {
                     py::gil_scoped_release release;
                     out = models::encode_text(s, ids, n_layers);
                 }
                 return new_array({(py::ssize_t)s.clip.n_ctx, (py::ssize_t)s.clip.n_embd}, out);
             },
             py::arg("ids"), py::arg("n_layers"), "hidden states (n_ctx, width) after n_layers and the final norm")
        .def("unet",
             [](const SdModel& s, F32Array x, F32Array t, F32Array context) {
                 check_shape(x, "latents", {-1, (py::ssize_t)s.unet.conv_in.c_in(), -1, -1});
                 const py::ssize_t n = x.shape(0);
                 check_shape(t, "timesteps", {n});
                 check_shape(context, "context", {n, (py::ssize_t)s.clip.n_ctx, (py::ssize_t)s.unet.context_dim});
                 QUANTA_CHECK_ARG(x.shape(2) % (s.size_multiple() / s.vae.downscale) == 0 &&
                                      x.shape(3) % (s.size_multiple() / s.vae.downscale) == 0,
                                  "latent height and width must be multiples of " +
                                      std::to_string(s.size_multiple() / s.vae.downscale));
                 F32Array out({x.shape(0), (py::ssize_t)s.unet.conv_out.c_out(), x.shape(2), x.shape(3)});
                 py::gil_scoped_release release;
                 models::UNetRunner r(s, x.shape(3), x.shape(2), n);
                 r.run(x.data(), t.data(), context.data(), out.mutable_data());
                 return out;
             },
             py::arg("x"), py::arg("t"), py::arg("context"),
             "the UNet's prediction (N, latent C, h, w) for its input (N, C, h, w) (C = 2 latent C + 1 to inpaint)")
        .def("decode",
             [](const SdModel& s, F32Array z, int64_t tile) {
                 check_shape(z, "latents", {1, (py::ssize_t)s.vae.latent_channels, -1, -1});
                 QUANTA_CHECK_ARG(tile == 0 || tile >= models::kVaeMinTile,
                                  "tile must be 0 (none) or at least " + std::to_string(models::kVaeMinTile) + " latents");
                 std::vector<float> out;
                 {
                     py::gil_scoped_release release;
                     out = models::decode_latents(s, z.data(), z.shape(3), z.shape(2), tile);
                 }
                 const py::ssize_t f = s.vae.downscale;
                 return new_array({1, 3, z.shape(2) * f, z.shape(3) * f}, out);
             },
             py::arg("z"), py::arg("tile") = 0,
             "the VAE decoder: unscaled latents (1, C, h, w) -> pixels (1, 3, H, W) in about [-1, 1]; tile > 0: "
             "in windows of at most tile x tile latents where the latents are larger")
        .def("encode",
             [](const SdModel& s, F32Array pixels) {
                 check_shape(pixels, "image", {1, 3, -1, -1});
                 const py::ssize_t f = s.vae.downscale;
                 QUANTA_CHECK_ARG(pixels.shape(2) % f == 0 && pixels.shape(3) % f == 0,
                                  "image height and width must be multiples of " + std::to_string(f));
                 std::vector<float> out;
                 {
                     py::gil_scoped_release release;
                     out = models::encode_image(s, pixels.data(), pixels.shape(3), pixels.shape(2));
                 }
                 return new_array({1, (py::ssize_t)s.vae.latent_channels, pixels.shape(2) / f, pixels.shape(3) / f}, out);
             },
             py::arg("pixels"), "the VAE encoder: pixels (1, 3, H, W) in [-1, 1] -> the latents' mean (unscaled)");

    py::class_<engine::ImageGenerator>(m, "ImageGenerator")
        .def(py::init([](std::shared_ptr<SdModel> model) { return new engine::ImageGenerator(std::move(model)); }),
             py::arg("model"), py::call_guard<py::gil_scoped_release>())
        .def("tokenize",
             [](const engine::ImageGenerator& g, const std::string& text) {
                 return g.tokenizer().encode(text, (int32_t)g.model().clip.n_ctx, true);
             },
             py::arg("text"))
        .def("generate",
             [](const engine::ImageGenerator& g, const std::string& prompt, const std::string& negative, int width,
                int height, int steps, float cfg_scale, const std::string& sampler, const std::string& scheduler,
                uint64_t seed, int clip_skip, int batch_size, std::optional<F32Array> latents,
                std::optional<F32Array> init_image, double strength, std::optional<F32Array> mask,
                py::object callback, int vae_tile) {
                 engine::ImageRequest r;
                 r.prompt = prompt;
                 r.negative_prompt = negative;
                 r.width = width;
                 r.height = height;
                 r.steps = steps;
                 r.cfg_scale = cfg_scale;
                 r.sampler = sampler;
                 r.scheduler = scheduler;
                 r.seed = seed;
                 r.clip_skip = clip_skip;
                 r.vae_tile = vae_tile;
                 r.batch_size = batch_size;
                 r.strength = strength;
                 if (latents) r.latents.assign(latents->data(), latents->data() + latents->size());
                 if (init_image) r.init_image.assign(init_image->data(), init_image->data() + init_image->size());
                 if (mask) r.mask.assign(mask->data(), mask->data() + mask->size());
                 if (!callback.is_none()) {
                     // Runs on this thread between steps, with the GIL taken back for the call.
                     r.callback = [&callback](int step, int total, const float* x, size_t n) {
                         py::gil_scoped_acquire gil;
                         F32Array copy({(py::ssize_t)n});
                         std::copy(x, x + n, copy.mutable_data());
                         callback(step, total, copy);
                     };
                 }
                 std::vector<engine::Image> images;
                 {
                     py::gil_scoped_release release;
                     images = g.generate(r);
                 }
                 py::list out;
                 for (const engine::Image& image : images) out.append(new_array({image.height, image.width, 3}, image.rgb));
                 return out;
             },
             py::arg("prompt"), py::arg("negative_prompt"), py::arg("width"), py::arg("height"), py::arg("steps"),
             py::arg("cfg_scale"), py::arg("sampler"), py::arg("scheduler"), py::arg("seed"), py::arg("clip_skip"),
             py::arg("batch_size"), py::arg("latents"), py::arg("init_image"), py::arg("strength"), py::arg("mask"),
             py::arg("callback"), py::arg("vae_tile") = engine::kAutoVaeTile,
             "batch_size images, each float32 (height, width, 3) in [0, 1]; init_image (height, width, 3) in [0, 1] "
             "for img2img, mask (height, width) for inpainting");
    // The engine's choices that quanta.Diffusion states and checks too.
    m.attr("SD_AUTO_VAE_TILE") = engine::kAutoVaeTile;
    m.attr("SD_VAE_WINDOW") = engine::kVaeAutoWindow;
    m.attr("SD_MAX_BATCH") = engine::kMaxImageBatch;
}

}  // namespace quanta::bindings
