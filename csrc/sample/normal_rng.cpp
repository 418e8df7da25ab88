// Philox4x32-10 and Box-Muller for NormalRng (normal_rng.h describes the stream).
#include "sample/normal_rng.h"

#include <array>
#include <cmath>

namespace quanta::sample {
namespace {

using Block = std::array<uint32_t, 4>;

// Philox4x32's multipliers and Weyl key increments, as Random123 defines them.
constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
constexpr int kRounds = 10;  // Random123's recommended count (all of BigCrush passes from 7)

Block philox4x32_10(Block ctr, uint32_t k0, uint32_t k1) {
    for (int r = 0; r < kRounds; ++r) {
        if (r > 0) {
            k0 += kWeyl0;
            k1 += kWeyl1;
        }
        const uint64_t p0 = (uint64_t)kMul0 * ctr[0], p1 = (uint64_t)kMul1 * ctr[2];
        ctr = {(uint32_t)(p1 >> 32) ^ ctr[1] ^ k0, (uint32_t)p1, (uint32_t)(p0 >> 32) ^ ctr[3] ^ k1, (uint32_t)p0};
    }
    return ctr;
}

// The pair of normals of block b.
std::array<float, 2> normal_pair(uint64_t seed, uint64_t b) {
    const Block w = philox4x32_10({(uint32_t)b, (uint32_t)(b >> 32), 0, 0}, (uint32_t)seed, (uint32_t)(seed >> 32));
    constexpr double kUlp53 = 1.0 / 9007199254740992.0;  // 2^-53: a 53-bit integer becomes a double exactly
    constexpr double kTwoPi = 6.283185307179586;         // 2 pi rounded to double (Python's math.tau)
    const double u1 = (double)((((uint64_t)w[1] << 32 | w[0]) >> 11) + 1) * kUlp53;  // (0, 1]
    const double u2 = (double)(((uint64_t)w[3] << 32 | w[2]) >> 11) * kUlp53;        // [0, 1)
    const double r = std::sqrt(-2.0 * std::log(u1));
    return {(float)(r * std::cos(kTwoPi * u2)), (float)(r * std::sin(kTwoPi * u2))};
}

}  // namespace

void NormalRng::fill_normal(float* out, size_t n) {
    for (size_t i = 0; i < n;) {
        const uint64_t k = next_ + i;
        const std::array<float, 2> pair = normal_pair(seed_, k >> 1);
        for (uint64_t j = k & 1; j < 2 && i < n; ++j) out[i++] = pair[j];
    }
    next_ += n;
}

}  // namespace quanta::sample
