// The C API over the C++ core: every entry point catches C++ exceptions at
// the boundary and turns them into a status code plus a thread-local message.
#include "api/quanta.h"

#include <new>
#include <string>

#include "base/error.h"
#include "backends/registry.h"
#include "gguf/reader.h"
#include "quant/dequantize.h"

struct quanta_gguf {
    std::shared_ptr<quanta::gguf::File> file;
};

namespace {

thread_local std::string g_last_error;

quanta_status status_for(quanta::ErrorKind kind) {
    switch (kind) {
        case quanta::ErrorKind::InvalidArgument: return QUANTA_ERR_INVALID_ARGUMENT;
        case quanta::ErrorKind::Io: return QUANTA_ERR_IO;
        case quanta::ErrorKind::Format: return QUANTA_ERR_FORMAT;
        case quanta::ErrorKind::Model: return QUANTA_ERR_MODEL;
        case quanta::ErrorKind::Unsupported: return QUANTA_ERR_UNSUPPORTED;
        case quanta::ErrorKind::OutOfMemory: return QUANTA_ERR_OUT_OF_MEMORY;
        case quanta::ErrorKind::ContextOverflow: return QUANTA_ERR_CONTEXT_OVERFLOW;
        case quanta::ErrorKind::Internal: return QUANTA_ERR_INTERNAL;
    }
    return QUANTA_ERR_INTERNAL;
}

quanta_status set_error(quanta_status status, const std::string& message) {
    g_last_error = message;
    return status;
}

// Runs `body`, mapping any exception to a status and message.
template <typename F>
quanta_status guarded(F&& body) {
    try {
        body();
        return QUANTA_OK;
    } catch (const quanta::Error& e) {
        return set_error(status_for(e.kind()), e.what());
    } catch (const std::bad_alloc&) {
        return set_error(QUANTA_ERR_OUT_OF_MEMORY, "out of memory");
    } catch (const std::exception& e) {
        return set_error(QUANTA_ERR_INTERNAL, e.what());
    }
}

#define QUANTA_REQUIRE(cond, message) \
    if (!(cond)) return set_error(QUANTA_ERR_INVALID_ARGUMENT, message)

const quanta::gguf::Value* find_value(const quanta_gguf* f, const char* key) {
    const quanta::gguf::Value* v = f->file->find(key);
    if (!v) quanta::fail(quanta::ErrorKind::InvalidArgument, std::string("no metadata key '") + key + "'");
    return v;
}

}  // namespace

