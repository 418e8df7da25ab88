// Metadata and weight lookups shared by every model (gguf_binding.h).
#include "models/gguf_binding.h"

#include <cmath>

#include "base/error.h"

namespace quanta::models {

std::string dims_string(const int64_t* ne, int n) {
    std::string s = "[";
    for (int d = 0; d < n; ++d) s += std::to_string(ne[d]) + (d + 1 < n ? ", " : "]");
    return s;
}

void MetadataReader::bad(const std::string& key, const std::string& why) const {
    fail(ErrorKind::Model, file_.label() + ": metadata key '" + prefix_ + key + "' " + why);
}

int64_t MetadataReader::integer(const std::string& key, int64_t fallback, bool required, int64_t min,
                                int64_t max) const {
    const gguf::Value* v = find(key);
    if (!v) {
        if (required) fail(ErrorKind::Model, file_.label() + ": missing metadata key '" + prefix_ + key + "'");
        return fallback;
    }
    if (v->is_array() || !gguf::is_integer(v->type)) bad(key, "is not a single integer");
    const int64_t x = v->int_at();
    if (x < min || x > max)
        bad(key, "= " + std::to_string(x) + " is out of range [" + std::to_string(min) + ", " + std::to_string(max) + "]");
    return x;
}

float MetadataReader::real(const std::string& key, float fallback) const {
    const gguf::Value* v = find(key);
    if (!v) return fallback;
    if (v->is_array() || !(gguf::is_float(v->type) || gguf::is_integer(v->type))) bad(key, "is not a number");
    const double x = v->float_at();
    if (!std::isfinite(x) || x <= 0) bad(key, "must be positive");
    return (float)x;
}

std::string MetadataReader::text(const std::string& key, const std::string& fallback) const {
    const gguf::Value* v = find(key);
    if (!v) return fallback;
    if (v->type != gguf::ValueType::String) bad(key, "is not a string");
    return v->str;
}

std::vector<double> MetadataReader::numbers(const std::string& key) const {
    const gguf::Value* v = find(key);
    if (!v) return {};
    if (!v->is_array() || !(gguf::is_float(v->elem) || gguf::is_integer(v->elem))) bad(key, "is not a numeric array");
    std::vector<double> out(v->count);
    for (uint64_t i = 0; i < v->count; ++i) {
        out[i] = v->float_at(i);
        if (!std::isfinite(out[i])) bad(key, "holds a value that is not finite");
    }
    return out;
}

Weight Binder::get(const std::string& name, std::vector<int64_t> ne, bool required) const {
    const gguf::TensorInfo* t = file_.find_tensor(name);
    if (!t) {
        if (required) fail(ErrorKind::Model, file_.label() + ": missing tensor '" + name + "'");
        return nullptr;
    }
    bool ok = t->n_dims <= (int)ne.size();
    for (size_t d = 0; d < ne.size() && ok; ++d) ok = ne[d] == 0 || t->ne[d] == ne[d];
    for (int d = (int)ne.size(); d < gguf::kMaxDims && ok; ++d) ok = t->ne[d] == 1;
    if (!ok)
        fail(ErrorKind::Model, file_.label() + ": tensor '" + name + "' has shape " + dims_string(t->ne, t->n_dims) +
                                   ", expected " + dims_string(ne.data(), (int)ne.size()));
    if (!type_info(t->type).can_dequantize)
        fail(ErrorKind::Unsupported, file_.label() + ": tensor '" + name + "' has type " + type_name(t->type) +
                                         ", which quanta cannot compute with");
    if (ne.size() == 1 && t->type != DType::F32)
        fail(ErrorKind::Model, file_.label() + ": tensor '" + name + "' must be f32, not " + type_name(t->type));
    return t;
}

int64_t Binder::dim(const std::string& name, int d) const {
    const gguf::TensorInfo* t = file_.find_tensor(name);
    if (!t) fail(ErrorKind::Model, file_.label() + ": missing tensor '" + name + "'");
    return t->ne[d];
}

}  // namespace quanta::models
