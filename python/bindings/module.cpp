#include <cstring>

#include "bindings.h"
#include "base/error.h"
#include "backends/registry.h"
#include "core/threadpool.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"

namespace quanta::bindings {

py::tuple numpy_shape(const int64_t* ne, int n_dims) {
    py::tuple t(n_dims);
    for (int d = 0; d < n_dims; ++d) t[d] = ne[n_dims - 1 - d];
    return t;
}

std::vector<int64_t> ggml_dims(const std::vector<int64_t>& shape) {
    QUANTA_CHECK_ARG(!shape.empty() && shape.size() <= 4, "shape must have 1..4 dimensions");
    return std::vector<int64_t>(shape.rbegin(), shape.rend());
}

void bind_errors(py::module_& m) {
    // The exception classes live in quanta/errors.py so they can have
    // several bases (FormatError is also a ValueError); looked up per throw.
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const Error& e) {
            const char* cls = nullptr;
            switch (e.kind()) {
                case ErrorKind::InvalidArgument: PyErr_SetString(PyExc_ValueError, e.what()); return;
                case ErrorKind::Io: PyErr_SetString(PyExc_OSError, e.what()); return;
                case ErrorKind::OutOfMemory: PyErr_SetString(PyExc_MemoryError, e.what()); return;
                case ErrorKind::Internal: PyErr_SetString(PyExc_RuntimeError, e.what()); return;
                case ErrorKind::Format: cls = "FormatError"; break;
                case ErrorKind::Model: cls = "ModelError"; break;
                case ErrorKind::Unsupported: cls = "UnsupportedError"; break;
                case ErrorKind::ContextOverflow: cls = "ContextOverflowError"; break;
            }
            py::object type = py::module_::import("quanta.errors").attr(cls);
            PyErr_SetString(type.ptr(), e.what());
        }
    });
    (void)m;
}

void bind_system(py::module_& m) {
    m.def("version", [] { return std::string(QUANTA_VERSION); });
    m.def("cpu_level", [] { return std::string(backends::cpu_level()); }, "The CPU kernel level in use: scalar, avx2, avx512, neon, neon-dotprod or neon-i8mm.");
    m.def("set_cpu_level", &backends::set_cpu_level,
          "Switches the CPU kernel level (for tests and benchmarks); raises if this CPU lacks it.");
    m.def("cpu_levels", &backends::cpu_levels, "Levels compiled in that this CPU supports, best last.");
    m.def("cpu_features", &backends::cpu_features);
    m.def("backends", &backends::backend_names, "The device names quanta knows.");
    m.def("cuda_status", [] {
        const backends::CudaInfo& s = backends::cuda_info();
        py::dict d;
        d["library"] = s.library.empty() ? py::object(py::none()) : py::object(py::str(s.library));
        d["device_count"] = s.device_count;
        d["devices"] = s.devices;
        d["available"] = s.available;
        d["reason"] = s.reason;
        return d;
    });
    m.def("row_bytes", [](const std::string& type, int64_t n) { return row_bytes(type_from_name(type), n); },
          py::arg("type"), py::arg("n"), "Bytes of one row of n elements stored as `type`.");
    m.def(
        "quantize",
        [](py::array_t<float, py::array::c_style> x, const std::string& qtype, int n_threads) {
            const DType type = type_from_name(qtype);
            QUANTA_CHECK_ARG(x.ndim() == 2, "quantize takes a 2-D float32 array (rows, row_length)");
            const int64_t rows = x.shape(0), n = x.shape(1);
            const size_t row = row_bytes(type, n);
            py::array_t<uint8_t> out({(py::ssize_t)rows, (py::ssize_t)row});
            const float* src = x.data();
            uint8_t* dst = out.mutable_data();
            {
                py::gil_scoped_release release;
                ThreadPool pool(rows * n < (1 << 16) ? 1 : n_threads);
                pool.run([&](int ith, int nth) {
                    for (int64_t r = ith; r < rows; r += nth) quantize_row(type, src + r * n, dst + r * row, n);
                });
            }
            return out;
        },
        py::arg("x"), py::arg("qtype"), py::arg("n_threads") = 0);
    m.def(
        "dequantize",
        [](py::array_t<uint8_t, py::array::c_style> q, const std::string& qtype, std::vector<int64_t> shape) {
            const DType type = type_from_name(qtype);
            const std::vector<int64_t> ne = ggml_dims(shape);
            int64_t rows = 1;
            for (size_t d = 1; d < ne.size(); ++d) rows *= ne[d];
            const size_t row = row_bytes(type, ne[0]);
            QUANTA_CHECK_ARG((size_t)q.size() == row * (size_t)rows,
                             "expected " + std::to_string(row * rows) + " bytes for shape and " + qtype + ", got " +
                                 std::to_string(q.size()));
            py::array_t<float> out(shape);
            const uint8_t* src = q.data();
            float* dst = out.mutable_data();
            {
                py::gil_scoped_release release;
                for (int64_t r = 0; r < rows; ++r) dequantize_row(type, src + r * row, dst + r * ne[0], ne[0]);
            }
            return out;
        },
        py::arg("q"), py::arg("qtype"), py::arg("shape"));
}

}  // namespace quanta::bindings

PYBIND11_MODULE(_core, m) {
    m.doc() = "quanta's C++ core. Use the quanta package, not this module, directly.";
    quanta::bindings::bind_errors(m);
    quanta::bindings::bind_system(m);
    quanta::bindings::bind_gguf(m);
    quanta::bindings::bind_graph(m);
    quanta::bindings::bind_llm(m);
    quanta::bindings::bind_text(m);
    quanta::bindings::bind_sd(m);
    quanta::bindings::bind_diffusion_sampler(m);
}
