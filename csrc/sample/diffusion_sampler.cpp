// Each step is the float32 expression of the diffusers 0.42 scheduler's step(), operation for operation and in
// its order: the per-step scalars (diffusers' 0-d float32 tensors) first, then the elementwise terms. The file
// is compiled with -ffp-contract=off (CMakeLists.txt), since a fused multiply-add rounds differently than
// torch's separate multiply and add.
#include "sample/diffusion_sampler.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace quanta::sample {
namespace {

constexpr float kLcmSigmaData = 0.5f;       // LCMScheduler's sigma_data, in its boundary-condition scalings
constexpr float kLcmTimestepScaling = 10.0f;  // LCMScheduler's default timestep_scaling

// DPMSolverMultistepScheduler._sigma_to_alpha_sigma_t and its lambda = log(alpha_t) - log(sigma_t); at sigma 0
// lambda is +inf, and the update then returns the data prediction, as in torch.
struct Vp {
    float alpha, sigma, lambda;
};
Vp vp(float s) {
    const float alpha = 1.0f / std::sqrt(s * s + 1.0f);
    const float sigma = s * alpha;
    return {alpha, sigma, std::log(alpha) - std::log(sigma)};
}

}  // namespace

Prediction parse_prediction(const std::string& name) {
    if (name == "epsilon") return Prediction::Epsilon;
    if (name == "v_prediction") return Prediction::V;
    fail(ErrorKind::InvalidArgument, "unknown prediction type \"" + name + "\" (expected epsilon or v_prediction)");
}

int first_step_for_strength(int steps, double strength) {
    QUANTA_CHECK_ARG(strength > 0 && strength <= 1, "strength must be in (0, 1]");
    const int run = std::min((int)(steps * strength), steps);
    QUANTA_CHECK_ARG(run >= 1, "strength " + std::to_string(strength) + " with " + std::to_string(steps) +
                                   " steps runs no step (int(steps * strength) is 0): raise either");
    return steps - run;
}

DiffusionSampler::DiffusionSampler(const std::vector<float>& betas, int steps_offset, Prediction prediction,
                                   DiffusionSamplerKind kind, ScheduleKind schedule, int steps, uint64_t seed)
    : train_(betas, steps_offset),
      schedule_(make_step_schedule(train_, kind, schedule, steps)),
      prediction_(prediction),
      kind_(kind),
      rng_(seed) {}

float DiffusionSampler::timestep(int i) const {
    QUANTA_CHECK_ARG(i >= 0 && i < steps(), "step " + std::to_string(i) + " is outside [0, " + std::to_string(steps()) + ")");
    return schedule_.timesteps[i];
}

float DiffusionSampler::input_scale(int i) const {
    QUANTA_CHECK_ARG(i >= 0 && i < steps(), "step " + std::to_string(i) + " is outside [0, " + std::to_string(steps()) + ")");
    if (kind_ != DiffusionSamplerKind::Euler && kind_ != DiffusionSamplerKind::EulerA) return 1.0f;
    const float s = schedule_.sigmas[i];
    return 1.0f / std::sqrt(s * s + 1.0f);
}

void DiffusionSampler::begin_at(int first) {
    QUANTA_CHECK_ARG(next_step_ == first_, "begin_at must come before the first step");
    QUANTA_CHECK_ARG(first >= 0 && first < steps(),
                     "first step " + std::to_string(first) + " is outside [0, " + std::to_string(steps()) + ")");
    first_ = next_step_ = first;
}

void DiffusionSampler::add_noise(int i, const float* x0, const float* noise, float* out, size_t n) const {
    QUANTA_CHECK_ARG(i >= 0 && i < steps(), "step " + std::to_string(i) + " is outside [0, " + std::to_string(steps()) + ")");
    const float sigma = schedule_.sigmas[i];
    if (kind_ == DiffusionSamplerKind::Euler || kind_ == DiffusionSamplerKind::EulerA) {
        for (size_t k = 0; k < n; ++k) out[k] = x0[k] + noise[k] * sigma;
        return;
    }
    float signal, level;  // out = signal x0 + level noise
    if (kind_ == DiffusionSamplerKind::Dpmpp2m) {
        const Vp at = vp(sigma);
        signal = at.alpha;
        level = at.sigma;
    } else {  // ddim and lcm, from alphas_cumprod at the step's timestep
        const float a = train_.alphas_cumprod[(int)schedule_.timesteps[i]];
        signal = std::sqrt(a);
        level = std::sqrt(1.0f - a);
    }
    for (size_t k = 0; k < n; ++k) out[k] = signal * x0[k] + level * noise[k];
}

