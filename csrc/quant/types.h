// The ggml tensor types as stored in GGUF files, with their block geometry.
// Ids, block sizes and byte sizes are the file format's contract and must
// never change.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace quanta {

enum class DType : uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
    IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
    TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39, NVFP4 = 40, Q1_0 = 41,
};

struct TypeInfo {
    const char* name;       // lower-case, as users write it: "q4_k"
    int64_t block_size;     // elements per block (1 for plain types)
    size_t block_bytes;     // bytes per block
    bool can_dequantize;    // quanta has a reference dequantizer for it
};

// Null when `id` is not a ggml type id that quanta knows.
const TypeInfo* type_info(uint32_t id);
const TypeInfo& type_info(DType t);
const char* type_name(DType t);
// Parses a lower-case name; throws InvalidArgument listing the valid names.
DType type_from_name(const std::string& name);

// Bytes of one row of `n` elements; `n` must be a multiple of the block size.
size_t row_bytes(DType t, int64_t n);

}  // namespace quanta
