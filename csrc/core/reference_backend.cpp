// The reference backend (reference_backend.h).
#include "core/reference_backend.h"

#include "base/error.h"
#include "core/op_table.h"

namespace quanta {

bool ReferenceBackend::supports(const Tensor& node) const {
    for (const Tensor* s : node.src)
        if (s && !type_info(s->type).can_dequantize) return false;
    return op_info(node.op).reference != nullptr;
}

void ReferenceBackend::compute(const Graph& graph) {
    QUANTA_CHECK_ARG(graph.finalized(), "compute: prepare the graph first");
    for (const Tensor* node : graph.order()) {
        const OpInfo& info = op_info(node->op);
        if (info.reference && !info.reference(*node))
            fail(ErrorKind::InvalidArgument, std::string(info.name) + ": a row id of " + node->describe() + " is out of range");
    }
}

}  // namespace quanta