void DiffusionSampler::step(int i, const float* model_output, float* x, size_t n) {
    QUANTA_CHECK_ARG(next_step_ < steps(), "all " + std::to_string(steps()) + " steps have run");
    QUANTA_CHECK_ARG(i == next_step_, "steps run in order: expected step " + std::to_string(next_step_) + ", got " +
                                          std::to_string(i));
    QUANTA_CHECK_ARG(i == first_ || n == n_, "step " + std::to_string(i) + " has " + std::to_string(n) +
                                            " values, the earlier steps " + std::to_string(n_));
    n_ = n;
    switch (kind_) {
        case DiffusionSamplerKind::Euler: step_euler(i, model_output, x); break;
        case DiffusionSamplerKind::EulerA: step_euler_a(i, model_output, x); break;
        case DiffusionSamplerKind::Ddim: step_ddim(i, model_output, x); break;
        case DiffusionSamplerKind::Dpmpp2m: step_dpmpp_2m(i, model_output, x); break;
        case DiffusionSamplerKind::Lcm: step_lcm(i, model_output, x); break;
    }
    ++next_step_;
}

// EulerDiscreteScheduler.step with s_churn 0 (so sigma_hat = sigma): x0 from the output, then one Euler step of
// dx/dsigma = (x - x0) / sigma to the next sigma.
void DiffusionSampler::step_euler(int i, const float* out, float* x) {
    const float sigma = schedule_.sigmas[i], dt = schedule_.sigmas[i + 1] - sigma;
    const float v_out = -sigma / std::sqrt(sigma * sigma + 1.0f), v_skip = sigma * sigma + 1.0f;
    for (size_t k = 0; k < n_; ++k) {
        const float x0 = prediction_ == Prediction::Epsilon ? x[k] - sigma * out[k] : out[k] * v_out + x[k] / v_skip;
        const float derivative = (x[k] - x0) / sigma;
        x[k] = x[k] + derivative * dt;
    }
}

// EulerAncestralDiscreteScheduler.step: an Euler step down to sigma_down, then noise of sigma_up. diffusers
// draws the noise at every step, the last too (where sigma_up is 0), and so does this.
void DiffusionSampler::step_euler_a(int i, const float* out, float* x) {
    const float from = schedule_.sigmas[i], to = schedule_.sigmas[i + 1];
    const float up = std::sqrt(to * to * (from * from - to * to) / (from * from));
    const float down = std::sqrt(to * to - up * up);
    const float dt = down - from;
    const float v_out = -from / std::sqrt(from * from + 1.0f), v_skip = from * from + 1.0f;
    noise_.resize(n_);
    rng_.fill_normal(noise_.data(), n_);
    for (size_t k = 0; k < n_; ++k) {
        const float x0 = prediction_ == Prediction::Epsilon ? x[k] - from * out[k] : out[k] * v_out + x[k] / v_skip;
        const float derivative = (x[k] - x0) / from;
        const float moved = x[k] + derivative * dt;
        x[k] = moved + noise_[k] * up;
    }
}

