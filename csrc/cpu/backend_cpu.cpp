// The CPU backend (backend_cpu.h): kernels from the per-op table (ops.h) at
// the active instruction-set level.
#include "cpu/backend_cpu.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "base/error.h"
#include "core/op_table.h"
#include "cpu/octets.h"
#include "cpu/ops.h"
#include "cpu/winograd.h"

namespace quanta::cpu {

CpuBackend::CpuBackend(int n_threads) : pool_(n_threads) {}

std::string CpuBackend::name() const { return std::string("cpu/") + active_kernels().name; }

bool CpuBackend::supports(const Tensor& node) const {
    const CpuKernel& k = cpu_kernel(node.op);
    return k.compute && (!k.supports || k.supports(node));
}

void CpuBackend::reserve(const Graph& graph) {
    // Sized for every level, so switching levels between runs needs no new prepare.
    size_t scratch = 0, shared = 0;
    for (const Tensor* t : graph.order()) {
        const CpuKernel& k = cpu_kernel(t->op);
        if (k.scratch_floats) scratch = std::max(scratch, k.scratch_floats(*t));
        if (k.shared_bytes)
            for (Level level : available_levels()) shared = std::max(shared, k.shared_bytes(*t, kernels_for(level)));
    }
    // On 64-byte boundaries (host_alloc), like every arena: std::vector's large blocks come from mmap 16 bytes
    // past a page, where the GEMM's 32- and 64-byte panel loads split cache lines (all of avx512's, half of
    // avx2's). Prefill of 512 tokens before -> after, alternating builds (Sapphire Rapids-class Xeon, 2
    // threads): avx512 Gemma 2186 -> 2525 t/s, k-quant model 1572 -> 1715; avx2 Gemma 1345 -> 1406, k-quant
    // model 933 -> 991; Qwen within 1%, its blocks' placement having been luckier.
    if (scratch > scratch_per_thread_) {
        scratch_per_thread_ = (scratch + 15) / 16 * 16;  // each thread's scratch on its own cache lines
        scratch_ = host_alloc(scratch_per_thread_ * (size_t)pool_.size() * sizeof(float));
        std::memset(scratch_->base(), 0, scratch_->size());
    }
    if (!shared_ || shared > shared_->size()) shared_ = host_alloc(shared);
}

std::unique_ptr<Buffer> CpuBackend::pack_weight(const Tensor& w, const CopiedFn& copied) {
    static const bool off = [] {
        const char* v = std::getenv("QUANTA_REPACK");
        return v && std::string(v) == "0";
    }();
    if (off || !octet_type(w.type) || !active_kernels().dot_octets || w.n_rows() != w.ne[1] || !w.is_contiguous())
        return nullptr;
    const int64_t rows = w.ne[1], k = w.ne[0], octets = (rows + kOctetRows - 1) / kOctetRows;
    std::unique_ptr<Buffer> out = host_alloc(octets_bytes(w.type, rows, k));
    // In slices of about kPackSlice bytes of w, each reported copied when done: packing Gemma 3 270M's 178 MB
    // tied embedding whole held the file's pages and the copy at once (peak RSS 392 MB, 353 before octets).
    constexpr size_t kPackSlice = 8 << 20;
    const int64_t per_slice = std::max<int64_t>(1, (int64_t)(kPackSlice / ((size_t)kOctetRows * w.nb[1])));
    for (int64_t first = 0; first < octets; first += per_slice) {
        const int64_t last = std::min(octets, first + per_slice);
        pool_.run([&](int ith, int nth) {  // a few hundred MB a second per thread
            for (int64_t o = first + (last - first) * ith / nth; o < first + (last - first) * (ith + 1) / nth; ++o)
                pack_octets(w.type, static_cast<const char*>(w.data) + (size_t)(o * kOctetRows) * w.nb[1], w.nb[1],
                            std::min<int64_t>(kOctetRows, rows - o * kOctetRows), k,
                            out->base() + (size_t)o * octet_bytes(w.type, k));
        });
        const int64_t row0 = first * kOctetRows, row1 = std::min(rows, last * kOctetRows);
        copied(static_cast<const char*>(w.data) + (size_t)row0 * w.nb[1], (size_t)(row1 - row0) * w.nb[1]);
    }
    return out;
}

namespace {

// QUANTA_PROFILE=1 prints, after each graph, where its time went by op (wall
// time between barriers, seen from thread 0): the tool for finding what to
// speed up in a model's graph. Off, it costs one branch per node.
const bool kProfile = [] {
    const char* v = std::getenv("QUANTA_PROFILE");
    return v && *v && *v != '0';
}();

// The op, and for the weighted ops the weight's type (and Winograd's path).
std::string profile_key(const Tensor& node) {
    const Tensor* weight = node.op == Op::MatMul ? node.src[0] : node.op == Op::Conv2d ? node.src[1] : nullptr;
    if (!weight) return op_name(node.op);
    std::string key = std::string(op_name(node.op)) + " " + type_name(weight->type);
    if (node.op == Op::Conv2d) key += winograd_applies(node) ? " winograd" : " " + std::to_string(weight->ne[0]) + "x" + std::to_string(weight->ne[1]);
    return key;
}

void print_profile(const std::map<std::string, std::pair<double, int>>& by_op, double total) {
    std::vector<std::pair<double, std::string>> rows;
    for (const auto& [name, v] : by_op) rows.push_back({v.first, name + " x" + std::to_string(v.second)});
    std::sort(rows.rbegin(), rows.rend());
    std::fprintf(stderr, "quanta profile: %.1f ms\n", total * 1e3);
    for (const auto& [t, name] : rows)
        if (t >= total * 0.005) std::fprintf(stderr, "  %8.1f ms %5.1f%%  %s\n", t * 1e3, 100 * t / total, name.c_str());
}

}  // namespace

void CpuBackend::compute(const Graph& graph) {
    QUANTA_CHECK_ARG(graph.finalized(), "compute: prepare the graph first");
    const Kernels* k = &active_kernels();
    bad_row_id_.store(false);
    pool_.run([&](int ith, int nth) {
        OpContext ctx;
        ctx.ith = ith;
        ctx.nth = nth;
        ctx.k = k;
        ctx.scratch = scratch_ ? reinterpret_cast<float*>(scratch_->base()) + (size_t)ith * scratch_per_thread_ : nullptr;
        ctx.shared = shared_ ? reinterpret_cast<uint8_t*>(shared_->base()) : nullptr;
        ctx.pool = &pool_;
        ctx.bad_row_id = &bad_row_id_;
        using Clock = std::chrono::steady_clock;
        std::map<std::string, std::pair<double, int>> profile;  // QUANTA_PROFILE, thread 0: seconds and runs by op
        const Clock::time_point start = kProfile ? Clock::now() : Clock::time_point{};
        Clock::time_point last = start;
        for (const Tensor* node : graph.order()) {
            const CpuKernel& kernel = cpu_kernel(node->op);
            if (!kernel.compute) continue;  // leaves and views
            kernel.compute(*node, ctx);
            pool_.barrier();
            if (pool_.failed()) return;
            if (kProfile && ith == 0) {
                const Clock::time_point now = Clock::now();
                auto& [seconds, count] = profile[profile_key(*node)];
                seconds += std::chrono::duration<double>(now - last).count();
                ++count;
                last = now;
            }
        }
        if (kProfile && ith == 0) {
            print_profile(profile, std::chrono::duration<double>(Clock::now() - start).count());
        }
    });
    if (bad_row_id_.load()) fail(ErrorKind::InvalidArgument, "a row or cell id (get_rows, set_rows, attention) is out of range");
}

}  // namespace quanta::cpu
