// Diffusion sampler bindings: quanta._core.DiffusionSampler (the noise schedules and steps of
// csrc/sample/diffusion_sampler.h, tested against diffusers' schedulers) and normal_noise, the seeded stream
// the pipeline draws its initial latents from.
#include "bindings.h"
#include "base/error.h"
#include "sample/diffusion_sampler.h"
#include "sample/normal_rng.h"

namespace quanta::bindings {
namespace {

using sample::DiffusionSampler;

py::array_t<float> to_numpy(const std::vector<float>& v) {
    py::array_t<float> out((py::ssize_t)v.size());
    std::copy(v.begin(), v.end(), out.mutable_data());
    return out;
}

// x is advanced in place, so it must be the caller's own float32 buffer, never a converted copy.
float* writable_floats(py::array& x) {
    const bool ok = py::isinstance<py::array_t<float, py::array::c_style>>(x) && x.writeable();
    QUANTA_CHECK_ARG(ok, "x must be a C-contiguous, writeable float32 array");
    return static_cast<float*>(x.mutable_data());
}

}  // namespace

void bind_diffusion_sampler(py::module_& m) {
    py::class_<DiffusionSampler>(m, "DiffusionSampler",
                                 "One diffusion run's schedule and steps, as the diffusers scheduler of the same "
                                 "name computes them (euler, euler_a, ddim, dpmpp_2m, lcm; discrete or karras).")
        .def(py::init([](py::array_t<float, py::array::c_style | py::array::forcecast> betas, int steps_offset,
                         const std::string& prediction, const std::string& sampler, const std::string& scheduler,
                         int steps, uint64_t seed) {
                 QUANTA_CHECK_ARG(betas.ndim() == 1, "betas must be a 1-D array");
                 const std::vector<float> b(betas.data(), betas.data() + betas.size());
                 return std::make_unique<DiffusionSampler>(b, steps_offset, sample::parse_prediction(prediction),
                                                           sample::parse_diffusion_sampler(sampler),
                                                           sample::parse_schedule(scheduler), steps, seed);
             }),
             py::arg("betas"), py::arg("steps_offset"), py::arg("prediction"), py::arg("sampler"),
             py::arg("scheduler"), py::arg("steps"), py::arg("seed"),
             "betas: one per training timestep; prediction: epsilon | v_prediction; sampler: euler | euler_a | "
             "ddim | dpmpp_2m | lcm; scheduler: discrete | karras.")
        .def_property_readonly("steps", &DiffusionSampler::steps)
        .def_property_readonly("timesteps", [](const DiffusionSampler& s) { return to_numpy(s.timesteps()); },
                               "float32 (steps,): what the UNet gets at each step (diffusers' scheduler.timesteps).")
        .def_property_readonly("sigmas", [](const DiffusionSampler& s) { return to_numpy(s.sigmas()); },
                               "float32 (steps + 1,): the noise level each step starts from, then where the last ends.")
        .def_property_readonly("init_noise_sigma", &DiffusionSampler::init_noise_sigma,
                               "The initial unit noise is multiplied by this (diffusers' init_noise_sigma).")
        .def("input_scale", &DiffusionSampler::input_scale, py::arg("i"),
             "The factor the UNet's input is scaled by at step i (diffusers' scale_model_input).")
        .def("fill_normal",
             [](DiffusionSampler& s, py::ssize_t n) {
                 QUANTA_CHECK_ARG(n >= 0, "n must not be negative");
                 py::array_t<float> out(n);
                 s.fill_normal(out.mutable_data(), (size_t)n);
                 return out;
             },
             py::arg("n"), "The next n numbers of the sampler's normal stream (its ancestral noise continues it).")
        .def("step",
             [](DiffusionSampler& s, int i, py::array_t<float, py::array::c_style | py::array::forcecast> model_output,
                py::array x) {
                 float* px = writable_floats(x);
                 QUANTA_CHECK_ARG(model_output.size() == x.size(), "model_output has " + std::to_string(model_output.size()) +
                                                                       " values, x " + std::to_string(x.size()));
                 s.step(i, model_output.data(), px, (size_t)x.size());
                 return x;
             },
             py::arg("i"), py::arg("model_output"), py::arg("x"),
             "Advances x (float32, in place, and returned) from the model output (eps or v) for step i's scaled "
             "input, as diffusers' scheduler.step(...).prev_sample.");
    m.def(
        "normal_noise",
        [](uint64_t seed, py::ssize_t n) {
            QUANTA_CHECK_ARG(n >= 0, "n must not be negative");
            py::array_t<float> out(n);
            sample::NormalRng(seed).fill_normal(out.mutable_data(), (size_t)n);
            return out;
        },
        py::arg("seed"), py::arg("n"), "The first n standard-normal float32 numbers of seed's stream.");
}

}  // namespace quanta::bindings
