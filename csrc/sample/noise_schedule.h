// Stable Diffusion's noise schedules: from the training betas (the GGUF's sd.scheduler.betas) to the timesteps a
// run feeds the UNet and the noise levels it walks, for each sampler as the diffusers scheduler class it is named
// after computes them by default (diffusers 0.42), in the same float32/float64 steps, so that our trajectories
// equal diffusers' to float rounding:
//   euler    EulerDiscreteScheduler             "linspace" spacing, float timesteps, sigmas interpolated
//   euler_a  EulerAncestralDiscreteScheduler    "linspace" (diffusers has no Karras sigmas for it)
//   ddim     DDIMScheduler                      "leading" + steps_offset, set_alpha_to_one=False and
//                                               clip_sample=False as SD's scheduler_config.json sets them (the
//                                               class's clip_sample=True clamps x0 to [-1, 1], for pixel models)
//   dpmpp_2m DPMSolverMultistepScheduler        "linspace" over steps + 1 points, integer timesteps
//   lcm      LCMScheduler                       every (steps)th of its 50 distillation timesteps
// "karras" is use_karras_sigmas=True (rho 7 between the schedule's end sigmas), which diffusers offers for
// euler and dpmpp_2m only; other combinations are an InvalidArgument naming them.
#pragma once

#include <string>
#include <vector>

namespace quanta::sample {

enum class DiffusionSamplerKind { Euler, EulerA, Ddim, Dpmpp2m, Lcm };
enum class ScheduleKind { Discrete, Karras };

// "euler" | "euler_a" | "ddim" | "dpmpp_2m" | "lcm"; anything else is an InvalidArgument listing them.
DiffusionSamplerKind parse_diffusion_sampler(const std::string& name);
// "discrete" | "karras".
ScheduleKind parse_schedule(const std::string& name);
const char* diffusion_sampler_name(DiffusionSamplerKind kind);
const char* schedule_name(ScheduleKind kind);

// What the training schedule implies, in diffusers' float32: alphas_cumprod[t] = prod_{s <= t} (1 - betas[s])
// (torch.cumprod, which accumulates in double and rounds each product to float) and
// sigmas[t] = sqrt((1 - alphas_cumprod[t]) / alphas_cumprod[t]), increasing with t.
struct TrainingSchedule {
    TrainingSchedule(const std::vector<float>& betas, int steps_offset);
    int timesteps() const { return (int)alphas_cumprod.size(); }

    std::vector<float> alphas_cumprod;
    std::vector<float> sigmas;
    int steps_offset;  // added to "leading" timesteps (1 for SD)
};

// One run of `steps` steps.
struct StepSchedule {
    std::vector<float> timesteps;  // steps entries: what the UNet gets at each step (integers except euler's)
    // steps + 1 entries: the noise level sigma each step starts from, then the one the last step ends at. For
    // euler, euler_a and dpmpp_2m diffusers' scheduler.sigmas (ending at 0); ddim and lcm have none in
    // diffusers, so these are sqrt((1 - a) / a) at their timesteps' alphas_cumprod, ending at DDIM's final
    // alphas_cumprod[0] or at 0 for LCM, whose last step returns its denoised estimate.
    std::vector<float> sigmas;
    float init_noise_sigma;  // diffusers' scheduler.init_noise_sigma: unit noise times this is the first x
};

// steps outside what the sampler allows (1..training timesteps, and up to 50 for lcm) and unsupported
// sampler/schedule combinations are an InvalidArgument.
StepSchedule make_step_schedule(const TrainingSchedule& train, DiffusionSamplerKind kind, ScheduleKind schedule,
                                int steps);

}  // namespace quanta::sample
