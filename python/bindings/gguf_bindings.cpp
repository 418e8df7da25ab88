// GGUF reader and writer bindings. Metadata crosses into Python as plain
// values (int, float, bool, str, lists); type names travel separately so a
// file can be rewritten with the same types.
#include <cstring>

#include "bindings.h"
#include "base/error.h"
#include "gguf/reader.h"
#include "gguf/writer.h"
#include "quant/dequantize.h"

namespace quanta::bindings {
namespace {

using gguf::Value;
using gguf::ValueType;

// GGUF strings are bytes; return str when they are valid UTF-8, else bytes.
py::object to_python_string(const std::string& s) {
    PyObject* u = PyUnicode_DecodeUTF8(s.data(), (Py_ssize_t)s.size(), "strict");
    if (u) return py::reinterpret_steal<py::object>(u);
    PyErr_Clear();
    return py::bytes(s);
}

py::object scalar_at(const Value& v, uint64_t i) {
    const ValueType t = v.numeric_type();
    if (t == ValueType::Bool) return py::bool_(v.int_at(i) != 0);
    if (gguf::is_float(t)) return py::float_(v.float_at(i));
    if (t == ValueType::U64) return py::int_(v.uint_at(i));
    return py::int_(v.int_at(i));
}

py::object to_python(const Value& v) {
    if (v.type == ValueType::String) return to_python_string(v.str);
    if (!v.is_array()) return scalar_at(v, 0);
    py::list out(v.count);
    for (uint64_t i = 0; i < v.count; ++i) {
        if (v.elem == ValueType::String) out[i] = to_python_string(v.strings[i]);
        else if (v.elem == ValueType::Array) out[i] = to_python(v.arrays[i]);
        else out[i] = scalar_at(v, i);
    }
    return out;
}

// "u32", "string", "array[f32]", "array[array[i32]]": the exact GGUF type.
std::string type_spec(const Value& v) {
    if (!v.is_array()) return gguf::value_type_name((uint32_t)v.type);
    if (v.elem == ValueType::Array) return "array[" + (v.arrays.empty() ? std::string("array[u8]") : type_spec(v.arrays[0])) + "]";
    return std::string("array[") + gguf::value_type_name((uint32_t)v.elem) + "]";
}

ValueType scalar_type_from_name(const std::string& name) {
    for (uint32_t id = 0; id <= 12; ++id)
        if (name == gguf::value_type_name(id) && id != (uint32_t)ValueType::Array) return (ValueType)id;
    fail(ErrorKind::InvalidArgument, "unknown GGUF value type '" + name + "'");
}

// Builds a Value of type `spec` from a Python object.
Value from_python(const py::handle& obj, const std::string& spec) {
    if (spec.rfind("array[", 0) == 0 && spec.back() == ']') {
        const std::string inner = spec.substr(6, spec.size() - 7);
        QUANTA_CHECK_ARG(py::isinstance<py::sequence>(obj) || py::isinstance<py::array>(obj),
                         "a GGUF array needs a sequence");
        if (inner == "string") {
            std::vector<std::string> items;
            for (const py::handle& item : obj) items.push_back(py::cast<std::string>(item));
            return Value::make_string_array(std::move(items));
        }
        if (inner.rfind("array[", 0) == 0) {
            std::vector<Value> items;
            for (const py::handle& item : obj) items.push_back(from_python(item, inner));
            return Value::make_array_of_arrays(std::move(items));
        }
        const ValueType elem = scalar_type_from_name(inner);
        std::vector<uint8_t> bytes;
        uint64_t count = 0;
        for (const py::handle& item : obj) {
            const Value one = from_python(item, inner);
            bytes.insert(bytes.end(), one.raw.begin(), one.raw.end());
            ++count;
        }
        return Value::make_numeric_array(elem, count, std::move(bytes));
    }
    if (spec == "string") {
        if (py::isinstance<py::bytes>(obj)) return Value::make_string(py::cast<std::string>(obj));
        return Value::make_string(py::cast<std::string>(py::str(obj)));
    }
    const ValueType t = scalar_type_from_name(spec);
    if (t == ValueType::Bool) return Value::make_bool(py::cast<bool>(obj));
    if (gguf::is_float(t)) return Value::make_number(t, py::cast<double>(obj), 0, false);
    QUANTA_CHECK_ARG(py::isinstance<py::int_>(obj) || py::hasattr(obj, "__index__"),
                     "GGUF type " + spec + " needs an integer, got " + std::string(py::str(py::type::handle_of(obj))));
    if (t == ValueType::U64) return Value::make_u64(py::cast<uint64_t>(obj));
    return Value::make_number(t, 0, py::cast<int64_t>(obj), true);
}

py::array tensor_to_f32(const gguf::TensorInfo& t) {
    py::array_t<float> out(numpy_shape(t.ne, t.n_dims).cast<std::vector<int64_t>>());
    float* dst = out.mutable_data();
    const size_t row = row_bytes(t.type, t.ne[0]);
    {
        py::gil_scoped_release release;
        for (int64_t r = 0; r < t.n_rows(); ++r) dequantize_row(t.type, t.data + (size_t)r * row, dst + r * t.ne[0], t.ne[0]);
    }
    return out;
}

const gguf::TensorInfo& tensor_named(const gguf::File& f, const std::string& name) {
    const gguf::TensorInfo* t = f.find_tensor(name);
    if (!t) throw py::key_error("no tensor named '" + name + "' in " + f.label());
    return *t;
}

}  // namespace

void bind_gguf(py::module_& m) {
    py::class_<gguf::File, std::shared_ptr<gguf::File>>(m, "GGUFFile")
        .def_static("open", &gguf::File::open, py::arg("path"), py::call_guard<py::gil_scoped_release>())
        .def_static("from_bytes", [](py::bytes data, const std::string& label) {
            const std::string_view s = data;
            return gguf::File::from_bytes(s.data(), s.size(), label);
        }, py::arg("data"), py::arg("label") = "<bytes>")
        .def_property_readonly("path", &gguf::File::label)
        .def_property_readonly("version", &gguf::File::version)
        .def_property_readonly("alignment", &gguf::File::alignment)
        .def_property_readonly("data_offset", &gguf::File::data_offset)
        .def_property_readonly("size", &gguf::File::size)
        .def("metadata", [](const gguf::File& f) {
            py::dict d;
            for (const auto& kv : f.metadata()) d[py::str(kv.key)] = to_python(kv.value);
            return d;
        }, "All key/value pairs as a dict, in file order.")
        .def("metadata_types", [](const gguf::File& f) {
            py::dict d;
            for (const auto& kv : f.metadata()) d[py::str(kv.key)] = type_spec(kv.value);
            return d;
        }, "Each key's exact GGUF type: 'u32', 'string', 'array[f32]', ...")
        .def("tensor_infos", [](const gguf::File& f) {
            py::list out;
            for (const auto& t : f.tensors())
                out.append(py::make_tuple(t.name, numpy_shape(t.ne, t.n_dims), type_name(t.type), t.offset, t.nbytes));
            return out;
        }, "(name, numpy shape, type name, data offset, byte size) per tensor, in file order.")
        .def("tensor", [](const gguf::File& f, const std::string& name) { return tensor_to_f32(tensor_named(f, name)); },
             py::arg("name"), "The tensor dequantized to a float32 array in numpy shape.")
        .def("tensor_bytes", [](std::shared_ptr<gguf::File> f, const std::string& name) {
            // A zero-copy uint8 view of the mapped bytes, rows x bytes-per-row; it keeps the file open.
            const gguf::TensorInfo& t = tensor_named(*f, name);
            const size_t row = row_bytes(t.type, t.ne[0]);
            py::capsule owner(new std::shared_ptr<gguf::File>(f),
                              [](void* p) { delete static_cast<std::shared_ptr<gguf::File>*>(p); });
            py::array_t<uint8_t> a({(py::ssize_t)t.n_rows(), (py::ssize_t)row}, {(py::ssize_t)row, (py::ssize_t)1},
                                   t.data, owner);
            py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
            return a;
        }, py::arg("name"));

    py::class_<gguf::Writer>(m, "GGUFWriterCore")
        .def(py::init<std::string, size_t>(), py::arg("path"), py::arg("alignment") = 32)
        .def("set", [](gguf::Writer& w, const std::string& key, py::handle value, const std::string& spec) {
            w.set(key, from_python(value, spec));
        }, py::arg("key"), py::arg("value"), py::arg("type"))
        .def("add_tensor", [](gguf::Writer& w, const std::string& name, const std::string& type,
                              const std::vector<int64_t>& shape) {
            w.add_tensor(name, type_from_name(type), ggml_dims(shape));
        }, py::arg("name"), py::arg("type"), py::arg("shape"))
        .def("write_tensor", [](gguf::Writer& w, const std::string& name, py::buffer data) {
            const py::buffer_info info = data.request();
            py::ssize_t expect = info.itemsize;
            for (int d = (int)info.ndim - 1; d >= 0; --d) {
                QUANTA_CHECK_ARG(info.shape[d] == 1 || info.strides[d] == expect, "tensor data must be C-contiguous");
                expect *= info.shape[d];
            }
            const size_t nbytes = (size_t)info.size * (size_t)info.itemsize;
            py::gil_scoped_release release;
            w.write_tensor(name, info.ptr, nbytes);
        }, py::arg("name"), py::arg("data"))
        .def("write_tensor_data", [](gguf::Writer& w, py::buffer data) {
            // The next piece of the tensor being streamed (any C-contiguous buffer).
            const py::buffer_info info = data.request();
            QUANTA_CHECK_ARG(PyBuffer_IsContiguous(info.view(), 'C'), "tensor data must be C-contiguous");
            const size_t nbytes = (size_t)info.size * (size_t)info.itemsize;
            py::gil_scoped_release release;
            w.write_tensor_data(info.ptr, nbytes);
        }, py::arg("data"))
        .def("finish", &gguf::Writer::finish, py::call_guard<py::gil_scoped_release>())
        .def("discard", &gguf::Writer::discard);
}

}  // namespace quanta::bindings
