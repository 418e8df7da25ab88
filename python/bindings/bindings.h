// The quanta._core extension module is assembled from these parts.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

namespace py = pybind11;

namespace quanta::bindings {

void bind_errors(py::module_& m);
void bind_system(py::module_& m);
void bind_gguf(py::module_& m);
void bind_graph(py::module_& m);
void bind_llm(py::module_& m);
void bind_text(py::module_& m);
void bind_sd(py::module_& m);
void bind_diffusion_sampler(py::module_& m);

// numpy-order shape (outermost first) from ggml-order dims, and back.
py::tuple numpy_shape(const int64_t* ne, int n_dims);
std::vector<int64_t> ggml_dims(const std::vector<int64_t>& numpy_shape);

}  // namespace quanta::bindings
