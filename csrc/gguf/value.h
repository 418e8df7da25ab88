// A GGUF metadata value: a scalar, a string, or a typed array (possibly of
// arrays). Numeric payloads are kept as packed little-endian bytes, so a
// 262k-entry score array costs one allocation, not 262k.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace quanta::gguf {

enum class ValueType : uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7,
    String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12,
};

// Null for an id that is not a GGUF value type.
const char* value_type_name(uint32_t id);
// Bytes of one element of a numeric or bool type; 0 for String and Array.
size_t value_type_size(ValueType t);
bool is_integer(ValueType t);
bool is_float(ValueType t);

struct Value {
    ValueType type = ValueType::U8;

    // Scalars of numeric or bool type: one element in `raw`.
    // Arrays: `elem` is the element type and `count` the number of elements,
    // stored in `raw` (numeric, bool), `strings` or `arrays`.
    ValueType elem = ValueType::U8;
    uint64_t count = 0;
    std::vector<uint8_t> raw;
    std::string str;
    std::vector<std::string> strings;
    std::vector<Value> arrays;

    bool is_array() const { return type == ValueType::Array; }
    // The numeric kind of a scalar, or of an array's elements.
    ValueType numeric_type() const { return is_array() ? elem : type; }

    // Element i of a numeric/bool scalar (i = 0) or array, converted.
    int64_t int_at(uint64_t i = 0) const;
    uint64_t uint_at(uint64_t i = 0) const;
    double float_at(uint64_t i = 0) const;

    static Value make_string(std::string s);
    static Value make_bool(bool b);
    static Value make_u32(uint32_t v);
    static Value make_i32(int32_t v);
    static Value make_u64(uint64_t v);
    static Value make_i64(int64_t v);
    static Value make_f32(float v);
    static Value make_f64(double v);
    // A scalar of numeric `type` from a double or int64, range-checked.
    static Value make_number(ValueType type, double f, int64_t i, bool from_int);
    static Value make_string_array(std::vector<std::string> items);
    // `bytes` holds `count` packed elements of numeric type `elem`.
    static Value make_numeric_array(ValueType elem, uint64_t count, std::vector<uint8_t> bytes);
    static Value make_array_of_arrays(std::vector<Value> items);
};

struct KeyValue {
    std::string key;
    Value value;
};

}  // namespace quanta::gguf
