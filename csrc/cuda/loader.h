// Finds and loads libquanta_cuda.so, but only when a CUDA device exists:
// the driver (libcuda.so.1) is probed first, so CPU-only machines never load
// any CUDA code. QUANTA_DEVICE=cpu skips the probe entirely.
#pragma once

#include <string>
#include <vector>

#include "quanta_cuda_abi.h"

namespace quanta::cuda {

struct Status {
    std::string library_path;    // where libquanta_cuda.so was found, or empty
    int device_count = 0;        // devices the driver reports
    std::vector<std::string> devices;
    std::string reason;          // why CUDA is not in use, when it is not
    const quanta_cuda_api* api = nullptr;  // non-null when CUDA is usable
};

// Probes once and caches the answer.
const Status& status();

}  // namespace quanta::cuda
