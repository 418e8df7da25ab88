// Tensors are nodes of a compute graph, ggml-style: a type, up to 4
// dimensions in ggml order (ne[0] is the innermost, the row length), byte
// strides nb[], and either data or the op that produces it.
//
// Ownership: a Tensor never owns its bytes. A Graph owns its Tensor objects.
// Bytes live in buffers of the backend that runs the graph, and `data` is an
// address in that backend's memory (host memory on the CPU, device memory on a
// GPU). Three kinds, told apart by `kind`:
//   External - a buffer the caller placed and keeps alive (weights, the KV cache);
//   Input    - a leaf placed in the graph's arena; the caller fills it per run;
//   Op       - a result placed in the graph's arena by the liveness planner.
// A view (op View) aliases the bytes of `view_src` at `view_offset`.
//
// Image layout (diffusion): ne = [W, H, C, N], as ggml: W is the fastest
// dimension, so a row is one line of one channel of one image, a channel is a
// W x H plane, and torch's NCHW array maps onto it unchanged (numpy shape
// (N, C, H, W) in the bindings). Per-channel parameters (a norm's affine
// weight and bias, a conv bias) are [1, 1, C, 1] tensors that Add and Mul
// broadcast over the image.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/op_ids.h"
#include "quant/types.h"

namespace quanta {

constexpr int kMaxDims = 4;
// Sources and parameters per node: room for fused attention (q, k, v, cell lists)
// and conv2d (strides, paddings and dilations in two dimensions).
constexpr int kMaxSrc = 4;
constexpr int kMaxIntParams = 8;
constexpr int kMaxFloatParams = 8;

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
    // A weight's copy in the layout the backend's MatMul reads fastest (Backend::pack_weight; the CPU's
    // octets), or null. `data` keeps the bytes as the file has them, for every other op (get_rows of tied
    // embeddings).
    const void* packed = nullptr;

    TensorKind kind = TensorKind::Op;
    Op op = Op::None;
    Tensor* src[kMaxSrc] = {};
    Tensor* view_src = nullptr;  // for views: the tensor whose bytes are aliased (never itself a view)
    size_t view_offset = 0;
    int32_t i[kMaxIntParams] = {};  // integer op parameters (op_table.h says which)
    float f[kMaxFloatParams] = {};  // float op parameters
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
    // "'name' [4, 8, 1, 1]" (or the op's name when unnamed), for error messages.
    std::string describe() const;
};

// Fills nb[] for a contiguous layout of the tensor's type and ne[].
void set_contiguous_strides(Tensor& t);

}  // namespace quanta
