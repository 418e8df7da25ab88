// Instruction-mix probe for the AVX2 GEMM tile (csrc/cpu/gemm_avx2_impl.inc):
// how many vpmaddubsw a cycle this core sustains alone and next to each of the
// other instructions the tile issues, so that a tile design can be judged by
// the ports it shares before it is written. Each mix is 16 independent copies
// in inline asm, so the compiler cannot fold or reorder them; the clock comes
// from a chain of dependent adds (one a cycle on every x86 core since P6).
//
//     cmake ... -DQUANTA_KERNEL_BENCH=ON && ninja avx2_mix && ./avx2_mix
//
// What it showed on an AMD EPYC Zen 4 (bench/README.md, issue 16 session 4):
// vpmaddubsw runs 2 a cycle alone, but vpmaddwd, vpsignb, vpaddsw and FMA all
// share its two pipes (about 1 pair a cycle each); vpaddw does not, yet a
// vpmaddubsw + vpaddw pair peaks near 1.5 a cycle, and the tile's step (one
// weight load, four broadcasts, four of each) near 1.0, where the tile runs.
// Two octets against two rows ran 15-25% faster here, but as a tile it gained
// only 3-5% on q4_0/q4_k/q5_0 and lost 5-9% on q8_0/q5_k/q6_k, so the tile
// keeps its shape.
#include <algorithm>
#include <chrono>
#include <cstdio>

