#include "cuda/backend_cuda.h"

#include "core/error.h"
#include "core/planner.h"

namespace quanta::cuda {

CudaBackend::CudaBackend() : api_(status().api) {
    if (!api_) fail(ErrorKind::Unsupported, "CUDA is not available: " + status().reason);
}

CudaBackend::~CudaBackend() {
    for (auto& [t, p] : uploaded_) api_->release(p);
    if (arena_) api_->release(arena_);
}

void CudaBackend::check(int rc, const char* what) const {
    if (rc != 0) fail(ErrorKind::Internal, std::string(what) + ": " + api_->last_error());
}

bool CudaBackend::supports(const Tensor& node) const {
    if (node.op != Op::Add) return false;
    const Tensor* a = node.src[0];
    const Tensor* b = node.src[1];
    // Contiguous a; b one contiguous row (or the same shape) broadcast over a's rows.
    return a->is_contiguous() && b->is_contiguous() &&
           (b->same_shape(*a) || (b->n_rows() == 1 && b->ne[0] == a->ne[0]));
}

void* CudaBackend::device_ptr(const Tensor* t) const {
    const Tensor* s = t->storage();
    char* base;
    if (s->kind == TensorKind::External) base = static_cast<char*>(uploaded_.at(s));
    else base = static_cast<char*>(s->data);  // arena tensors are bound to device addresses
    return base + (t == s ? 0 : t->view_offset);
}

void CudaBackend::prepare(Graph& graph) {
    check_graph(graph);
    const MemoryPlan& plan = graph.plan();
    if (plan.arena_bytes > arena_bytes_) {
        if (arena_) check(api_->release(arena_), "cudaFree");
        arena_ = nullptr;
        check(api_->alloc(&arena_, plan.arena_bytes), "device arena");
        arena_bytes_ = plan.arena_bytes;
    }
    for (const Tensor* t : graph.order()) {
        if (t->kind != TensorKind::External || t->view_src || uploaded_.count(t)) continue;
        void* p = nullptr;
        check(api_->alloc(&p, t->n_bytes()), "device weights");
        uploaded_[t] = p;
        check(api_->copy_to_device(p, t->data, t->n_bytes()), "upload");
    }
    // Arena tensors get device addresses; they are never dereferenced on the host.
    for (const auto& [t, offset] : plan.offsets) t->data = static_cast<char*>(arena_) + offset;
}

void CudaBackend::set_tensor(Tensor* t, const void* src, size_t bytes) {
    QUANTA_CHECK_ARG(bytes == t->n_bytes() && t->is_contiguous(), "set_tensor: size or layout mismatch");
    check(api_->copy_to_device(device_ptr(t), src, bytes), "set_tensor");
}

void CudaBackend::get_tensor(const Tensor* t, void* dst, size_t bytes) {
    QUANTA_CHECK_ARG(bytes == t->n_bytes() && t->is_contiguous(), "get_tensor: size or layout mismatch");
    check(api_->copy_to_host(dst, device_ptr(t), bytes), "get_tensor");
}

void CudaBackend::compute(Graph& graph) {
    for (const Tensor* node : graph.order()) {
        if (node->op != Op::Add) continue;
        check(api_->add_f32(static_cast<float*>(device_ptr(node)), static_cast<const float*>(device_ptr(node->src[0])),
                            static_cast<const float*>(device_ptr(node->src[1])), node->n_elements(),
                            node->src[1]->n_elements()),
              "add_f32");
    }
    check(api_->synchronize(), "synchronize");
}

}  // namespace quanta::cuda
