// Timesteps and sigmas as diffusers 0.42's schedulers compute them (noise_schedule.h). Each helper mirrors one
// numpy or torch expression of diffusers and keeps its precision: float32 where diffusers holds torch float32
// tensors or float32 arrays, double where numpy computes in float64 (np.linspace, np.interp, the Karras ramp,
// _sigma_to_t), rounded to float where diffusers casts.
#include "sample/noise_schedule.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace quanta::sample {
namespace {

constexpr const char* kSamplerNames = "euler, euler_a, ddim, dpmpp_2m, lcm";
constexpr const char* kScheduleNames = "discrete, karras";
constexpr double kKarrasRho = 7.0;        // Karras et al. 2022's rho, which diffusers fixes
constexpr int kLcmOriginalSteps = 50;     // LCMScheduler's original_inference_steps: the distillation schedule

// np.linspace(start, stop, num, endpoint) in float64: i * step + start, the last point exactly stop.
std::vector<double> np_linspace(double start, double stop, int num, bool endpoint) {
    const int div = endpoint ? num - 1 : num;
    const double delta = stop - start;
    std::vector<double> y(num);
    for (int i = 0; i < num; ++i) y[i] = (div > 0 ? (double)i * (delta / div) : (double)i * delta) + start;
    if (endpoint && num > 1) y[num - 1] = stop;
    return y;
}

// np.interp(x, arange(len(fp)), fp) in float64.
double np_interp(double x, const std::vector<float>& fp) {
    const int last = (int)fp.size() - 1;
    if (x <= 0) return fp[0];
    if (x >= last) return fp[last];
    const int j = (int)std::floor(x);
    const double slope = (double)fp[j + 1] - (double)fp[j];  // over xp[j + 1] - xp[j] = 1
    return slope * (x - j) + fp[j];
}

// diffusers' _sigma_to_t: the fractional timestep whose log sigma interpolates linearly to log(sigma), between
// the last training log sigma at or below it and the next (the cumsum/argmax of the numpy code).
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas) {
    const double log_sigma = std::log(std::max(sigma, 1e-10));  // diffusers' floor keeps log finite at sigma 0
    const int n = (int)log_sigmas.size();
    int count = 0, best = -1, argmax = 0;
    for (int j = 0; j < n; ++j) {
        count += log_sigma - (double)log_sigmas[j] >= 0;
        if (count > best) best = count, argmax = j;
    }
    const int low = std::min(argmax, n - 2), high = low + 1;
    const double lo = log_sigmas[low], hi = log_sigmas[high];
    const double w = std::clamp((lo - log_sigma) / (lo - hi), 0.0, 1.0);
    return (1 - w) * low + w * high;
}

// _convert_to_karras: rho-spaced between sigma_max and sigma_min, in float64.
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int steps) {
    const std::vector<double> ramp = np_linspace(0, 1, steps, true);
    const double min_inv_rho = std::pow(sigma_min, 1 / kKarrasRho), max_inv_rho = std::pow(sigma_max, 1 / kKarrasRho);
    std::vector<double> s(steps);
    for (int i = 0; i < steps; ++i) s[i] = std::pow(max_inv_rho + ramp[i] * (min_inv_rho - max_inv_rho), kKarrasRho);
    return s;
}

std::vector<float> log_of(const std::vector<float>& sigmas) {  // np.log of a float32 array stays float32
    std::vector<float> out(sigmas.size());
    for (size_t i = 0; i < sigmas.size(); ++i) out[i] = std::log(sigmas[i]);
    return out;
}

std::vector<float> to_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

