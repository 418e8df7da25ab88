// The liveness planner (planner.h): a best-fit offset allocator walked along the execution order.
#include "core/planner.h"

#include <algorithm>
#include <map>
#include <unordered_map>
#include <unordered_set>

namespace quanta {
namespace {

size_t align_up(size_t x) { return (x + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment; }

bool needs_arena(const Tensor* t) {
    return t->view_src == nullptr && (t->kind == TensorKind::Input || t->kind == TensorKind::Op);
}

// Best-fit allocator over offsets; the arena is only sized, never touched here.
class OffsetAllocator {
public:
    size_t allocate(size_t bytes) {
        auto best = free_.end();
        for (auto it = free_.begin(); it != free_.end(); ++it)
            if (it->second >= bytes && (best == free_.end() || it->second < best->second)) best = it;
        if (best != free_.end()) {
            const size_t offset = best->first, size = best->second;
            free_.erase(best);
            if (size > bytes) free_[offset + bytes] = size - bytes;
            return offset;
        }
        // Grow the arena, absorbing a free block that touches its end.
        size_t offset = end_;
        if (!free_.empty()) {
            auto last = std::prev(free_.end());
            if (last->first + last->second == end_) {
                offset = last->first;
                free_.erase(last);
            }
        }
        end_ = offset + bytes;
        return offset;
    }

    void release(size_t offset, size_t bytes) {
        auto it = free_.emplace(offset, bytes).first;
        auto next = std::next(it);
        if (next != free_.end() && it->first + it->second == next->first) {
            it->second += next->second;
            free_.erase(next);
        }
        if (it != free_.begin()) {
            auto prev = std::prev(it);
            if (prev->first + prev->second == it->first) {
                prev->second += it->second;
                free_.erase(it);
            }
        }
    }

    size_t high_water() const { return end_; }

private:
    std::map<size_t, size_t> free_;  // offset -> size, kept merged
    size_t end_ = 0;
};

}  // namespace

MemoryPlan plan_memory(const std::vector<Tensor*>& order, const std::vector<Tensor*>& outputs) {
    // Index of the last node that reads each storage tensor. Views read
    // nothing themselves, but their readers read the view's storage.
    std::unordered_map<const Tensor*, size_t> last_use;
    for (size_t i = 0; i < order.size(); ++i) {
        for (const Tensor* s : order[i]->src)
            if (s) last_use[s->storage()] = i;
        last_use.emplace(order[i], i);  // a result nobody reads dies where it is made
    }
    std::unordered_set<const Tensor*> keep;
    for (const Tensor* o : outputs) keep.insert(o->storage());

    MemoryPlan plan;
    OffsetAllocator alloc;
    std::unordered_map<const Tensor*, size_t> placed;
    auto place = [&](Tensor* t) {
        const size_t bytes = align_up(t->n_bytes());
        const size_t offset = alloc.allocate(bytes);
        placed[t] = offset;
        plan.offsets.push_back({t, offset});
        plan.naive_bytes += bytes;
    };

    // Inputs are written before the run starts, so they all exist from the start.
    for (Tensor* t : order)
        if (needs_arena(t) && t->kind == TensorKind::Input) place(t);

    for (size_t i = 0; i < order.size(); ++i) {
        Tensor* t = order[i];
        if (needs_arena(t) && t->kind == TensorKind::Op) place(t);
        // Release what this node was the last to read (after placing its
        // result, so a result never overlaps its own sources).
        const Tensor* candidates[kMaxSrc + 1] = {t->src[0], t->src[1], t->src[2], t->src[3], t};
        for (const Tensor* c : candidates) {
            if (!c) continue;
            const Tensor* s = c->storage();
            auto it = placed.find(s);
            if (it == placed.end() || keep.count(s) || last_use[s] != i) continue;
            alloc.release(it->second, align_up(s->n_bytes()));
            placed.erase(it);
        }
    }
    plan.arena_bytes = alloc.high_water();
    return plan;
}

void bind_memory(const MemoryPlan& plan, const std::vector<Tensor*>& order, char* arena) {
    for (const auto& [t, offset] : plan.offsets) t->data = arena + offset;
    for (Tensor* t : order)
        if (t->view_src) t->data = static_cast<char*>(t->view_src->data) + t->view_offset;
}

}  // namespace quanta
