// The diffusion sampling loop's arithmetic: a DiffusionSampler walks one run's steps (noise_schedule.h) and
// advances the latents in place from each model output, as the diffusers scheduler it is named after does in
// scheduler.step(...).prev_sample, in the same float32 operations in the same order. The caller owns the model:
//
//   DiffusionSampler s(betas, steps_offset, prediction, kind, schedule, steps, seed);
//   s.fill_normal(x, n); for (v in x) v *= s.init_noise_sigma();            // the initial latents
//   for (int i = 0; i < s.steps(); ++i) {
//       out = unet(x * s.input_scale(i), s.timestep(i));                    // eps or v (after CFG)
//       s.step(i, out, x, n);
//   }
//
// One seeded NormalRng gives the initial noise and then the ancestral noise (euler_a, lcm), drawn whenever
// diffusers draws, so one seed names one image, as one torch.Generator does in a diffusers pipeline.
//
// img2img and inpainting run only the schedule's last steps: begin_at(first_step_for_strength(steps, strength)),
// with the start latents add_noise(first, x0, noise) instead of the scaled noise, as diffusers'
// StableDiffusionImg2ImgPipeline does with get_timesteps and scheduler.add_noise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sample/noise_schedule.h"
#include "sample/normal_rng.h"

namespace quanta::sample {

enum class Prediction { Epsilon, V };
// "epsilon" | "v_prediction", diffusers' prediction_type names (and the GGUF's sd.prediction_type).
Prediction parse_prediction(const std::string& name);

// diffusers' get_timesteps: a run of `steps` at img2img `strength` in (0, 1] skips the first
// steps - int(steps * strength) steps. A strength outside (0, 1], or one that leaves no step, is an InvalidArgument.
int first_step_for_strength(int steps, double strength);

class DiffusionSampler {
public:
    // betas: one per training timestep (1000 for SD); invalid steps or combinations are an InvalidArgument.
    DiffusionSampler(const std::vector<float>& betas, int steps_offset, Prediction prediction,
                     DiffusionSamplerKind kind, ScheduleKind schedule, int steps, uint64_t seed);

    int steps() const { return (int)schedule_.timesteps.size(); }
    // diffusers' scheduler.init_noise_sigma: the initial unit noise is multiplied by it.
    float init_noise_sigma() const { return schedule_.init_noise_sigma; }
    float timestep(int i) const;  // what the UNet gets at step i (diffusers' scheduler.timesteps[i])
    // The factor diffusers' scale_model_input applies at step i: 1 / sqrt(sigma^2 + 1) for euler and euler_a
    // (diffusers divides by the square root; the product differs by at most an ulp), 1 for the others.
    float input_scale(int i) const;
    const std::vector<float>& timesteps() const { return schedule_.timesteps; }
    const std::vector<float>& sigmas() const { return schedule_.sigmas; }  // StepSchedule::sigmas

    // The next n numbers of the sampler's normal stream (for the initial latents).
    void fill_normal(float* out, size_t n) { rng_.fill_normal(out, n); }
    // Starts the run at step `first` instead of 0 (diffusers' set_begin_index); call before any step.
    void begin_at(int first);
    int first_step() const { return first_; }
    // diffusers' scheduler.add_noise: x0 (n floats) at step i's noise level with unit noise, into out
    // (x0 + sigma noise for the sigma samplers, sqrt(a) x0 + sqrt(1 - a) noise for ddim and lcm).
    void add_noise(int i, const float* x0, const float* noise, float* out, size_t n) const;
    // Advances x (n floats) from the model output for step i's scaled input. Steps run in order, first_step()
    // first, each once, with the same n.
    void step(int i, const float* model_output, float* x, size_t n);

private:
    void step_euler(int i, const float* out, float* x);
    void step_euler_a(int i, const float* out, float* x);
    void step_ddim(int i, const float* out, float* x);
    void step_dpmpp_2m(int i, const float* out, float* x);
    void step_lcm(int i, const float* out, float* x);

    TrainingSchedule train_;
    StepSchedule schedule_;
    Prediction prediction_;
    DiffusionSamplerKind kind_;
    NormalRng rng_;
    int first_ = 0;
    int next_step_ = 0;
    size_t n_ = 0;
    std::vector<float> noise_;     // euler_a and lcm: the step's ancestral noise
    std::vector<float> prev_x0_;   // dpmpp_2m: the previous step's data prediction (its second-order term)
};

}  // namespace quanta::sample
