#include "core/tensor.h"

namespace quanta {

const char* op_name(Op op) {
    switch (op) {
        case Op::None: return "none";
        case Op::View: return "view";
        case Op::Copy: return "copy";
        case Op::Add: return "add";
        case Op::Mul: return "mul";
        case Op::Scale: return "scale";
        case Op::MatMul: return "matmul";
        case Op::RmsNorm: return "rms_norm";
        case Op::Rope: return "rope";
        case Op::SoftMax: return "softmax";
        case Op::Silu: return "silu";
        case Op::Gelu: return "gelu";
        case Op::GetRows: return "get_rows";
        case Op::Concat: return "concat";
        case Op::Custom: return "custom";
    }
    return "?";
}

size_t Tensor::n_bytes() const {
    if (n_elements() == 0) return 0;
    size_t bytes = row_size();
    for (int d = 1; d < kMaxDims; ++d) bytes += (size_t)(ne[d] - 1) * nb[d];
    return bytes;
}

bool Tensor::is_contiguous() const {
    const TypeInfo& info = type_info(type);
    size_t expect = info.block_bytes;
    if (nb[0] != expect) return false;
    expect = row_size();
    for (int d = 1; d < kMaxDims; ++d) {
        if (ne[d] != 1 && nb[d] != expect) return false;
        expect *= (size_t)ne[d];
    }
    return true;
}

bool Tensor::same_shape(const Tensor& o) const {
    for (int d = 0; d < kMaxDims; ++d)
        if (ne[d] != o.ne[d]) return false;
    return true;
}

std::string Tensor::shape_string() const {
    std::string s = "[";
    for (int d = 0; d < kMaxDims; ++d) s += std::to_string(ne[d]) + (d + 1 < kMaxDims ? ", " : "]");
    return s;
}

void set_contiguous_strides(Tensor& t) {
    t.nb[0] = type_info(t.type).block_bytes;
    t.nb[1] = t.row_size();
    for (int d = 2; d < kMaxDims; ++d) t.nb[d] = t.nb[d - 1] * (size_t)t.ne[d - 1];
}

}  // namespace quanta
