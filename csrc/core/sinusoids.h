// The sinusoidal timestep embedding of diffusion UNets, as diffusers'
// get_timestep_embedding computes it for UNet2DConditionModel: one function
// that both the op's reference and the CPU kernel call, so that they round
// alike. It follows diffusers' float32 steps (an f32 exponent, f32 frequency,
// f32 angle) so that an angle near 1000 radians lands where torch's does.
#pragma once

#include <cmath>
#include <cstdint>

namespace quanta {

// The longest period of the sinusoids: diffusers' default max_period, which
// every Stable Diffusion UNet uses.
constexpr double kTimestepMaxPeriod = 10000.0;

// out[0..dim) for timestep t. Frequencies exp(-ln(max_period) * i / (half - shift)),
// i < half = dim / 2; sines then cosines, or cosines first (flip_sin_to_cos);
// an odd dim ends with a zero.
inline void timestep_embedding_row(float t, int dim, bool cos_first, float shift, float* out) {
    const int half = dim / 2;
    const float log_period = (float)-std::log(kTimestepMaxPeriod);
    for (int i = 0; i < half; ++i) {
        const float exponent = log_period * (float)i / ((float)half - shift);
        const float angle = t * (float)std::exp((double)exponent);
        const float s = (float)std::sin((double)angle), c = (float)std::cos((double)angle);
        out[i] = cos_first ? c : s;
        out[half + i] = cos_first ? s : c;
    }
    if (dim % 2) out[dim - 1] = 0.0f;
}

}  // namespace quanta
