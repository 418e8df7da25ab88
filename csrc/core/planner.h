// Liveness-based memory planning: every arena tensor (graph inputs and op
// results that are not views) gets an offset in one arena. A tensor's bytes
// are released after its last reader runs, so later results reuse them; graph
// outputs are never released. The plan is computed once per graph shape and
// reused for every run.
#pragma once

#include <cstddef>
#include <vector>

#include "core/tensor.h"

namespace quanta {

struct MemoryPlan {
    size_t arena_bytes = 0;
    size_t naive_bytes = 0;  // what one buffer per tensor would take, for comparison
    std::vector<std::pair<Tensor*, size_t>> offsets;  // arena tensor -> byte offset
};

constexpr size_t kArenaAlignment = 64;

MemoryPlan plan_memory(const std::vector<Tensor*>& order, const std::vector<Tensor*>& outputs);

// Points every arena tensor, and every view of one, into `arena`.
void bind_memory(const MemoryPlan& plan, const std::vector<Tensor*>& order, char* arena);

}  // namespace quanta
