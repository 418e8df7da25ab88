// Merging LoRA patches into a Stable Diffusion file's weights at load (sd_lora.h).
#include "models/sd_lora.h"

#include <algorithm>
#include <cstdint>
#include <map>

#include "base/error.h"
#include "core/threadpool.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"

namespace quanta::models {
namespace {

constexpr size_t kAlign = 64;  // each merged copy starts on a cache line

// One weight and every patch of it, the sizes checked: W is [out][row], and
// `rank` counts all its patches' ranks together.
struct Target {
    Weight w = nullptr;
    int64_t out = 0, row = 0, rank = 0;
    std::vector<const LoraPatch*> patches;
};

// The sum of the target's scale * up @ down, [out][row], as one matmul on the
// backend over the patches' ranks side by side: matmul(a [rank, row], b [rank,
// out]) -> [row, out], where row i of `a` is column i of every down and row o of
// `b` is every patch's scale * up row o.
std::vector<float> low_rank_sum(Backend& backend, const Target& t) {
    std::vector<float> a((size_t)(t.row * t.rank)), b((size_t)(t.out * t.rank));
    int64_t first = 0;
    for (const LoraPatch* p : t.patches) {
        for (int64_t k = 0; k < p->rank; ++k) {
            for (int64_t i = 0; i < t.row; ++i) a[i * t.rank + first + k] = p->down[k * t.row + i];
            for (int64_t o = 0; o < t.out; ++o) b[o * t.rank + first + k] = p->scale * p->up[o * p->rank + k];
        }
        first += p->rank;
    }
    Graph g;
    Tensor* down = g.input(DType::F32, {t.rank, t.row}, "lora_down");
    Tensor* up = g.input(DType::F32, {t.rank, t.out}, "lora_up");
    Tensor* delta = g.matmul(down, up);
    g.mark_output(delta);
    const std::unique_ptr<Buffer> arena = backend.prepare(g);
    backend.set_tensor(down, a.data(), a.size() * sizeof(float));
    backend.set_tensor(up, b.data(), b.size() * sizeof(float));
    backend.compute(g);
    std::vector<float> sum((size_t)(t.out * t.row));
    backend.get_tensor(delta, sum.data(), sum.size() * sizeof(float));
    return sum;
}

// W + delta in W's own type: the file's rows (ne[0] long) dequantized, added,
// quantized back, the rows shared among the pool's threads.
std::vector<uint8_t> merged_bytes(ThreadPool& pool, const gguf::TensorInfo& w, std::vector<float>& delta) {
    const int64_t n = w.ne[0];
    const size_t row_size = row_bytes(w.type, n);
    std::vector<uint8_t> out(w.nbytes);
    pool.run([&](int ith, int nth) {
        std::vector<float> base((size_t)n);
        for (int64_t r = ith; r < w.n_rows(); r += nth) {
            dequantize_row(w.type, w.data + r * row_size, base.data(), n);
            float* row = delta.data() + r * n;
            for (int64_t i = 0; i < n; ++i) row[i] += base[i];
            quantize_row(w.type, row, out.data() + r * row_size, n);
        }
    });
    return out;
}

Target check_patch(const gguf::File& file, const LoraPatch& p) {
    const gguf::TensorInfo* w = file.find_tensor(p.target);
    if (!w)
        fail(ErrorKind::Model, file.label() + ": LoRA module '" + p.source + "' patches tensor '" + p.target +
                                   "', which the file lacks");
    if (w->n_dims < 2)
        fail(ErrorKind::Model, file.label() + ": LoRA module '" + p.source + "' patches '" + p.target +
                                   "', which is not a matrix or a convolution");
    Target t{w, w->ne[w->n_dims - 1], 0, p.rank, {&p}};
    t.row = w->n_elements() / t.out;
    if (p.rank < 1 || p.down.size() != (size_t)(p.rank * t.row) || p.up.size() != (size_t)(t.out * p.rank))
        fail(ErrorKind::Model, file.label() + ": LoRA module '" + p.source + "' (rank " + std::to_string(p.rank) +
                                   ", " + std::to_string(p.down.size()) + " down and " + std::to_string(p.up.size()) +
                                   " up values) does not fit tensor '" + p.target + "' " +
                                   dims_string(w->ne, w->n_dims) + ": " + std::to_string(t.out) + " outputs of " +
                                   std::to_string(t.row) + " inputs");
    if (!can_quantize(w->type) || !type_info(w->type).can_dequantize)
        fail(ErrorKind::Unsupported, file.label() + ": tensor '" + p.target + "' is " + type_name(w->type) +
                                         ", which quanta cannot requantize after merging LoRA module '" +
                                         p.source + "'");
    return t;
}

}  // namespace

MergedWeights merge_loras(const gguf::File& file, Backend& backend, const std::vector<LoraPatch>& patches) {
    MergedWeights merged;
    if (patches.empty()) return merged;
    std::map<std::string, Target> targets;  // by name, so the buffer's layout does not depend on the patches' order
    for (const LoraPatch& p : patches) {
        const Target t = check_patch(file, p);
        const auto [it, added] = targets.emplace(p.target, t);
        if (!added) {
            it->second.rank += p.rank;
            it->second.patches.push_back(&p);
        }
    }
    std::vector<size_t> offsets;
    size_t total = 0;
    for (const auto& [name, t] : targets) {
        offsets.push_back(total);
        total += (t.w->nbytes + kAlign - 1) / kAlign * kAlign;
    }
    merged.memory = backend.alloc(total);
    ThreadPool pool(backend.n_threads());
    size_t i = 0;
    for (const auto& [name, t] : targets) {
        std::vector<float> w = low_rank_sum(backend, t);
        const std::vector<uint8_t> bytes = merged_bytes(pool, *t.w, w);
        char* at = merged.memory->base() + offsets[i++];
        backend.write(at, bytes.data(), bytes.size());
        merged.addresses[t.w] = at;
        file.drop_pages(t.w->data, t.w->nbytes);  // the graphs never read the file's copy again
    }
    return merged;
}

}  // namespace quanta::models
