#include "core/backend.h"

#include "core/error.h"

namespace quanta {

void Backend::check_graph(Graph& graph) const {
    graph.finalize();
    for (const Tensor* t : graph.order()) {
        if (t->op == Op::None || t->op == Op::View || supports(*t)) continue;
        std::string types;
        for (const Tensor* s : t->src)
            if (s) types += (types.empty() ? "" : ", ") + std::string(type_name(s->type));
        fail(ErrorKind::Unsupported, name() + " backend has no kernel for " + op_name(t->op) + " on (" + types + ") -> " +
                                         type_name(t->type) + (t->name.empty() ? "" : " ('" + t->name + "')"));
    }
}

}  // namespace quanta
