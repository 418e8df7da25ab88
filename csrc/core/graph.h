// A compute graph built by model code, run by a backend. Building a graph
// only records ops and checks shapes (each op's rule lives in the op table,
// op_table.h); no arithmetic happens until a Backend runs it. A finalized
// graph is read-only and is run again and again: models build one per batch
// shape and reuse it.
#pragma once

#include <deque>
#include <string>
#include <vector>

#include "core/planner.h"
#include "core/tensor.h"

namespace quanta {

using Shape = std::vector<int64_t>;  // ggml order, 1..4 entries

class Graph {
public:
    Graph() = default;
    Graph(const Graph&) = delete;
    Graph& operator=(const Graph&) = delete;

    // Leaves.
    Tensor* external(DType type, const Shape& ne, const void* data, const std::string& name = "");
    Tensor* input(DType type, const Shape& ne, const std::string& name = "");

    // Elementwise; `b` is broadcast over `a` (each b.ne[d] must divide a.ne[d]).
    Tensor* add(Tensor* a, Tensor* b);
    Tensor* mul(Tensor* a, Tensor* b);
    Tensor* scale(Tensor* a, float s);
    Tensor* silu(Tensor* a);
    Tensor* gelu(Tensor* a);
    // act(gate) * up (same shapes) in one pass: the gated feed-forward's middle, whose separate activation
    // and product each went through memory once more.
    Tensor* glu(Tensor* gate, Tensor* up, GluAct act);
    // Writes rows of `rows` (f32 [K, T, ...]) into rows ids[t] (i32 [T]) of `dst`
    // (a view of an External buffer, f32/f16/bf16 [K, N, ...]); returns a node that
    // aliases dst. The KV cache's writes: slots come from an input, so one graph
    // serves every step.
    Tensor* set_rows(Tensor* dst, Tensor* rows, Tensor* ids);
    // w: [K, N, ...] weights of any type; x: [K, M, ...] f32 -> [N, M, ...] f32.
    // w's dims 2 and 3 broadcast over x's (grouped-query attention).
    Tensor* matmul(Tensor* w, Tensor* x);
    Tensor* rms_norm(Tensor* x, float eps);
    // x: [head_dim, n_head, n_tokens, 1] f32; pos: [n_tokens] i32. Rotates the
    // first n_rot dims of each head with angle pos * freq_scale * base^(-2i/n_rot),
    // divided by freq_factors[i] when given (f32 [n_rot / 2]: llama 3's long-context rope).
    Tensor* rope(Tensor* x, Tensor* pos, int n_rot, RopeMode mode, float freq_base, float freq_scale = 1.0f,
                 Tensor* freq_factors = nullptr);
    // Attention of queries q (f32 [hd, n_head, T]) over KV cache layers k
    // ([hd, n_cells, n_kv_head]) and v ([hd_v, n_cells, n_kv_head]), f32 or
    // f16: token t attends to the cells cells[1..cells[0]] of row t (i32
    // [L + 1, T]), in that order (position order, so a sequence's result does
    // not depend on where its cells lie or what else is in the batch).
    // Returns f32 [hd_v, n_head, T].
    Tensor* attention(Tensor* q, Tensor* k, Tensor* v, Tensor* cells, float scale);
    // Convolution of images x (f32 [W, H, Cin, N]) with kernels w, zero-padded
    // by `pad` before and `pad_end` after (-1: pad) in both dimensions.
    // w is [KW, KH, Cin, Cout] in f32, f16 or bf16 (GGUF's layout, PyTorch's
    // [Cout, Cin, KH, KW] reversed), or those rows flattened to a square
    // kernel's [K * K * Cin, Cout] in any type (quantized rows need that form).
    // bias: f32 [Cout] or null. Returns f32 [OW, OH, Cout, N] with
    // OW = (W + pad + pad_end - KW) / stride + 1.
    Tensor* conv2d(Tensor* x, Tensor* w, Tensor* bias, int stride, int pad, int pad_end = -1);
    // Attention of every query over every key, per head and batch, as in a
    // diffusion model's self- and cross-attention (no mask, no KV cache):
    // q f32 [d, Tq, H, N]; k [d, Tk, H, N] and v [dv, Tk, H, N], f32 or f16,
    // rows contiguous (permuted views are fine). Returns f32 [dv, H, Tq, N]:
    // heads side by side per query, so a reshape to [dv * H, Tq, N] is free.
    Tensor* dense_attention(Tensor* q, Tensor* k, Tensor* v, float scale);
    // softmax(x * scale + mask) along rows; mask may be null, else f32 [ne0, >= ne1].
    Tensor* softmax(Tensor* x, Tensor* mask, float scale);
    // Rows `ids` (i32 [M]) of `table` ([K, N], any type) -> f32 [K, M].
    Tensor* get_rows(Tensor* table, Tensor* ids);
    Tensor* concat(Tensor* a, Tensor* b, int dim);

