// The backend registry (registry.h).
#include "backends/registry.h"

#include "base/error.h"
#include "core/reference_backend.h"
#include "cpu/backend_cpu.h"
#include "cpu/kernels.h"
#include "cuda/backend_cuda.h"
#include "cuda/loader.h"

namespace quanta::backends {

std::shared_ptr<Backend> make_backend(const std::string& name, const BackendOptions& options) {
    if (name == "cpu") return std::make_shared<cpu::CpuBackend>(options.n_threads);
    if (name == "cuda") return std::make_shared<cuda::CudaBackend>(options.device);
    if (name == "reference") return std::make_shared<ReferenceBackend>();
    fail(ErrorKind::InvalidArgument, "unknown device '" + name + "' (use cpu, cuda or reference)");
}

std::vector<std::string> backend_names() { return {"cpu", "cuda", "reference"}; }

const char* cpu_level() { return cpu::active_kernels().name; }

std::vector<std::string> cpu_levels() {
    std::vector<std::string> out;
    for (cpu::Level l : cpu::available_levels()) out.push_back(cpu::level_name(l));
    return out;
}

void set_cpu_level(const std::string& name) { cpu::set_active_level(cpu::level_from_name(name)); }

std::string cpu_features() { return cpu::cpu_features(); }

const CudaInfo& cuda_info() {
    static const CudaInfo info = [] {
        const cuda::Status& s = cuda::status();
        return CudaInfo{s.library_path, s.device_count, s.devices, s.api != nullptr, s.reason};
    }();
    return info;
}

}  // namespace quanta::backends
