// libFuzzer harness for the GGUF reader. Any input must either parse or throw
// quanta::Error; anything else (a crash, a sanitizer report, an uncaught
// exception, a hang, a huge allocation) is a bug in the reader. When a file
// parses, everything it claims is touched, so a size or offset the reader
// accepted but got wrong shows up here as an out-of-bounds read.
//
// Build: cmake -DQUANTA_FUZZ=ON with clang (see tests/test_fuzz.py).
// Seeds: python tests/fuzz/make_seeds.py DIR.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "gguf/reader.h"
#include "quant/dequantize.h"
#include "quant/types.h"

namespace {

using quanta::gguf::Value;
using quanta::gguf::ValueType;

// Keeps reads from being optimised away.
volatile uint64_t g_sink;

void touch_string(const std::string& s) {
    uint64_t h = s.size();
    for (unsigned char ch : s) h = h * 31 + ch;
    g_sink = g_sink + h;
}

// Reads every element of a value, recursing into arrays of arrays.
void touch_value(const Value& v) {
    if (v.type == ValueType::String) return touch_string(v.str);
    const uint64_t n = v.is_array() ? v.count : 1;
    if (v.is_array() && v.elem == ValueType::String) {
        if (v.strings.size() != n) __builtin_trap();  // count and contents must agree
        for (const std::string& s : v.strings) touch_string(s);
        return;
    }
    if (v.is_array() && v.elem == ValueType::Array) {
        if (v.arrays.size() != n) __builtin_trap();
        for (const Value& item : v.arrays) touch_value(item);
        return;
    }
    // Numeric or bool: every accessor on every element (int_at saturates floats).
    for (uint64_t i = 0; i < n; ++i) {
        g_sink = g_sink + (uint64_t)v.int_at(i);
        const double f = v.float_at(i);
        g_sink = g_sink + (f == f ? 1 : 0);
    }
}

void touch_tensor(const quanta::gguf::TensorInfo& t, const quanta::gguf::File& f) {
    touch_string(t.name);
    if (f.find_tensor(t.name) != &t) __builtin_trap();  // the index must find each tensor
    if (t.nbytes == 0) return;  // an empty tensor (some dimension 0) has no bytes to read
    g_sink = g_sink + t.data[0] + t.data[t.nbytes - 1];

    const quanta::TypeInfo& info = quanta::type_info(t.type);
    if (!info.can_dequantize || t.n_rows() == 0) return;
    // nbytes > 0, so one row's bytes lie inside the data the reader checked.
    std::vector<float> row((size_t)t.ne[0]);
    try {
        quanta::dequantize_row(t.type, t.data, row.data(), t.ne[0]);
    } catch (const quanta::Error&) {
    }
    g_sink = g_sink + (row.empty() ? 0 : (row.front() == row.back()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::shared_ptr<quanta::gguf::File> f;
    try {
        f = quanta::gguf::File::from_bytes(data, size, "<fuzz>");
    } catch (const quanta::Error& e) {
        // Malformed bytes are a Format error; nothing else is expected here.
        if (e.kind() != quanta::ErrorKind::Format) __builtin_trap();
        return 0;
    }
    if (f->data_offset() % f->alignment() != 0) __builtin_trap();
    for (const auto& kv : f->metadata()) {
        touch_string(kv.key);
        if (f->find(kv.key) != &kv.value) __builtin_trap();
        touch_value(kv.value);
    }
    for (const auto& t : f->tensors()) touch_tensor(t, *f);
    return 0;
}