    // Diffusion. Images are [W, H, C, N] (tensor.h). The norms carry no affine
    // parameters: a model applies its weight and bias with mul and add (ggml's
    // split), a [1, 1, C, 1] pair for group_norm, [ne0] for layer_norm.
    // Each image's channels in n_groups groups, each normalized over its W x H x C/n_groups
    // values: (x - mean) / sqrt(var + eps), the biased variance, as torch's group_norm.
    // moments (f32 [2, n_groups, N], or null): each group's mean and variance to
    // normalize by instead of its own (a tiled image's statistics, from group_moments).
    Tensor* group_norm(Tensor* x, int n_groups, float eps, Tensor* moments = nullptr);
    // [3, n_groups, N]: the count, mean and sum of squared deviations of each
    // group's values in the window (i32 [4]: x0, y0, x1, y1, times `scale` pixels).
    Tensor* group_moments(Tensor* x, Tensor* window, int n_groups, int scale);
    // (x - mean) / sqrt(var + eps) along rows.
    Tensor* layer_norm(Tensor* x, float eps);
    // Nearest neighbour: [W, H, C, N] -> [W * factor, H * factor, C, N].
    Tensor* upsample(Tensor* x, int factor);
    Tensor* gelu_erf(Tensor* a);    // x * Phi(x), torch's gelu(approximate="none")
    Tensor* quick_gelu(Tensor* a);  // x * sigmoid(1.702 x), CLIP's
    // [2K, ...] -> [K, ...]: value * gelu_erf(gate), the value the first half of
    // each row and the gate the second, as diffusers' GEGLU chunks its projection.
    Tensor* geglu(Tensor* x);
    // Timesteps t (f32 [n]) -> f32 [dim, n], diffusers' get_timestep_embedding
    // (sinusoids.h); Stable Diffusion's UNet: cos first, shift 0.
    Tensor* timestep_embedding(Tensor* t, int dim, bool flip_sin_to_cos = true, float downscale_freq_shift = 0.0f);
    // A contiguous copy converted to `type` (f32, f16 or bf16).
    Tensor* copy(Tensor* a, DType type);
    Tensor* cont(Tensor* a) { return copy(a, a->type); }
    // Writes `src` into `dst` (typically a view of an External cache buffer);
    // returns a node that depends on the write and aliases dst.
    Tensor* copy_into(Tensor* src, Tensor* dst);

    // Views (no computation).
    // `a` unchanged, but read only after `dep` has run: orders reads of a buffer
    // (a KV cache) after this graph's writes into it, which no data edge implies.
    Tensor* after(Tensor* a, Tensor* dep);
    Tensor* reshape(Tensor* a, const Shape& ne);
    Tensor* view(Tensor* a, const Shape& ne, const std::vector<size_t>& nb, size_t offset);
    Tensor* transpose(Tensor* a);
    // Dimension d of `a` becomes dimension axes[d] of the result.
    Tensor* permute(Tensor* a, int ax0, int ax1, int ax2, int ax3);

    void mark_output(Tensor* t);
    const std::vector<Tensor*>& outputs() const { return outputs_; }
    // Every tensor the outputs depend on, each after its sources.
    std::vector<Tensor*> topo_order() const;
    // Fixes the execution order and memory plan; the graph is read-only after.
    void finalize();
    bool finalized() const { return finalized_; }
    const std::vector<Tensor*>& order() const { return order_; }
    const MemoryPlan& plan() const { return plan_; }
    size_t size() const { return tensors_.size(); }

private:
    void check_open() const;
    Tensor* make(DType type, const int64_t* ne, int n_dims, Op op);
    // A node of `op` over `srcs`; set_params fills its parameters before the
    // op table's shape rule checks it and sets its type and shape.
    template <typename SetParams>
    Tensor* node(Op op, std::initializer_list<Tensor*> srcs, SetParams set_params, DType type = DType::F32);
    Tensor* node(Op op, std::initializer_list<Tensor*> srcs);
    Tensor* make_view(Tensor* a);
    // Makes `t` alias the bytes of leaf-backed `dst` with dst's layout.
    void alias(Tensor* t, Tensor* dst);

    std::deque<Tensor> tensors_;  // deque: stable addresses as the graph grows
    std::vector<Tensor*> outputs_;
    bool finalized_ = false;
    std::vector<Tensor*> order_;
    MemoryPlan plan_;
};

}  // namespace quanta