namespace {

constexpr long kIterations = 20'000'000;

template <typename Body>
double per_second(Body body) {
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < kIterations; ++i) body();
    return kIterations / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Cycles a second: ten dependent adds per iteration, the faster of two runs (the first may find the core
// still clocking up).
double clock_hz() {
    long x = 0;
    double best = 0;
    for (int run = 0; run < 2; ++run)
        best = std::max(best, 10 * per_second([&] { asm volatile(".rept 10\n add $1, %0\n .endr" : "+r"(x)); }));
    return best;
}

alignas(64) char g_buffer[4096];

// `count` vpmaddubsw per iteration of body, reported per cycle.
template <typename Body>
void report(const char* name, int count, double hz, Body body) {
    std::printf("%-58s %.2f vpmaddubsw a cycle\n", name, count * per_second(body) / hz);
}

#define CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12"

}  // namespace

int main() {
    if (!__builtin_cpu_supports("avx2")) {
        std::printf("avx2_mix: this CPU has no AVX2\n");
        return 0;
    }
    const double hz = clock_hz();
    std::printf("clock %.2f GHz (dependent adds)\n", hz / 1e9);
    const char* b = g_buffer;
    report("vpmaddubsw alone", 16, hz, [&] {
        asm volatile(".rept 4\n vpmaddubsw %%ymm14,%%ymm15,%%ymm0\n vpmaddubsw %%ymm14,%%ymm15,%%ymm1\n"
                     " vpmaddubsw %%ymm14,%%ymm15,%%ymm2\n vpmaddubsw %%ymm14,%%ymm15,%%ymm3\n .endr" ::: CLOBBERS);
    });
    report("+ vpmaddwd (independent)", 16, hz, [&] {
        asm volatile(".rept 16\n vpmaddubsw %%ymm14,%%ymm15,%%ymm0\n vpmaddwd %%ymm14,%%ymm15,%%ymm1\n .endr" ::: CLOBBERS);
    });
    report("+ vpsignb (independent)", 16, hz, [&] {
        asm volatile(".rept 16\n vpmaddubsw %%ymm14,%%ymm15,%%ymm0\n vpsignb %%ymm14,%%ymm15,%%ymm1\n .endr" ::: CLOBBERS);
    });
    report("+ vfmadd231ps (independent)", 16, hz, [&] {
        asm volatile(".rept 4\n vpmaddubsw %%ymm14,%%ymm15,%%ymm0\n vfmadd231ps %%ymm14,%%ymm15,%%ymm8\n"
                     " vpmaddubsw %%ymm14,%%ymm15,%%ymm1\n vfmadd231ps %%ymm14,%%ymm15,%%ymm9\n"
                     " vpmaddubsw %%ymm14,%%ymm15,%%ymm2\n vfmadd231ps %%ymm14,%%ymm15,%%ymm10\n"
                     " vpmaddubsw %%ymm14,%%ymm15,%%ymm3\n vfmadd231ps %%ymm14,%%ymm15,%%ymm11\n .endr" ::: CLOBBERS);
    });
    report("+ vpaddw (independent)", 16, hz, [&] {
        asm volatile(".rept 16\n vpmaddubsw %%ymm14,%%ymm15,%%ymm0\n vpaddw %%ymm14,%%ymm15,%%ymm1\n .endr" ::: CLOBBERS);
    });
    report("+ vpaddsw into 4 sums", 16, hz, [&] {
        asm volatile(".rept 4\n vpmaddubsw %%ymm14,%%ymm15,%%ymm0\n vpaddsw %%ymm0,%%ymm8,%%ymm8\n"
                     " vpmaddubsw %%ymm14,%%ymm15,%%ymm1\n vpaddsw %%ymm1,%%ymm9,%%ymm9\n"
                     " vpmaddubsw %%ymm14,%%ymm15,%%ymm2\n vpaddsw %%ymm2,%%ymm10,%%ymm10\n"
                     " vpmaddubsw %%ymm14,%%ymm15,%%ymm3\n vpaddsw %%ymm3,%%ymm11,%%ymm11\n .endr" ::: CLOBBERS);
    });
    report("+ vpaddw into 4 sums", 16, hz, [&] {
        asm volatile(".rept 4\n vpmaddubsw %%ymm14,%%ymm15,%%ymm0\n vpaddw %%ymm0,%%ymm8,%%ymm8\n"
                     " vpmaddubsw %%ymm14,%%ymm15,%%ymm1\n vpaddw %%ymm1,%%ymm9,%%ymm9\n"
                     " vpmaddubsw %%ymm14,%%ymm15,%%ymm2\n vpaddw %%ymm2,%%ymm10,%%ymm10\n"
                     " vpmaddubsw %%ymm14,%%ymm15,%%ymm3\n vpaddw %%ymm3,%%ymm11,%%ymm11\n .endr" ::: CLOBBERS);
    });
    report("+ vpbroadcastd from memory", 16, hz, [&] {
        asm volatile(".rept 16\n vpmaddubsw %%ymm14,%%ymm15,%%ymm0\n vpbroadcastd (%0),%%ymm1\n .endr" ::"r"(b) : CLOBBERS);
    });
    // The tile's step: one octet's weight vector against 4 activation rows' broadcast bytes, summed in int16.
    report("tile step: 1 load, 4 broadcasts, 4 vpmaddubsw, 4 vpaddw", 16, hz, [&] {
        asm volatile(".rept 4\n vmovdqu (%0),%%ymm12\n"
                     " vpbroadcastd 256(%0),%%ymm0\n vpbroadcastd 260(%0),%%ymm1\n"
                     " vpbroadcastd 264(%0),%%ymm2\n vpbroadcastd 268(%0),%%ymm3\n"
                     " vpmaddubsw %%ymm0,%%ymm12,%%ymm0\n vpmaddubsw %%ymm1,%%ymm12,%%ymm1\n"
                     " vpmaddubsw %%ymm2,%%ymm12,%%ymm2\n vpmaddubsw %%ymm3,%%ymm12,%%ymm3\n"
                     " vpaddw %%ymm0,%%ymm8,%%ymm8\n vpaddw %%ymm1,%%ymm9,%%ymm9\n"
                     " vpaddw %%ymm2,%%ymm10,%%ymm10\n vpaddw %%ymm3,%%ymm11,%%ymm11\n .endr" ::"r"(b) : CLOBBERS);
    });
    // Two octets' weights against 2 rows: half the broadcasts per product.
    report("2 loads, 2 broadcasts, 4 vpmaddubsw, 4 vpaddw", 16, hz, [&] {
        asm volatile(".rept 4\n vmovdqu (%0),%%ymm12\n vmovdqu 32(%0),%%ymm5\n"
                     " vpbroadcastd 256(%0),%%ymm0\n vpbroadcastd 260(%0),%%ymm1\n"
                     " vpmaddubsw %%ymm0,%%ymm12,%%ymm2\n vpmaddubsw %%ymm1,%%ymm12,%%ymm3\n"
                     " vpmaddubsw %%ymm0,%%ymm5,%%ymm0\n vpmaddubsw %%ymm1,%%ymm5,%%ymm1\n"
                     " vpaddw %%ymm0,%%ymm8,%%ymm8\n vpaddw %%ymm1,%%ymm9,%%ymm9\n"
                     " vpaddw %%ymm2,%%ymm10,%%ymm10\n vpaddw %%ymm3,%%ymm11,%%ymm11\n .endr" ::"r"(b) : CLOBBERS);
    });
    return 0;
}
