// A seeded stream of standard-normal floats that is the same on every machine, compiler and thread count:
// diffusion needs it for the initial latents and the ancestral samplers' noise, so that a seed names one image.
// std::normal_distribution is not used because each standard library implements it differently.
//
// The stream is counter-based: number k depends only on (seed, k). Block b = k / 2 is Philox4x32-10
// (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11) of the counter {b_lo, b_hi, 0, 0}
// under the key {seed_lo, seed_hi}; its four words make two 53-bit uniforms u1 = (w0 | w1 << 32) >> 11 and
// u2 = (w2 | w3 << 32) >> 11 (u1 shifted into (0, 1] so its log is finite), and Box-Muller in double gives
// number 2b = r cos(2 pi u2), number 2b + 1 = r sin(2 pi u2) with r = sqrt(-2 ln u1), each rounded to float.
#pragma once

#include <cstddef>
#include <cstdint>

namespace quanta::sample {

class NormalRng {
public:
    explicit NormalRng(uint64_t seed) : seed_(seed) {}
    // The next n numbers of the stream.
    void fill_normal(float* out, size_t n);

private:
    uint64_t seed_;
    uint64_t next_ = 0;  // index of the next number to hand out
};

}  // namespace quanta::sample
