#include "gguf/value.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "base/error.h"

namespace quanta::gguf {
namespace {

template <typename T>
T load(const std::vector<uint8_t>& raw, uint64_t i) {
    T v;
    std::memcpy(&v, raw.data() + i * sizeof(T), sizeof(T));
    return v;
}

// Float to int64 without undefined behaviour: nan is 0, out-of-range values saturate.
int64_t saturating_int(double f) {
    if (std::isnan(f)) return 0;
    if (f >= 9223372036854775807.0) return INT64_MAX;
    if (f <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)f;
}

template <typename T>
Value scalar(ValueType type, T v) {
    Value out;
    out.type = type;
    out.raw.resize(sizeof(T));
    std::memcpy(out.raw.data(), &v, sizeof(T));
    return out;
}

}  // namespace

const char* value_type_name(uint32_t id) {
    static const char* const names[] = {"u8",  "i8",  "u16",    "i16",   "u32", "i32", "f32",
                                        "bool", "string", "array", "u64", "i64", "f64"};
    return id < sizeof(names) / sizeof(names[0]) ? names[id] : nullptr;
}

size_t value_type_size(ValueType t) {
    switch (t) {
        case ValueType::U8: case ValueType::I8: case ValueType::Bool: return 1;
        case ValueType::U16: case ValueType::I16: return 2;
        case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
        case ValueType::U64: case ValueType::I64: case ValueType::F64: return 8;
        default: return 0;
    }
}

bool is_integer(ValueType t) {
    return value_type_size(t) != 0 && !is_float(t) && t != ValueType::Bool;
}

bool is_float(ValueType t) { return t == ValueType::F32 || t == ValueType::F64; }

int64_t Value::int_at(uint64_t i) const {
    QUANTA_CHECK_ARG(i < (is_array() ? count : 1) && !raw.empty(), "value index out of range or not numeric");
    switch (numeric_type()) {
        case ValueType::U8: case ValueType::Bool: return load<uint8_t>(raw, i);
        case ValueType::I8: return load<int8_t>(raw, i);
        case ValueType::U16: return load<uint16_t>(raw, i);
        case ValueType::I16: return load<int16_t>(raw, i);
        case ValueType::U32: return load<uint32_t>(raw, i);
        case ValueType::I32: return load<int32_t>(raw, i);
        case ValueType::U64: return (int64_t)load<uint64_t>(raw, i);
        case ValueType::I64: return load<int64_t>(raw, i);
        case ValueType::F32: return saturating_int(load<float>(raw, i));
        case ValueType::F64: return saturating_int(load<double>(raw, i));
        default: fail(ErrorKind::InvalidArgument, "value is not numeric");
    }
}

uint64_t Value::uint_at(uint64_t i) const {
    if (numeric_type() == ValueType::U64) {
        QUANTA_CHECK_ARG(i < (is_array() ? count : 1), "value index out of range");
        return load<uint64_t>(raw, i);
    }
    return (uint64_t)int_at(i);
}

double Value::float_at(uint64_t i) const {
    switch (numeric_type()) {
        case ValueType::F32:
            QUANTA_CHECK_ARG(i < (is_array() ? count : 1), "value index out of range");
            return load<float>(raw, i);
        case ValueType::F64:
            QUANTA_CHECK_ARG(i < (is_array() ? count : 1), "value index out of range");
            return load<double>(raw, i);
        case ValueType::U64: return (double)uint_at(i);
        default: return (double)int_at(i);
    }
}

Value Value::make_string(std::string s) {
    Value v;
    v.type = ValueType::String;
    v.str = std::move(s);
    return v;
}

Value Value::make_bool(bool b) { return scalar<uint8_t>(ValueType::Bool, b ? 1 : 0); }
Value Value::make_u32(uint32_t x) { return scalar(ValueType::U32, x); }
Value Value::make_i32(int32_t x) { return scalar(ValueType::I32, x); }
Value Value::make_u64(uint64_t x) { return scalar(ValueType::U64, x); }
Value Value::make_i64(int64_t x) { return scalar(ValueType::I64, x); }
Value Value::make_f32(float x) { return scalar(ValueType::F32, x); }
Value Value::make_f64(double x) { return scalar(ValueType::F64, x); }

Value Value::make_number(ValueType type, double f, int64_t i, bool from_int) {
    auto check_range = [&](double lo, double hi) {
        const double x = from_int ? (double)i : f;
        QUANTA_CHECK_ARG(x >= lo && x <= hi && (from_int || std::floor(x) == x),
                         std::string("value ") + std::to_string(x) + " does not fit type " +
                             value_type_name((uint32_t)type));
    };
    const int64_t n = from_int ? i : (int64_t)f;
    switch (type) {
        case ValueType::U8: check_range(0, 255); return scalar<uint8_t>(type, (uint8_t)n);
        case ValueType::I8: check_range(-128, 127); return scalar<int8_t>(type, (int8_t)n);
        case ValueType::U16: check_range(0, 65535); return scalar<uint16_t>(type, (uint16_t)n);
        case ValueType::I16: check_range(-32768, 32767); return scalar<int16_t>(type, (int16_t)n);
        case ValueType::U32: check_range(0, 4294967295.0); return scalar<uint32_t>(type, (uint32_t)n);
        case ValueType::I32: check_range(-2147483648.0, 2147483647.0); return scalar<int32_t>(type, (int32_t)n);
        case ValueType::U64: check_range(0, 18446744073709551615.0); return scalar<uint64_t>(type, (uint64_t)n);
        case ValueType::I64: check_range(-9223372036854775808.0, 9223372036854775807.0); return scalar<int64_t>(type, n);
        case ValueType::F32: return make_f32(from_int ? (float)i : (float)f);
        case ValueType::F64: return make_f64(from_int ? (double)i : f);
        case ValueType::Bool: return make_bool(from_int ? i != 0 : f != 0.0);
        default: fail(ErrorKind::InvalidArgument, "not a numeric value type");
    }
}

Value Value::make_string_array(std::vector<std::string> items) {
    Value v;
    v.type = ValueType::Array;
    v.elem = ValueType::String;
    v.count = items.size();
    v.strings = std::move(items);
    return v;
}

Value Value::make_numeric_array(ValueType elem, uint64_t count, std::vector<uint8_t> bytes) {
    QUANTA_CHECK_ARG(value_type_size(elem) != 0, "array element type must be numeric or bool");
    QUANTA_CHECK_ARG(bytes.size() == count * value_type_size(elem), "array byte size does not match its count");
    Value v;
    v.type = ValueType::Array;
    v.elem = elem;
    v.count = count;
    v.raw = std::move(bytes);
    return v;
}

Value Value::make_array_of_arrays(std::vector<Value> items) {
    for (const Value& item : items) QUANTA_CHECK_ARG(item.is_array(), "nested array items must be arrays");
    Value v;
    v.type = ValueType::Array;
    v.elem = ValueType::Array;
    v.count = items.size();
    v.arrays = std::move(items);
    return v;
}

}  // namespace quanta::gguf
