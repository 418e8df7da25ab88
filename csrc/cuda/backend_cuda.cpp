// The CUDA backend (backend_cuda.h).
#include "cuda/backend_cuda.h"

#include <unordered_map>
#include <vector>

#include "base/error.h"

namespace quanta::cuda {
namespace {

class DeviceBuffer : public Buffer {
public:
    DeviceBuffer(const quanta_cuda_api* api, void* instance, void* base, size_t size)
        : Buffer(base, size), api_(api), instance_(instance) {}
    ~DeviceBuffer() override { api_->release(instance_, base()); }

private:
    const quanta_cuda_api* api_;
    void* instance_;
};

quanta_cuda_tensor describe(const Tensor& t) {
    quanta_cuda_tensor d{};
    d.op = static_cast<int32_t>(t.op);
    d.type = static_cast<uint32_t>(t.type);
    for (int k = 0; k < kMaxDims; ++k) {
        d.ne[k] = t.ne[k];
        d.nb[k] = t.nb[k];
    }
    d.data = t.data;
    for (int k = 0; k < kMaxIntParams; ++k) d.i[k] = t.i[k];
    for (int k = 0; k < kMaxFloatParams; ++k) d.f[k] = t.f[k];
    return d;
}

}  // namespace

CudaBackend::CudaBackend(int device) : api_(status().api) {
    if (!api_) fail(ErrorKind::Unsupported, "CUDA is not available: " + status().reason);
    QUANTA_CHECK_ARG(device >= 0 && device < (int)status().devices.size(),
                     "CUDA device " + std::to_string(device) + " does not exist (" +
                         std::to_string(status().devices.size()) + " found)");
    check(api_->create(device, &instance_), "CUDA backend");
}

CudaBackend::~CudaBackend() { api_->destroy(instance_); }

void CudaBackend::check(int rc, const char* what) const {
    if (rc != 0) fail(ErrorKind::Internal, std::string(what) + ": " + api_->last_error());
}

bool CudaBackend::supports(const Tensor& node) const {
    quanta_cuda_tensor d = describe(node), srcs[kMaxSrc];
    for (int k = 0; k < kMaxSrc; ++k)
        if (node.src[k]) {
            srcs[k] = describe(*node.src[k]);
            d.src[k] = &srcs[k];
        }
    return api_->supports(instance_, &d) == 1;
}

std::unique_ptr<Buffer> CudaBackend::alloc(size_t bytes) {
    void* p = nullptr;
    if (api_->alloc(instance_, &p, bytes) != 0)
        fail(ErrorKind::OutOfMemory, "cannot allocate " + std::to_string(bytes >> 20) + " MiB on the GPU: " +
                                         api_->last_error());
    return std::make_unique<DeviceBuffer>(api_, instance_, p, bytes);
}

std::unique_ptr<Buffer> CudaBackend::place(const void* data, size_t bytes) {
    std::unique_ptr<Buffer> b = alloc(bytes);
    write(b->base(), data, bytes);
    return b;
}

void CudaBackend::write(void* at, const void* src, size_t bytes) { check(api_->write(instance_, at, src, bytes), "upload"); }
void CudaBackend::read(const void* at, void* dst, size_t bytes) { check(api_->read(instance_, at, dst, bytes), "download"); }

void CudaBackend::compute(const Graph& graph) {
    QUANTA_CHECK_ARG(graph.finalized(), "compute: prepare the graph first");
    // Sources always come earlier in the order, so their entries exist when linked.
    const std::vector<Tensor*>& order = graph.order();
    std::vector<quanta_cuda_tensor> nodes(order.size());
    std::unordered_map<const Tensor*, const quanta_cuda_tensor*> index;
    for (size_t i = 0; i < order.size(); ++i) {
        nodes[i] = describe(*order[i]);
        for (int k = 0; k < kMaxSrc; ++k)
            if (order[i]->src[k]) nodes[i].src[k] = index.at(order[i]->src[k]);
        index[order[i]] = &nodes[i];
    }
    const int rc = api_->compute(instance_, nodes.data(), (int)nodes.size());
    if (rc == 2) fail(ErrorKind::InvalidArgument, api_->last_error());  // the same ValueError as the CPU's
    check(rc, "compute");
}

}  // namespace quanta::cuda
