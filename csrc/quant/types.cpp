#include "quant/types.h"

#include "base/error.h"

namespace quanta {
namespace {

struct TypeEntry {
    uint32_t id;
    TypeInfo info;
};

// Sizes from ggml's block layouts (ggml-common.h); the dequantizable ones are
// those in quant/dequantize.cpp.
constexpr TypeEntry kTypes[] = {
    {0, {"f32", 1, 4, true}},        {1, {"f16", 1, 2, true}},
    {2, {"q4_0", 32, 18, true}},     {3, {"q4_1", 32, 20, true}},
    {6, {"q5_0", 32, 22, true}},     {7, {"q5_1", 32, 24, true}},
    {8, {"q8_0", 32, 34, true}},     {9, {"q8_1", 32, 36, true}},
    {10, {"q2_k", 256, 84, true}},   {11, {"q3_k", 256, 110, true}},
    {12, {"q4_k", 256, 144, true}},  {13, {"q5_k", 256, 176, true}},
    {14, {"q6_k", 256, 210, true}},  {15, {"q8_k", 256, 292, true}},
    {16, {"iq2_xxs", 256, 66, false}}, {17, {"iq2_xs", 256, 74, false}},
    {18, {"iq3_xxs", 256, 98, false}}, {19, {"iq1_s", 256, 50, false}},
    {20, {"iq4_nl", 32, 18, false}},   {21, {"iq3_s", 256, 110, false}},
    {22, {"iq2_s", 256, 82, false}},   {23, {"iq4_xs", 256, 136, false}},
    {24, {"i8", 1, 1, true}},        {25, {"i16", 1, 2, true}},
    {26, {"i32", 1, 4, true}},       {27, {"i64", 1, 8, true}},
    {28, {"f64", 1, 8, true}},       {29, {"iq1_m", 256, 56, false}},
    {30, {"bf16", 1, 2, true}},      {34, {"tq1_0", 256, 54, false}},
    {35, {"tq2_0", 256, 66, false}}, {39, {"mxfp4", 32, 17, false}},
    {40, {"nvfp4", 64, 36, false}},  {41, {"q1_0", 128, 18, false}},
};

}  // namespace

const TypeInfo* type_info(uint32_t id) {
    for (const auto& e : kTypes)
        if (e.id == id) return &e.info;
    return nullptr;
}

const TypeInfo& type_info(DType t) {
    const TypeInfo* info = type_info(static_cast<uint32_t>(t));
    if (!info) fail(ErrorKind::Internal, "unknown dtype id " + std::to_string(static_cast<uint32_t>(t)));
    return *info;
}

const char* type_name(DType t) { return type_info(t).name; }

DType type_from_name(const std::string& name) {
    std::string known;
    for (const auto& e : kTypes) {
        if (name == e.info.name) return static_cast<DType>(e.id);
        known += known.empty() ? "" : ", ";
        known += e.info.name;
    }
    fail(ErrorKind::InvalidArgument, "unknown type '" + name + "' (known: " + known + ")");
}

size_t row_bytes(DType t, int64_t n) {
    const TypeInfo& info = type_info(t);
    QUANTA_CHECK_ARG(n >= 0 && n % info.block_size == 0,
                     std::string("row of ") + std::to_string(n) + " elements is not a multiple of " +
                         info.name + "'s block size " + std::to_string(info.block_size));
    return static_cast<size_t>(n / info.block_size) * info.block_bytes;
}

}  // namespace quanta
