// A thin binding of the graph builder, so tests (and later tools) can build
// small graphs from numpy arrays and check each op against an independent
// reference. Shapes are in numpy order; op parameters that name dimensions
// (concat, permute) are in ggml order, as in the C++ API.
#include <cstring>
#include <memory>

#include "bindings.h"
#include "base/error.h"
#include "backends/registry.h"
#include "core/graph.h"
#include "core/op_table.h"

namespace quanta::bindings {
namespace {

class PyGraph {
public:
    Graph graph;
    std::vector<py::object> keep_alive;  // arrays backing External tensors
    std::vector<std::pair<Tensor*, const void*>> constants;  // External tensor -> its array's host memory
    std::vector<Tensor*> matrices;  // constants the backend may pack (Backend::pack_weight), as a model's weights
    std::shared_ptr<Backend> backend;
    std::string backend_key;
    std::vector<std::unique_ptr<Buffer>> placed;  // the constants on the backend
    std::vector<std::unique_ptr<Buffer>> packs;   // and the matrices' packed copies, made once per backend
    std::unique_ptr<Buffer> arena;

    // `array` holds the elements (float32, float16, int32, or any dtype with
    // type= naming a plain type of its item size), or for quantized types
    // the raw blocks as uint8 of shape (rows, bytes_per_row).
    Tensor* constant(py::array array, const std::string& type, bool pack) {
        py::array c = py::array::ensure(array, py::array::c_style);
        const DType t = type.empty() ? dtype_of(c) : type_from_name(type);
        const TypeInfo& info = type_info(t);
        std::vector<int64_t> shape(c.shape(), c.shape() + c.ndim());
        if (c.itemsize() == 1 && t != DType::I8) {
            QUANTA_CHECK_ARG(c.ndim() == 2 && shape[1] % (int64_t)info.block_bytes == 0,
                             "raw blocks must be uint8 of shape (rows, bytes_per_row)");
            shape[1] = shape[1] / (int64_t)info.block_bytes * info.block_size;
        } else {
            QUANTA_CHECK_ARG(info.block_size == 1 && (size_t)c.itemsize() == info.block_bytes,
                             std::string("array items do not match type ") + info.name);
        }
        Tensor* out = graph.external(t, ggml_dims(shape), c.data());
        keep_alive.push_back(c);
        constants.push_back({out, c.data()});
        if (pack) matrices.push_back(out);
        return out;
    }

    static DType dtype_of(const py::array& a) {
        if (a.dtype().is(py::dtype::of<float>())) return DType::F32;
        if (a.dtype().is(py::dtype::of<int32_t>())) return DType::I32;
        if (a.dtype().is(py::dtype("float16"))) return DType::F16;
        fail(ErrorKind::InvalidArgument, "pass type= for arrays that are not float32, float16 or int32");
    }

    Backend& backend_for(const std::string& device, int n_threads) {
        const std::string key = device + "/" + std::to_string(n_threads);
        if (!backend || backend_key != key) {
            BackendOptions options;
            options.n_threads = n_threads;
            backend = backends::make_backend(device, options);
            backend_key = key;
            packs.clear();
        }
        return *backend;
    }

