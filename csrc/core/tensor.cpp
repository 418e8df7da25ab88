// Tensor geometry: sizes, strides, contiguity, and the descriptions error messages use.
#include "core/tensor.h"

#include "core/op_table.h"

namespace quanta {

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

std::string Tensor::describe() const {
    return (name.empty() ? std::string(op_name(op)) : "'" + name + "'") + " " + shape_string();
}

void set_contiguous_strides(Tensor& t) {
    t.nb[0] = type_info(t.type).block_bytes;
    t.nb[1] = t.row_size();
    for (int d = 2; d < kMaxDims; ++d) t.nb[d] = t.nb[d - 1] * (size_t)t.ne[d - 1];
}

}  // namespace quanta
