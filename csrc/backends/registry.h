// The backend registry: the one place that knows every backend. Front ends
// (the C API, the Python bindings) make backends here by name and hand them to
// models; it also answers what the machine offers (CPU kernel levels, CUDA
// devices) without the caller knowing either backend's headers.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"

namespace quanta::backends {

// "cpu", "cuda" or "reference".
// Throws InvalidArgument for an unknown name and Unsupported (with the reason)
// for a backend this machine cannot run.
std::shared_ptr<Backend> make_backend(const std::string& name, const BackendOptions& options = {});
// The names make_backend accepts.
std::vector<std::string> backend_names();

// CPU kernel levels: the one in use, those this CPU runs (best last), and a
// switch for tests and benchmarks (Unsupported when the CPU lacks it).
const char* cpu_level();  // a static string
std::vector<std::string> cpu_levels();
void set_cpu_level(const std::string& name);
std::string cpu_features();

struct CudaInfo {
    std::string library;  // libquanta_cuda.so's path, or empty
    int device_count = 0;
    std::vector<std::string> devices;
    bool available = false;
    std::string reason;  // why CUDA is not usable, when it is not
};
const CudaInfo& cuda_info();

}  // namespace quanta::backends