    py::list run(const std::vector<Tensor*>& outputs, const py::dict& inputs, const std::string& device, int n_threads) {
        for (Tensor* o : outputs) graph.mark_output(o);
        Backend& be = backend_for(device, n_threads);
        // Constants are placed on the backend before the arena binds views of them.
        placed.clear();
        for (auto& [t, host] : constants) {
            placed.push_back(be.place(host, t->n_bytes()));
            t->data = placed.back()->base();
        }
        if (packs.empty() && !matrices.empty())
            for (Tensor* t : matrices) {
                packs.push_back(be.pack_weight(*t, [](const void*, size_t) {}));  // numpy owns the rows
                t->packed = packs.back() ? packs.back()->base() : nullptr;
            }
        arena = be.prepare(graph);
        for (auto item : inputs) {
            Tensor* t = item.first.cast<Tensor*>();
            QUANTA_CHECK_ARG(t->kind == TensorKind::Input, "inputs must be tensors made by input()");
            py::array a = py::array::ensure(item.second, py::array::c_style);
            QUANTA_CHECK_ARG((size_t)a.nbytes() == t->n_bytes(), "input '" + t->name + "' has the wrong size");
            be.set_tensor(t, a.data(), a.nbytes());
        }
        {
            py::gil_scoped_release release;
            be.compute(graph);
        }
        py::list results;
        for (Tensor* o : outputs) {
            QUANTA_CHECK_ARG(o->type == DType::F32 || o->type == DType::F16 || o->type == DType::I32,
                             "outputs must be f32, f16 or i32");
            const char* np_type = o->type == DType::F32 ? "float32" : o->type == DType::F16 ? "float16" : "int32";
            py::array a(py::dtype(np_type), numpy_shape(o->ne, o->n_dims).cast<std::vector<int64_t>>());
            be.get_tensor(o, a.mutable_data(), a.nbytes());
            results.append(a);
        }
        return results;
    }
};

}  // namespace

void bind_graph(py::module_& m) {
    m.def("op_names", [] {
        std::vector<std::string> names;
        for (int i = 0; i < kOpCount; ++i) names.push_back(op_name(static_cast<Op>(i)));
        return names;
    }, "Every op of the op table, by id.");
    py::class_<Tensor>(m, "Tensor")
        .def_property_readonly("shape", [](const Tensor& t) { return numpy_shape(t.ne, t.n_dims); })
        .def_property_readonly("type", [](const Tensor& t) { return std::string(type_name(t.type)); })
        .def_property_readonly("op", [](const Tensor& t) { return std::string(op_name(t.op)); })
        .def_property_readonly("contiguous", &Tensor::is_contiguous)
        .def_readwrite("name", &Tensor::name);

    using R = py::return_value_policy;
    auto ref = R::reference_internal;
    py::class_<PyGraph>(m, "Graph")
        .def(py::init<>())
        .def("constant", &PyGraph::constant, py::arg("array"), py::arg("type") = "", py::arg("pack") = false, ref,
             "A weight-like leaf backed by `array` (kept alive by the graph). pack: a matrix the backend may "
             "copy into its own layout for matmul on the first run, as it does a model's weights at load.")
        .def("input", [](PyGraph& g, const std::string& type, const std::vector<int64_t>& shape, const std::string& name) {
            return g.graph.input(type_from_name(type), ggml_dims(shape), name);
        }, py::arg("type"), py::arg("shape"), py::arg("name") = "", ref)
        .def("add", [](PyGraph& g, Tensor* a, Tensor* b) { return g.graph.add(a, b); }, ref)
        .def("mul", [](PyGraph& g, Tensor* a, Tensor* b) { return g.graph.mul(a, b); }, ref)
        .def("scale", [](PyGraph& g, Tensor* a, float s) { return g.graph.scale(a, s); }, ref)
        .def("silu", [](PyGraph& g, Tensor* a) { return g.graph.silu(a); }, ref)
        .def("gelu", [](PyGraph& g, Tensor* a) { return g.graph.gelu(a); }, ref)
        .def(
            "glu",
            [](PyGraph& g, Tensor* gate, Tensor* up, const std::string& act) {
                if (act != "silu" && act != "gelu") throw py::value_error("glu: activation must be 'silu' or 'gelu'");
                return g.graph.glu(gate, up, act == "silu" ? GluAct::Silu : GluAct::Gelu);
            },
            py::arg("gate"), py::arg("up"), py::arg("act") = "silu", ref)
        .def("matmul", [](PyGraph& g, Tensor* w, Tensor* x) { return g.graph.matmul(w, x); }, ref)
        .def("rms_norm", [](PyGraph& g, Tensor* x, float eps) { return g.graph.rms_norm(x, eps); }, ref)
        .def("rope", [](PyGraph& g, Tensor* x, Tensor* pos, int n_rot, const std::string& mode, float base, float scale,
                         Tensor* factors) {
            QUANTA_CHECK_ARG(mode == "normal" || mode == "neox", "rope mode is 'normal' or 'neox'");
            return g.graph.rope(x, pos, n_rot, mode == "neox" ? RopeMode::Neox : RopeMode::Normal, base, scale, factors);
        }, py::arg("x"), py::arg("pos"), py::arg("n_rot"), py::arg("mode"), py::arg("base"), py::arg("freq_scale") = 1.0f,
           py::arg("freq_factors") = nullptr, ref)
        .def("softmax", [](PyGraph& g, Tensor* x, Tensor* mask, float scale) { return g.graph.softmax(x, mask, scale); },
             py::arg("x"), py::arg("mask").none(true), py::arg("scale") = 1.0f, ref)
        .def("get_rows", [](PyGraph& g, Tensor* table, Tensor* ids) { return g.graph.get_rows(table, ids); }, ref)
        .def("concat", [](PyGraph& g, Tensor* a, Tensor* b, int dim) { return g.graph.concat(a, b, dim); }, ref)
        .def("group_norm", [](PyGraph& g, Tensor* x, int n_groups, float eps, Tensor* moments) {
            return g.graph.group_norm(x, n_groups, eps, moments);
        }, py::arg("x"), py::arg("n_groups"), py::arg("eps"), py::arg("moments") = nullptr, ref)
        .def("group_moments", [](PyGraph& g, Tensor* x, Tensor* window, int n_groups, int scale) {
            return g.graph.group_moments(x, window, n_groups, scale);
        }, py::arg("x"), py::arg("window"), py::arg("n_groups"), py::arg("scale") = 1, ref)
        .def("layer_norm", [](PyGraph& g, Tensor* x, float eps) { return g.graph.layer_norm(x, eps); }, ref)
        .def("upsample", [](PyGraph& g, Tensor* x, int factor) { return g.graph.upsample(x, factor); },
             py::arg("x"), py::arg("factor") = 2, ref)
        .def("gelu_erf", [](PyGraph& g, Tensor* a) { return g.graph.gelu_erf(a); }, ref)
        .def("quick_gelu", [](PyGraph& g, Tensor* a) { return g.graph.quick_gelu(a); }, ref)
        .def("geglu", [](PyGraph& g, Tensor* x) { return g.graph.geglu(x); }, ref)
        .def("timestep_embedding", [](PyGraph& g, Tensor* t, int dim, bool flip_sin_to_cos, float shift) {
            return g.graph.timestep_embedding(t, dim, flip_sin_to_cos, shift);
        }, py::arg("t"), py::arg("dim"), py::arg("flip_sin_to_cos") = true, py::arg("downscale_freq_shift") = 0.0f, ref)
        .def("copy", [](PyGraph& g, Tensor* a, const std::string& type) { return g.graph.copy(a, type_from_name(type)); }, ref)
        .def("cont", [](PyGraph& g, Tensor* a) { return g.graph.cont(a); }, ref)
        .def("copy_into", [](PyGraph& g, Tensor* src, Tensor* dst) { return g.graph.copy_into(src, dst); }, ref)
        .def("attention", [](PyGraph& g, Tensor* q, Tensor* k, Tensor* v, Tensor* cells, float scale) {
            return g.graph.attention(q, k, v, cells, scale);
        }, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("cells"), py::arg("scale"), ref)
        .def("conv2d", [](PyGraph& g, Tensor* x, Tensor* w, Tensor* bias, int stride, int padding, int padding_end) {
            return g.graph.conv2d(x, w, bias, stride, padding, padding_end);
        }, py::arg("x"), py::arg("w"), py::arg("bias").none(true) = nullptr, py::arg("stride") = 1, py::arg("padding") = 0,
           py::arg("padding_end") = -1, ref,
           "x: numpy [N, Cin, H, W]; w: [Cout, Cin, KH, KW] (torch's layout) or, flattened, [Cout, Cin * KH * KW].")
        .def("dense_attention", [](PyGraph& g, Tensor* q, Tensor* k, Tensor* v, float scale) {
            return g.graph.dense_attention(q, k, v, scale);
        }, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("scale"), ref,
           "q: numpy [N, H, Tq, d]; k, v: [N, H, Tk, d]; returns [N, Tq, H, dv].")
        .def("set_rows", [](PyGraph& g, Tensor* dst, Tensor* rows, Tensor* ids) { return g.graph.set_rows(dst, rows, ids); },
             py::arg("dst"), py::arg("rows"), py::arg("ids"), ref)
        .def("reshape", [](PyGraph& g, Tensor* a, const std::vector<int64_t>& shape) {
            return g.graph.reshape(a, ggml_dims(shape));
        }, ref)
        .def("transpose", [](PyGraph& g, Tensor* a) { return g.graph.transpose(a); }, ref)
        .def("permute", [](PyGraph& g, Tensor* a, int a0, int a1, int a2, int a3) {
            return g.graph.permute(a, a0, a1, a2, a3);
        }, ref)
        .def("view", [](PyGraph& g, Tensor* a, const std::vector<int64_t>& shape, const std::vector<size_t>& row_strides,
                        size_t offset) {
            return g.graph.view(a, ggml_dims(shape), row_strides, offset);
        }, py::arg("a"), py::arg("shape"), py::arg("row_strides"), py::arg("offset") = 0, ref,
           "A view; shape in numpy order, row_strides in ggml order (nb[1], nb[2], ...).")
        .def("run", &PyGraph::run, py::arg("outputs"), py::arg("inputs") = py::dict(), py::arg("device") = "cpu",
             py::arg("n_threads") = 0,
             "Marks `outputs`, runs the graph on device 'cpu', 'cuda' or 'reference' (the op table's scalar "
             "references), returns them as numpy arrays.")
        .def_property_readonly("arena_bytes", [](const PyGraph& g) { return g.graph.plan().arena_bytes; })
        .def_property_readonly("naive_bytes", [](const PyGraph& g) { return g.graph.plan().naive_bytes; })
        .def_property_readonly("n_nodes", [](const PyGraph& g) { return g.graph.order().size(); });
}

}  // namespace quanta::bindings
