// The backend registry: the one place that knows every backend. Front ends
// (the C API, the Python bindings) make backends here by name and hand them to
// models; it also answers what the machine offers (CPU kernel levels, CUDA
// devices) without the caller knowing either backend's headers.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "core/backend.h"

namespace quanta::backends {

// "cpu", "cuda" or "reference" (load_on, below, also takes "auto").
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

// Loads a model where `device` says: "cpu", "cuda" or "reference" as asked
// (make_backend's errors), or "auto": on the GPU when one is usable and
// `load(backend)` succeeds there, else on the CPU. A GPU attempt that fails
// for want of memory, of a kernel, or of a working device (OutOfMemory,
// Unsupported, Internal) falls back; the file's own faults (Format, Model)
// are the caller's whichever backend read them. The model's `device_note`
// is set to one line saying why auto chose the CPU, and left empty otherwise.
template <class Load>
auto load_on(const std::string& device, const BackendOptions& options, Load&& load)
    -> decltype(load(std::shared_ptr<Backend>())) {
    if (device != "auto") return load(make_backend(device, options));
    const CudaInfo& cuda = cuda_info();
    std::string note = "no GPU in use: " + cuda.reason;
    if (cuda.available) {
        try {
            return load(make_backend("cuda", options));
        } catch (const Error& e) {
            if (e.kind() != ErrorKind::OutOfMemory && e.kind() != ErrorKind::Unsupported &&
                e.kind() != ErrorKind::Internal)
                throw;
            note = "the GPU (" + cuda.devices.front() + ") could not run it: " + e.what();
        }
    }
    auto model = load(make_backend("cpu", options));
    model->device_note = note;
    return model;
}

}  // namespace quanta::backends