// EulerDiscreteScheduler / EulerAncestralDiscreteScheduler: "linspace" float32 timesteps from T-1 down to 0,
// sigmas interpolated at them; Karras replaces the sigmas and maps each back to a fractional timestep. One step
// is np.linspace(0, T-1, 1) = [0]: diffusers runs it at timestep 0 from sigma 0.029, and so do we.
StepSchedule euler(const TrainingSchedule& train, ScheduleKind schedule, int steps) {
    const int T = train.timesteps();
    const std::vector<double> grid = np_linspace(0, T - 1, steps, true);
    StepSchedule s;
    for (int i = steps - 1; i >= 0; --i) s.timesteps.push_back((float)grid[i]);
    std::vector<double> sigmas;
    for (float t : s.timesteps) sigmas.push_back(np_interp(t, train.sigmas));
    if (schedule == ScheduleKind::Karras) {
        // The ends are the interpolated sigmas' (at T-1 and 0, or both at 0 for one step), not the training ones.
        sigmas = karras_sigmas(sigmas.back(), sigmas.front(), steps);
        const std::vector<float> log_sigmas = log_of(train.sigmas);
        for (int i = 0; i < steps; ++i) s.timesteps[i] = (float)sigma_to_t(sigmas[i], log_sigmas);
    }
    s.sigmas = to_float(sigmas);
    s.sigmas.push_back(0);  // final_sigmas_type "zero"
    // "linspace" spacing: init_noise_sigma is the largest sigma (sqrt(sigma^2 + 1) only for "leading").
    s.init_noise_sigma = *std::max_element(s.sigmas.begin(), s.sigmas.end());
    return s;
}

// DPMSolverMultistepScheduler: "linspace" over steps + 1 points of [0, T-1], rounded, the last (0) dropped;
// Karras sigmas span the training sigmas' ends and their timesteps are rounded too.
StepSchedule dpmpp_2m(const TrainingSchedule& train, ScheduleKind schedule, int steps) {
    const int T = train.timesteps();
    const std::vector<double> grid = np_linspace(0, T - 1, steps + 1, true);
    StepSchedule s;
    if (schedule == ScheduleKind::Karras) {
        const std::vector<double> sigmas = karras_sigmas(train.sigmas.front(), train.sigmas.back(), steps);
        const std::vector<float> log_sigmas = log_of(train.sigmas);
        for (double sigma : sigmas) s.timesteps.push_back((float)std::nearbyint(sigma_to_t(sigma, log_sigmas)));
        s.sigmas = to_float(sigmas);
    } else {
        for (int i = steps; i >= 1; --i) {
            const int t = (int)std::nearbyint(grid[i]);  // np.round: halves to even, as nearbyint
            s.timesteps.push_back((float)t);
            s.sigmas.push_back(train.sigmas[t]);
        }
    }
    s.sigmas.push_back(0);
    s.init_noise_sigma = 1;  // it steps x = alpha_t x0 + sigma_t eps, not x0 + sigma eps
    return s;
}

// DDIMScheduler: "leading" spacing, k * (T // steps) + steps_offset.
StepSchedule ddim(const TrainingSchedule& train, int steps) {
    const int T = train.timesteps(), ratio = T / steps;
    StepSchedule s;
    for (int k = steps - 1; k >= 0; --k) {
        const int t = k * ratio + train.steps_offset;
        QUANTA_CHECK_ARG(t < T, "ddim with " + std::to_string(steps) + " steps and steps_offset " +
                                    std::to_string(train.steps_offset) + " would start at timestep " + std::to_string(t) +
                                    ", outside the " + std::to_string(T) + " training timesteps");
        s.timesteps.push_back((float)t);
        s.sigmas.push_back(train.sigmas[t]);
    }
    const int prev = (int)s.timesteps.back() - ratio;
    s.sigmas.push_back(train.sigmas[prev >= 0 ? prev : 0]);  // set_alpha_to_one=False: final alpha is alphas_cumprod[0]
    s.init_noise_sigma = 1;
    return s;
}

// LCMScheduler: its 50 distillation timesteps (k - 1, 2k - 1, ..., 50k - 1 with k = T // 50), descending,
// taken at floor(linspace(0, 50, steps, endpoint=False)).
StepSchedule lcm(const TrainingSchedule& train, int steps) {
    const int T = train.timesteps();
    QUANTA_CHECK_ARG(T >= kLcmOriginalSteps, "lcm needs at least " + std::to_string(kLcmOriginalSteps) +
                                                 " training timesteps, the schedule has " + std::to_string(T));
    QUANTA_CHECK_ARG(steps <= kLcmOriginalSteps, "lcm takes at most " + std::to_string(kLcmOriginalSteps) +
                                                     " steps (its distillation schedule), not " + std::to_string(steps));
    const int k = T / kLcmOriginalSteps;
    StepSchedule s;
    for (double at : np_linspace(0, kLcmOriginalSteps, steps, false)) {
        const int t = (kLcmOriginalSteps - (int)std::floor(at)) * k - 1;
        s.timesteps.push_back((float)t);
        s.sigmas.push_back(train.sigmas[t]);
    }
    s.sigmas.push_back(0);
    s.init_noise_sigma = 1;
    return s;
}

}  // namespace