// DDIMScheduler.step with eta 0 and clip_sample off: x0 and eps from the output at alphas_cumprod[t], then
// x at the previous timestep t - T // steps (alphas_cumprod[0] below 0, set_alpha_to_one=False).
void DiffusionSampler::step_ddim(int i, const float* out, float* x) {
    const int t = (int)schedule_.timesteps[i];
    const int prev = t - train_.timesteps() / steps();
    const float a = train_.alphas_cumprod[t];
    const float a_prev = train_.alphas_cumprod[prev >= 0 ? prev : 0];
    const float b = 1.0f - a;
    const float sqrt_a = std::sqrt(a), sqrt_b = std::sqrt(b);
    const float sqrt_a_prev = std::sqrt(a_prev);
    // (1 - a_prev - std_dev_t^2) ** 0.5 with std_dev_t = eta * ... = 0
    const float direction = std::sqrt(1.0f - a_prev);
    for (size_t k = 0; k < n_; ++k) {
        float x0, eps;
        if (prediction_ == Prediction::Epsilon) {
            x0 = (x[k] - sqrt_b * out[k]) / sqrt_a;
            eps = out[k];
        } else {
            x0 = sqrt_a * x[k] - sqrt_b * out[k];
            eps = sqrt_a * out[k] + sqrt_b * x[k];
        }
        x[k] = sqrt_a_prev * x0 + direction * eps;
    }
}

// DPMSolverMultistepScheduler.step, dpmsolver++ order 2, midpoint, lower_order_final: the output becomes a
// data prediction x0; the first step and the last (to sigma 0, final_sigmas_type "zero") are first-order
// updates, the others second-order from this x0 and the previous step's.
void DiffusionSampler::step_dpmpp_2m(int i, const float* out, float* x) {
    const Vp s0 = vp(schedule_.sigmas[i]), t = vp(schedule_.sigmas[i + 1]);
    prev_x0_.resize(n_);
    const bool first_order = i == first_ || i == steps() - 1;
    const float h = t.lambda - s0.lambda;
    const float x_coef = t.sigma / s0.sigma;
    const float d0_coef = t.alpha * (std::exp(-h) - 1.0f);
    float d1_scale = 0, d1_coef = 0;
    if (!first_order) {
        const Vp s1 = vp(schedule_.sigmas[i - 1]);
        const float r0 = (s0.lambda - s1.lambda) / h;
        d1_scale = 1.0f / r0;
        d1_coef = 0.5f * (t.alpha * (std::exp(-h) - 1.0f));
    }
    for (size_t k = 0; k < n_; ++k) {
        const float x0 = prediction_ == Prediction::Epsilon ? (x[k] - s0.sigma * out[k]) / s0.alpha
                                                            : s0.alpha * x[k] - s0.sigma * out[k];
        if (first_order) {
            x[k] = x_coef * x[k] - d0_coef * x0;
        } else {
            const float d1 = d1_scale * (x0 - prev_x0_[k]);
            x[k] = x_coef * x[k] - d0_coef * x0 - d1_coef * d1;
        }
        prev_x0_[k] = x0;
    }
}

// LCMScheduler.step: the consistency model's denoised estimate c_out * x0 + c_skip * x, then (except at the
// last step, which returns it) renoised to the next timestep with fresh noise.
void DiffusionSampler::step_lcm(int i, const float* out, float* x) {
    const int t = (int)schedule_.timesteps[i];
    const bool last = i == steps() - 1;
    const int prev = last ? t : (int)schedule_.timesteps[i + 1];
    const float a = train_.alphas_cumprod[t], a_prev = train_.alphas_cumprod[prev];
    const float b = 1.0f - a, b_prev = 1.0f - a_prev;
    const float sqrt_a = std::sqrt(a), sqrt_b = std::sqrt(b);
    const float scaled = (float)t * kLcmTimestepScaling;
    const float c_skip = kLcmSigmaData * kLcmSigmaData / (scaled * scaled + kLcmSigmaData * kLcmSigmaData);
    const float c_out = scaled / std::sqrt(scaled * scaled + kLcmSigmaData * kLcmSigmaData);
    const float sqrt_a_prev = std::sqrt(a_prev), sqrt_b_prev = std::sqrt(b_prev);
    if (!last) {
        noise_.resize(n_);
        rng_.fill_normal(noise_.data(), n_);
    }
    for (size_t k = 0; k < n_; ++k) {
        const float x0 = prediction_ == Prediction::Epsilon ? (x[k] - sqrt_b * out[k]) / sqrt_a
                                                            : sqrt_a * x[k] - sqrt_b * out[k];
        const float denoised = c_out * x0 + c_skip * x[k];
        x[k] = last ? denoised : sqrt_a_prev * denoised + sqrt_b_prev * noise_[k];
    }
}

}  // namespace quanta::sample