extern "C" {

const char* quanta_version(void) { return QUANTA_VERSION; }
const char* quanta_last_error(void) { return g_last_error.c_str(); }

const char* quanta_status_name(quanta_status status) {
    switch (status) {
        case QUANTA_OK: return "ok";
        case QUANTA_ERR_INVALID_ARGUMENT: return "invalid argument";
        case QUANTA_ERR_IO: return "i/o error";
        case QUANTA_ERR_FORMAT: return "format error";
        case QUANTA_ERR_MODEL: return "model error";
        case QUANTA_ERR_UNSUPPORTED: return "unsupported";
        case QUANTA_ERR_OUT_OF_MEMORY: return "out of memory";
        case QUANTA_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

const char* quanta_cpu_level(void) {
    const char* name = "scalar";
    if (guarded([&] { name = quanta::backends::cpu_level(); }) != QUANTA_OK) return "scalar";
    return name;
}

quanta_status quanta_set_cpu_level(const char* level) {
    QUANTA_REQUIRE(level, "level is NULL");
    return guarded([&] { quanta::backends::set_cpu_level(level); });
}

quanta_status quanta_gguf_open(const char* path, quanta_gguf** out) {
    QUANTA_REQUIRE(path && out, "path and out must not be NULL");
    *out = nullptr;
    return guarded([&] { *out = new quanta_gguf{quanta::gguf::File::open(path)}; });
}

void quanta_gguf_close(quanta_gguf* file) { delete file; }

uint32_t quanta_gguf_version(const quanta_gguf* file) { return file ? file->file->version() : 0; }

int64_t quanta_gguf_n_metadata(const quanta_gguf* file) {
    return file ? (int64_t)file->file->metadata().size() : 0;
}

const char* quanta_gguf_metadata_key(const quanta_gguf* file, int64_t i) {
    if (!file || i < 0 || i >= (int64_t)file->file->metadata().size()) return nullptr;
    return file->file->metadata()[(size_t)i].key.c_str();
}

int64_t quanta_gguf_find_metadata(const quanta_gguf* file, const char* key) {
    if (!file || !key) return -1;
    const auto& kv = file->file->metadata();
    for (size_t i = 0; i < kv.size(); ++i)
        if (kv[i].key == key) return (int64_t)i;
    return -1;
}

quanta_status quanta_gguf_metadata_type(const quanta_gguf* file, int64_t i, quanta_value_type* type,
                                        quanta_value_type* elem_type, uint64_t* count) {
    QUANTA_REQUIRE(file && type, "file and type must not be NULL");
    QUANTA_REQUIRE(i >= 0 && i < (int64_t)file->file->metadata().size(), "metadata index out of range");
    const quanta::gguf::Value& v = file->file->metadata()[(size_t)i].value;
    *type = static_cast<quanta_value_type>(v.type);
    if (elem_type) *elem_type = static_cast<quanta_value_type>(v.is_array() ? v.elem : v.type);
    if (count) *count = v.is_array() ? v.count : 1;
    return QUANTA_OK;
}

quanta_status quanta_gguf_get_string(const quanta_gguf* file, const char* key, const char** out) {
    QUANTA_REQUIRE(file && key && out, "file, key and out must not be NULL");
    return guarded([&] {
        const quanta::gguf::Value* v = find_value(file, key);
        QUANTA_CHECK_ARG(v->type == quanta::gguf::ValueType::String, std::string("'") + key + "' is not a string");
        *out = v->str.c_str();
    });
}

quanta_status quanta_gguf_get_int(const quanta_gguf* file, const char* key, int64_t* out) {
    QUANTA_REQUIRE(file && key && out, "file, key and out must not be NULL");
    return guarded([&] {
        const quanta::gguf::Value* v = find_value(file, key);
        QUANTA_CHECK_ARG(!v->is_array() && (quanta::gguf::is_integer(v->type) || v->type == quanta::gguf::ValueType::Bool),
                         std::string("'") + key + "' is not an integer");
        *out = v->int_at();
    });
}

quanta_status quanta_gguf_get_float(const quanta_gguf* file, const char* key, double* out) {
    QUANTA_REQUIRE(file && key && out, "file, key and out must not be NULL");
    return guarded([&] {
        const quanta::gguf::Value* v = find_value(file, key);
        QUANTA_CHECK_ARG(!v->is_array() && quanta::gguf::value_type_size(v->type) != 0,
                         std::string("'") + key + "' is not a number");
        *out = v->float_at();
    });
}

quanta_status quanta_gguf_get_array_string(const quanta_gguf* file, const char* key, uint64_t index,
                                           const char** out) {
    QUANTA_REQUIRE(file && key && out, "file, key and out must not be NULL");
    return guarded([&] {
        const quanta::gguf::Value* v = find_value(file, key);
        QUANTA_CHECK_ARG(v->is_array() && v->elem == quanta::gguf::ValueType::String,
                         std::string("'") + key + "' is not a string array");
        QUANTA_CHECK_ARG(index < v->count, "array index out of range");
        *out = v->strings[(size_t)index].c_str();
    });
}

int64_t quanta_gguf_n_tensors(const quanta_gguf* file) { return file ? (int64_t)file->file->tensors().size() : 0; }

int64_t quanta_gguf_find_tensor(const quanta_gguf* file, const char* name) {
    if (!file || !name) return -1;
    const quanta::gguf::TensorInfo* t = file->file->find_tensor(name);
    return t ? (int64_t)(t - file->file->tensors().data()) : -1;
}

quanta_status quanta_gguf_tensor_info(const quanta_gguf* file, int64_t i, quanta_tensor_info* out) {
    QUANTA_REQUIRE(file && out, "file and out must not be NULL");
    QUANTA_REQUIRE(i >= 0 && i < (int64_t)file->file->tensors().size(), "tensor index out of range");
    const quanta::gguf::TensorInfo& t = file->file->tensors()[(size_t)i];
    out->name = t.name.c_str();
    out->type = static_cast<uint32_t>(t.type);
    out->type_name = quanta::type_name(t.type);
    out->n_dims = t.n_dims;
    for (int d = 0; d < 4; ++d) out->ne[d] = t.ne[d];
    out->offset = t.offset;
    out->nbytes = t.nbytes;
    return QUANTA_OK;
}

quanta_status quanta_gguf_tensor_to_f32(const quanta_gguf* file, int64_t i, float* dst, uint64_t n_floats) {
    QUANTA_REQUIRE(file && dst, "file and dst must not be NULL");
    QUANTA_REQUIRE(i >= 0 && i < (int64_t)file->file->tensors().size(), "tensor index out of range");
    const quanta::gguf::TensorInfo& t = file->file->tensors()[(size_t)i];
    QUANTA_REQUIRE(n_floats >= (uint64_t)t.n_elements(), "destination is smaller than the tensor");
    return guarded([&] {
        const size_t row = quanta::row_bytes(t.type, t.ne[0]);
        for (int64_t r = 0; r < t.n_rows(); ++r)
            quanta::dequantize_row(t.type, t.data + (size_t)r * row, dst + r * t.ne[0], t.ne[0]);
    });
}

}  // extern "C"
