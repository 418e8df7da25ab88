#include "cuda/loader.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdlib>
#include <mutex>

namespace quanta::cuda {
namespace {

bool file_exists(const std::string& p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The folder of the shared object this code is linked into (the Python
// module or libquanta.so); libquanta_cuda.so is installed beside it or in lib/.
std::string own_directory() {
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(&own_directory), &info) == 0 || !info.dli_fname) return "";
    const std::string path = info.dli_fname;
    const size_t slash = path.find_last_of('/');
    return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::string find_library() {
    if (const char* p = std::getenv("QUANTA_CUDA_LIB"); p && *p) return file_exists(p) ? p : "";
    const std::string dir = own_directory();
    for (const std::string& candidate : {dir + "/libquanta_cuda.so", dir + "/lib/libquanta_cuda.so"})
        if (file_exists(candidate)) return candidate;
    return "";
}

// Asks the driver API directly, without loading any CUDA code of ours.
int driver_device_count(std::string* reason) {
    void* driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!driver) {
        *reason = "no NVIDIA driver (libcuda.so.1 not found)";
        return 0;
    }
    using InitFn = int (*)(unsigned);
    using CountFn = int (*)(int*);
    auto init = reinterpret_cast<InitFn>(dlsym(driver, "cuInit"));
    auto count = reinterpret_cast<CountFn>(dlsym(driver, "cuDeviceGetCount"));
    int n = 0;
    if (!init || !count || init(0) != 0 || count(&n) != 0) {
        *reason = "the NVIDIA driver reports no usable device";
        n = 0;
    } else if (n == 0) {
        *reason = "no CUDA device";
    }
    // The driver stays loaded: unloading it after cuInit is not supported.
    return n;
}

Status probe() {
    Status s;
    s.library_path = find_library();
    if (const char* dev = std::getenv("QUANTA_DEVICE"); dev && std::string(dev) == "cpu") {
        s.reason = "disabled by QUANTA_DEVICE=cpu";
        return s;
    }
    s.device_count = driver_device_count(&s.reason);
    if (s.device_count == 0) return s;
    if (s.library_path.empty()) {
        s.reason = "quanta was built without CUDA (libquanta_cuda.so not found)";
        return s;
    }
    void* lib = dlopen(s.library_path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        s.reason = std::string("cannot load ") + s.library_path + ": " + dlerror();
        return s;
    }
    auto get_api = reinterpret_cast<quanta_cuda_get_api_fn>(dlsym(lib, "quanta_cuda_get_api"));
    const quanta_cuda_api* api = get_api ? get_api() : nullptr;
    if (!api || api->abi_version != QUANTA_CUDA_ABI_VERSION) {
        s.reason = s.library_path + " has a different ABI version; reinstall quanta";
        return s;
    }
    const int n = api->device_count();
    if (n <= 0) {
        s.reason = std::string("CUDA runtime: ") + (n < 0 ? api->last_error() : "no device");
        return s;
    }
    for (int d = 0; d < n; ++d) {
        char name[256] = "";
        api->device_name(d, name, sizeof name);
        s.devices.push_back(name);
    }
    s.api = api;
    return s;
}

}  // namespace

const Status& status() {
    static std::once_flag once;
    static Status s;
    std::call_once(once, [] { s = probe(); });
    return s;
}

}  // namespace quanta::cuda