DiffusionSamplerKind parse_diffusion_sampler(const std::string& name) {
    if (name == "euler") return DiffusionSamplerKind::Euler;
    if (name == "euler_a") return DiffusionSamplerKind::EulerA;
    if (name == "ddim") return DiffusionSamplerKind::Ddim;
    if (name == "dpmpp_2m") return DiffusionSamplerKind::Dpmpp2m;
    if (name == "lcm") return DiffusionSamplerKind::Lcm;
    fail(ErrorKind::InvalidArgument, "unknown sampler \"" + name + "\" (expected one of " + kSamplerNames + ")");
}

ScheduleKind parse_schedule(const std::string& name) {
    if (name == "discrete") return ScheduleKind::Discrete;
    if (name == "karras") return ScheduleKind::Karras;
    fail(ErrorKind::InvalidArgument, "unknown scheduler \"" + name + "\" (expected one of " + kScheduleNames + ")");
}

const char* diffusion_sampler_name(DiffusionSamplerKind kind) {
    switch (kind) {
        case DiffusionSamplerKind::Euler: return "euler";
        case DiffusionSamplerKind::EulerA: return "euler_a";
        case DiffusionSamplerKind::Ddim: return "ddim";
        case DiffusionSamplerKind::Dpmpp2m: return "dpmpp_2m";
        case DiffusionSamplerKind::Lcm: return "lcm";
    }
    fail(ErrorKind::Internal, "unhandled sampler kind");
}

const char* schedule_name(ScheduleKind kind) { return kind == ScheduleKind::Karras ? "karras" : "discrete"; }

TrainingSchedule::TrainingSchedule(const std::vector<float>& betas, int steps_offset_) : steps_offset(steps_offset_) {
    const int T = (int)betas.size();
    // sigma_to_t interpolates between two neighbouring training sigmas.
    QUANTA_CHECK_ARG(T >= 2, "the noise schedule needs at least 2 betas, got " + std::to_string(T));
    QUANTA_CHECK_ARG(steps_offset >= 0 && steps_offset < T,
                     "steps_offset " + std::to_string(steps_offset) + " is outside [0, " + std::to_string(T) + ")");
    alphas_cumprod.resize(T);
    sigmas.resize(T);
    double product = 1;  // torch.cumprod's CPU accumulator is double even for float32
    for (int t = 0; t < T; ++t) {
        QUANTA_CHECK_ARG(betas[t] > 0 && betas[t] < 1, "beta " + std::to_string(t) + " is " +
                                                           std::to_string(betas[t]) + ", not in (0, 1)");
        product *= (double)(1.0f - betas[t]);
        alphas_cumprod[t] = (float)product;
        sigmas[t] = std::sqrt((1.0f - alphas_cumprod[t]) / alphas_cumprod[t]);
    }
}

StepSchedule make_step_schedule(const TrainingSchedule& train, DiffusionSamplerKind kind, ScheduleKind schedule,
                                int steps) {
    const std::string what = std::string(diffusion_sampler_name(kind)) + " with the " + schedule_name(schedule) + " scheduler";
    QUANTA_CHECK_ARG(steps >= 1 && steps <= train.timesteps(),
                     what + ": steps must be in [1, " + std::to_string(train.timesteps()) + "] (the training timesteps), got " +
                         std::to_string(steps));
    QUANTA_CHECK_ARG(schedule != ScheduleKind::Karras || kind == DiffusionSamplerKind::Euler ||
                         kind == DiffusionSamplerKind::Dpmpp2m,
                     what + " is not supported: diffusers offers Karras sigmas for euler and dpmpp_2m only");
    switch (kind) {
        case DiffusionSamplerKind::Euler:
        case DiffusionSamplerKind::EulerA: return euler(train, schedule, steps);
        case DiffusionSamplerKind::Dpmpp2m: return dpmpp_2m(train, schedule, steps);
        case DiffusionSamplerKind::Ddim: return ddim(train, steps);
        case DiffusionSamplerKind::Lcm: return lcm(train, steps);
    }
    fail(ErrorKind::Internal, "unhandled sampler kind");
}

}  // namespace quanta::sample
