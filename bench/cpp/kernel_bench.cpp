// Speed of one level's compute-bound CPU kernels on one thread, with nothing
// around them: the prefill GEMM tile (a 32-row panel that stays in L1/L2
// against 4 activation rows), the octet kernels of small batches (64 rows in
// cache against 4 activation rows) and attention (Kernels::attend), best of
// many runs. The model-level benchmarks (llm_bench.py, matmul_bench.py) add
// threads, memory and graph overhead; this shows what a kernel change did.
//
//   cmake -S . -B /tmp/kb -G Ninja -DQUANTA_CUDA=OFF -DQUANTA_PYTHON=OFF -DQUANTA_KERNEL_BENCH=ON
//   ninja -C /tmp/kb kernel_bench && /tmp/kb/kernel_bench avx2
//
// Two builds compare best alternately (the machine's noise is larger than most changes): build each into its
// own folder and run them in turn a few times, keeping each line's best.
#include <algorithm>
#include <chrono>
#include <new>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cpu/act_formats.h"
#include "cpu/kernels.h"
#include "cpu/octets.h"
#include "cpu/panel.h"
#include "quant/quantize.h"
#include "quant/types.h"

using namespace quanta;
using namespace quanta::cpu;

namespace {

// Buffers on 64-byte boundaries, as the engine's (host_alloc): on malloc's 16-byte ones a kernel's 32- and
// 64-byte loads split cache lines or not by chance, which moved the same build's figures by up to 40%.
template <typename T>
struct Aligned {
    using value_type = T;
    Aligned() = default;
    template <typename U>
    Aligned(const Aligned<U>&) {}
    T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
    void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
    template <typename U>
    bool operator==(const Aligned<U>&) const { return true; }
    template <typename U>
    bool operator!=(const Aligned<U>&) const { return false; }
};
template <typename T>
using Buffer = std::vector<T, Aligned<T>>;

double seconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Quantized rows of random normal values.
Buffer<uint8_t> random_rows(DType t, int rows, int64_t n, std::mt19937& rng) {
    std::normal_distribution<float> normal;
    std::vector<float> x((size_t)n);
    Buffer<uint8_t> w(row_bytes(t, n) * rows);
    for (int r = 0; r < rows; ++r) {
        for (float& v : x) v = normal(rng);
        quantize_row(t, x.data(), w.data() + r * row_bytes(t, n), n);
    }
    return w;
}

// `rows` rows of flat activations.
Buffer<uint8_t> random_acts(const Kernels& k, int64_t n, std::mt19937& rng, int rows = 4) {
    std::normal_distribution<float> normal;
    std::vector<float> x((size_t)n);
    const size_t as = act_row_bytes(ActFormat::Flat, n);
    Buffer<uint8_t> act(as * rows);
    for (int j = 0; j < rows; ++j) {
        for (float& v : x) v = normal(rng);
        k.quantize_act_flat(x.data(), act.data() + j * as, n);
    }
    return act;
}

// The best time of `repeats` runs of `calls` back-to-back calls of f.
template <typename F>
double best_of(int repeats, int calls, F&& f) {
    double best = 1e30;
    for (int r = 0; r < repeats; ++r) {
        const double t0 = seconds();
        for (int i = 0; i < calls; ++i) f();
        best = std::min(best, seconds() - t0);
    }
    return best;
}

// One panel against m activation rows, 4 at a time, as matmul_gemm walks them: m = 4 repeats the same rows
// (the tile's own speed, everything in L1), m = 512 streams a prompt's rows from L2 or beyond.
void bench_tile(const Kernels& k, DType t, int64_t n, int m, std::mt19937& rng) {
    const GemmTileFn tile = gemm_tile(k, t);
    if (!tile) return;
    const Buffer<uint8_t> w = random_rows(t, kPanelRows, n, rng), act = random_acts(k, n, rng, m);
    const size_t as = act_row_bytes(ActFormat::Flat, n);
    std::vector<const void*> rows(kPanelRows);
    for (int r = 0; r < kPanelRows; ++r) rows[r] = w.data() + r * row_bytes(t, n);
    Buffer<uint8_t> panel(panel_bytes(t, n));
    unpack_panel(t, rows.data(), kPanelRows, n, k.panel_scales, panel.data());
    Buffer<float> out((size_t)m * kPanelRows);
    const int calls = std::max(1, 800 / m);
    const double s = best_of(30, calls, [&] {
        for (int j = 0; j < m; j += 4)
            tile(n, panel.data(), panel_group_bytes(t, n), act.data() + j * as, as, 4, out.data() + j * kPanelRows,
                 kPanelRows, kPanelRows, t);
    });
    std::printf("%s tile %s %d x %d x %lld: %.1f GMAC/s\n", k.name, type_name(t), kPanelRows, m, (long long)n,
                (double)calls * kPanelRows * m * n / s / 1e9);
}

// Every octet of `rows` rows of n elements against na flat activation rows, as matmul_octets walks them on
// one thread; row r's sums land at out + r (row j's at out + j * rows).
void all_octets(const Kernels& k, DType t, int64_t n, const Buffer<uint8_t>& octets, int64_t rows,
                const Buffer<uint8_t>& act, int na, float* out) {
    const size_t as = act_row_bytes(ActFormat::Flat, n), ob = octet_bytes(t, n);
    for (int64_t o = 0; o < rows / kOctetRows; ++o)
        k.dot_octets(t, n, octets.data() + o * ob, act.data(), as, na, out + o * kOctetRows, rows, kOctetRows);
}

// na activation rows: 4 is batched decode's step, 1 is decode's, reported also as weight bytes a second
// (what one thread could stream if memory kept up).
void bench_octets(const Kernels& k, DType t, int64_t n, int na, std::mt19937& rng) {
    if (!k.dot_octets) return;
    constexpr int kRows = 64;
    const Buffer<uint8_t> w = random_rows(t, kRows, n, rng), act = random_acts(k, n, rng);
    Buffer<uint8_t> octets(octets_bytes(t, kRows, n));
    pack_octets(t, w.data(), row_bytes(t, n), kRows, n, octets.data());
    Buffer<float> out(4 * kRows);
    const int calls = 100;
    const double s = best_of(30, calls, [&] { all_octets(k, t, n, octets, kRows, act, na, out.data()); });
    std::printf("%s octets %s %d x %d x %lld: %.1f GMAC/s, %.1f GB/s of weights\n", k.name, type_name(t), kRows, na,
                (long long)n, (double)calls * kRows * na * n / s / 1e9, (double)calls * octets.size() / s / 1e9);
}

// Decode from memory: one activation row against 64 MB of octets, far past the last-level cache, on one
// thread: what the octet kernels and their prefetches make of the memory, as weight bytes a second.
void bench_octets_stream(const Kernels& k, DType t, int64_t n, std::mt19937& rng) {
    if (!k.dot_octets) return;
    const int64_t rows = (int64_t)(64 << 20) / (int64_t)row_bytes(t, n) / kOctetRows * kOctetRows;
    const Buffer<uint8_t> w = random_rows(t, kOctetRows, n, rng), act = random_acts(k, n, rng, 1);
    const size_t ob = octet_bytes(t, n);
    Buffer<uint8_t> octets(octets_bytes(t, rows, n));
    for (int64_t o = 0; o < rows / kOctetRows; ++o)  // the same 8 random rows everywhere: speed only
        pack_octets(t, w.data(), row_bytes(t, n), kOctetRows, n, octets.data() + o * ob);
    Buffer<float> out((size_t)rows);
    const double s = best_of(20, 1, [&] { all_octets(k, t, n, octets, rows, act, 1, out.data()); });
    std::printf("%s octets %s %lld x 1 x %lld from memory: %.1f GB/s of weights\n", k.name, type_name(t),
                (long long)rows, (long long)n, (double)octets.size() / s / 1e9);
}

// Quantizing a prompt's activations (every matmul's first phase): m rows of n floats into the flat format,
// as float elements a second.
void bench_quantize(const Kernels& k, int64_t n, int m, std::mt19937& rng) {
    std::normal_distribution<float> normal;
    Buffer<float> x((size_t)m * n);
    for (float& v : x) v = normal(rng);
    const size_t as = act_row_bytes(ActFormat::Flat, n);
    Buffer<uint8_t> act(as * m);
    const double s = best_of(30, 1, [&] {
        for (int j = 0; j < m; ++j) k.quantize_act_flat(x.data() + j * n, act.data() + j * as, n);
    });
    std::printf("%s quantize %d x %lld floats: %.2f G elements/s\n", k.name, m, (long long)n, (double)m * n / s / 1e9);
}

// A prompt's attention task: nq consecutive tokens (lists of n - nq + 1 .. n cells) x g heads of hd, f16 cells.
void bench_attend(const Kernels& k, int nq, int g, int64_t hd, int n, std::mt19937& rng) {
    std::normal_distribution<float> normal;
    Buffer<float> q((size_t)nq * g * hd);
    for (float& v : q) v = normal(rng);
    Buffer<uint16_t> keys((size_t)n * hd), values((size_t)n * hd);
    for (uint16_t& e : keys) e = (uint16_t)(0x3c00 ^ (rng() & 0x83ff));  // +-[1, 2) in f16
    for (uint16_t& e : values) e = (uint16_t)(0x3c00 ^ (rng() & 0x83ff));
    std::vector<int32_t> cells(n), counts(nq);
    for (int i = 0; i < n; ++i) cells[i] = i;
    int64_t macs = 0;
    for (int i = 0; i < nq; ++i) macs += 2 * g * hd * (counts[i] = n - nq + 1 + i);
    Buffer<float> work(attend_work(nq, g, n, hd, hd)), out((size_t)nq * g * hd);
    const int calls = 20;
    const double s = best_of(30, calls, [&] {
        k.attend(true, g, hd, hd, nq, q.data(), (size_t)g * hd, reinterpret_cast<const char*>(keys.data()),
                 (size_t)hd * 2, reinterpret_cast<const char*>(values.data()), (size_t)hd * 2, cells.data(),
                 counts.data(), 0.125f, work.data(), out.data(), (size_t)g * hd);
    });
    std::printf("%s attend %d tokens x %d heads of %lld over %d f16 cells: %.1f GMAC/s\n", k.name, nq, g,
                (long long)hd, n, (double)calls * macs / s / 1e9);
}

}  // namespace

int main(int argc, char** argv) {
    const std::vector<Level> levels = available_levels();
    const Kernels& k = kernels_for(argc > 1 ? level_from_name(argv[1]) : levels.back());
    std::mt19937 rng(1);
    for (DType t : {DType::Q4_0, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K})
        bench_tile(k, t, 1024, 4, rng);
    for (int64_t n : {1024, 4096})
        for (DType t : {DType::Q4_0, DType::Q4_K}) bench_tile(k, t, n, 512, rng);
    for (DType t : {DType::Q4_0, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K})
        for (int na : {4, 1}) bench_octets(k, t, 1024, na, rng);
    for (DType t : {DType::Q4_K, DType::Q6_K}) bench_octets(k, t, 4096, 1, rng);
    for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q6_K}) bench_octets_stream(k, t, 4096, rng);
    for (int hd : {64, 128, 256}) bench_attend(k, kAttendQueries, 8, hd, 512, rng);
    bench_attend(k, 1, 8, 64, 512, rng);  // decode: one token
    bench_quantize(k, 1024, 512, rng);
    return 0;
}
