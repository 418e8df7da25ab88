// Tensors are nodes of a compute graph, ggml-style: a type, up to 4
// dimensions in ggml order (ne[0] is the innermost, the row length), byte
// strides nb[], and either data or the op that produces it.
//
// Ownership: a Tensor never owns its bytes. A Graph owns its Tensor objects.
// Bytes belong to one of three owners, told apart by `kind`:
//   External - memory the caller keeps alive (weights in an mmap'ed GGUF);
//   Input    - a leaf placed in the graph's arena; the caller fills it per run;
//   Op       - a result placed in the graph's arena by the liveness planner.
// A view (op View) aliases the bytes of `view_src` at `view_offset`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "quant/types.h"

namespace quanta {

constexpr int kMaxDims = 4;

enum class Op : uint8_t {
    None,      // a leaf: External or Input
    View,      // reshape, transpose, permute, slice: new shape/strides over src[0]'s bytes
    Copy,      // src[0] into a new contiguous tensor of this tensor's type
    Add,       // src[0] + src[1], src[1] broadcast over src[0]
    Mul,       // src[0] * src[1], broadcast likewise
    Scale,     // src[0] * f[0]
    MatMul,    // rows of src[0] (weights) dotted with rows of src[1] (activations)
    RmsNorm,   // src[0] / sqrt(mean(x^2) + f[0]) along rows
    Rope,      // rotary embedding of src[0] at positions src[1]
    SoftMax,   // softmax(src[0] * f[0] + mask src[1]) along rows
    Silu,
    Gelu,      // tanh approximation
    GetRows,   // rows src[1] (i32 ids) of src[0], as f32
    Concat,    // src[0] and src[1] joined along dimension i[0]
    Custom,    // reserved for backend-specific fused ops
};

const char* op_name(Op op);

enum class TensorKind : uint8_t { External, Input, Op };

enum class RopeMode : int32_t {
    Normal = 0,  // rotates adjacent pairs (x[2i], x[2i+1]): llama after the converter's Q/K permutation
    Neox = 2,    // rotates halves (x[i], x[i + n/2]): qwen2, gemma3, HF layout
};

struct Tensor {
    DType type = DType::F32;
    int64_t ne[kMaxDims] = {1, 1, 1, 1};
    size_t nb[kMaxDims] = {0, 0, 0, 0};
    int n_dims = 1;  // dims the tensor was declared with (ne[d] == 1 for d >= n_dims)
    void* data = nullptr;

    TensorKind kind = TensorKind::Op;
    Op op = Op::None;
    Tensor* src[3] = {nullptr, nullptr, nullptr};
    Tensor* view_src = nullptr;  // for views: the tensor whose bytes are aliased (never itself a view)
    size_t view_offset = 0;
    int32_t i[4] = {0, 0, 0, 0};  // integer op parameters
    float f[4] = {0, 0, 0, 0};    // float op parameters
    std::string name;

    int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
    int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
    size_t row_size() const { return row_bytes(type, ne[0]); }
    // Bytes spanned from the first to one past the last element.
    size_t n_bytes() const;
    bool is_contiguous() const;
    bool same_shape(const Tensor& o) const;
    // The tensor that owns the bytes this one uses (itself unless a view).
    const Tensor* storage() const { return view_src ? view_src : this; }
    std::string shape_string() const;
};

// Fills nb[] for a contiguous layout of the tensor's type and ne[].
void set_contiguous_strides(Tensor& t);

}  // namespace quanta
