// What every backend shares: the support check and arena placement of
// prepare(), and the checked tensor copies.
#include "core/backend.h"

#include "base/error.h"
#include "core/op_table.h"
#include "core/planner.h"

namespace quanta {

std::unique_ptr<Buffer> Backend::prepare(Graph& graph) {
    graph.finalize();
    for (const Tensor* t : graph.order()) {
        if (t->op == Op::None || t->op == Op::View || supports(*t)) continue;
        std::string types;
        for (const Tensor* s : t->src)
            if (s) types += (types.empty() ? "" : ", ") + std::string(type_name(s->type));
        fail(ErrorKind::Unsupported, name() + " backend has no kernel for " + op_name(t->op) + " on (" + types + ") -> " +
                                         type_name(t->type) + (t->name.empty() ? "" : " ('" + t->name + "')"));
    }
    reserve(graph);
    std::unique_ptr<Buffer> arena = alloc(graph.plan().arena_bytes);
    bind_memory(graph.plan(), graph.order(), arena->base());
    return arena;
}

void Backend::set_tensor(Tensor* t, const void* src, size_t bytes) {
    QUANTA_CHECK_ARG(t->data && bytes == t->n_bytes() && t->is_contiguous(),
                     "set_tensor: " + t->describe() + " is unbound, strided, or not " + std::to_string(bytes) + " bytes");
    write(t->data, src, bytes);
}

void Backend::get_tensor(const Tensor* t, void* dst, size_t bytes) {
    QUANTA_CHECK_ARG(t->data && bytes == t->n_bytes() && t->is_contiguous(),
                     "get_tensor: " + t->describe() + " is unbound, strided, or not " + std::to_string(bytes) + " bytes");
    read(t->data, dst, bytes);
}

}  // namespace quanta
