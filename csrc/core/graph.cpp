// The graph builder: leaves, op nodes through the op table's shape rules,
// views, and the topological order and memory plan of finalize().
#include "core/graph.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "base/error.h"
#include "core/op_table.h"

namespace quanta {

void Graph::check_open() const {
    QUANTA_CHECK_ARG(!finalized_, "graph is finalized; build a new graph to add nodes");
}

Tensor* Graph::make(DType type, const int64_t* ne, int n_dims, Op op) {
    check_open();
    QUANTA_CHECK_ARG(n_dims >= 1 && n_dims <= kMaxDims, "tensors have 1..4 dimensions");
    tensors_.emplace_back();
    Tensor* t = &tensors_.back();
    t->type = type;
    t->op = op;
    t->n_dims = n_dims;
    for (int d = 0; d < n_dims; ++d) {
        QUANTA_CHECK_ARG(ne[d] >= 0, "negative dimension");
        t->ne[d] = ne[d];
    }
    QUANTA_CHECK_ARG(t->ne[0] % type_info(type).block_size == 0,
                     std::string("row length ") + std::to_string(t->ne[0]) + " is not a multiple of " +
                         type_name(type) + "'s block size");
    set_contiguous_strides(*t);
    return t;
}

Tensor* Graph::external(DType type, const Shape& ne, const void* data, const std::string& name) {
    QUANTA_CHECK_ARG(data != nullptr, "external tensor '" + name + "' has no data");
    Tensor* t = make(type, ne.data(), (int)ne.size(), Op::None);
    t->kind = TensorKind::External;
    t->data = const_cast<void*>(data);
    t->name = name;
    return t;
}

Tensor* Graph::input(DType type, const Shape& ne, const std::string& name) {
    Tensor* t = make(type, ne.data(), (int)ne.size(), Op::None);
    t->kind = TensorKind::Input;
    t->name = name;
    return t;
}

template <typename SetParams>
Tensor* Graph::node(Op op, std::initializer_list<Tensor*> srcs, SetParams set_params, DType type) {
    const OpInfo& info = op_info(op);
    QUANTA_CHECK_ARG((int)srcs.size() <= info.max_src, std::string(info.name) + ": too many sources");
    const int64_t one[1] = {1};
    Tensor* t = make(type, one, 1, op);
    int k = 0;
    for (Tensor* s : srcs) {
        QUANTA_CHECK_ARG(s || k >= info.min_src, std::string(info.name) + ": source " + std::to_string(k) + " is missing");
        t->src[k++] = s;
    }
    set_params(*t);
    info.shape(*t);
    QUANTA_CHECK_ARG(t->ne[0] % type_info(t->type).block_size == 0,
                     std::string(info.name) + ": row length breaks a block of " + type_name(t->type));
    set_contiguous_strides(*t);
    return t;
}

Tensor* Graph::node(Op op, std::initializer_list<Tensor*> srcs) {
    return node(op, srcs, [](Tensor&) {});
}

Tensor* Graph::add(Tensor* a, Tensor* b) { return node(Op::Add, {a, b}); }
Tensor* Graph::mul(Tensor* a, Tensor* b) { return node(Op::Mul, {a, b}); }
Tensor* Graph::silu(Tensor* a) { return node(Op::Silu, {a}); }
Tensor* Graph::gelu(Tensor* a) { return node(Op::Gelu, {a}); }
Tensor* Graph::glu(Tensor* gate, Tensor* up, GluAct act) {
    return node(Op::Glu, {gate, up}, [&](Tensor& t) { t.i[0] = (int32_t)act; });
}
Tensor* Graph::scale(Tensor* a, float s) { return node(Op::Scale, {a}, [&](Tensor& t) { t.f[0] = s; }); }
Tensor* Graph::matmul(Tensor* w, Tensor* x) { return node(Op::MatMul, {w, x}); }
Tensor* Graph::rms_norm(Tensor* x, float eps) { return node(Op::RmsNorm, {x}, [&](Tensor& t) { t.f[0] = eps; }); }

Tensor* Graph::rope(Tensor* x, Tensor* pos, int n_rot, RopeMode mode, float freq_base, float freq_scale,
                    Tensor* freq_factors) {
    return node(Op::Rope, {x, pos, freq_factors}, [&](Tensor& t) {
        t.i[0] = n_rot;
        t.i[1] = static_cast<int32_t>(mode);
        t.f[0] = freq_base;
        t.f[1] = freq_scale;
    });
}

Tensor* Graph::softmax(Tensor* x, Tensor* mask, float scale) {
    return node(Op::SoftMax, {x, mask}, [&](Tensor& t) { t.f[0] = scale; });
}

Tensor* Graph::attention(Tensor* q, Tensor* k, Tensor* v, Tensor* cells, float scale) {
    return node(Op::Attention, {q, k, v, cells}, [&](Tensor& t) { t.f[0] = scale; });
}

Tensor* Graph::conv2d(Tensor* x, Tensor* w, Tensor* bias, int stride, int pad, int pad_end) {
    QUANTA_CHECK_ARG(x && w, "conv2d: input and kernels are required");
    int kw = (int)w->ne[0], kh = (int)w->ne[1];
    if (w->n_dims <= 2) {  // flattened rows of a square kernel: K * K * Cin long
        const int64_t area = x->ne[2] > 0 ? w->ne[0] / x->ne[2] : 0;
        kw = kh = (int)std::lround(std::sqrt((double)area));
    }
    return node(Op::Conv2d, {x, w, bias}, [&](Tensor& t) {
        t.i[0] = stride;
        t.i[1] = pad;
        t.i[2] = pad_end < 0 ? pad : pad_end;
        t.i[3] = kw;
        t.i[4] = kh;
    });
}

Tensor* Graph::dense_attention(Tensor* q, Tensor* k, Tensor* v, float scale) {
    return node(Op::DenseAttention, {q, k, v}, [&](Tensor& t) { t.f[0] = scale; });
}

Tensor* Graph::get_rows(Tensor* table, Tensor* ids) { return node(Op::GetRows, {table, ids}); }

Tensor* Graph::set_rows(Tensor* dst, Tensor* rows, Tensor* ids) {
    Tensor* t = node(Op::SetRows, {dst, rows, ids});
    alias(t, dst);
    return t;
}

Tensor* Graph::concat(Tensor* a, Tensor* b, int dim) {
    return node(Op::Concat, {a, b}, [&](Tensor& t) { t.i[0] = dim; });
}

Tensor* Graph::group_norm(Tensor* x, int n_groups, float eps, Tensor* moments) {
    return node(Op::GroupNorm, {x, moments}, [&](Tensor& t) {
        t.i[0] = n_groups;
        t.f[0] = eps;
    });
}

Tensor* Graph::group_moments(Tensor* x, Tensor* window, int n_groups, int scale) {
    return node(Op::GroupMoments, {x, window}, [&](Tensor& t) {
        t.i[0] = n_groups;
        t.i[1] = scale;
    });
}

Tensor* Graph::layer_norm(Tensor* x, float eps) { return node(Op::LayerNorm, {x}, [&](Tensor& t) { t.f[0] = eps; }); }
Tensor* Graph::upsample(Tensor* x, int factor) { return node(Op::Upsample, {x}, [&](Tensor& t) { t.i[0] = factor; }); }
Tensor* Graph::gelu_erf(Tensor* a) { return node(Op::GeluErf, {a}); }
Tensor* Graph::quick_gelu(Tensor* a) { return node(Op::QuickGelu, {a}); }
Tensor* Graph::geglu(Tensor* x) { return node(Op::Geglu, {x}); }

Tensor* Graph::timestep_embedding(Tensor* t, int dim, bool flip_sin_to_cos, float downscale_freq_shift) {
    return node(Op::TimestepEmbedding, {t}, [&](Tensor& n) {
        n.i[0] = dim;
        n.i[1] = flip_sin_to_cos ? 1 : 0;
        n.f[0] = downscale_freq_shift;
    });
}

Tensor* Graph::copy(Tensor* a, DType type) { return node(Op::Copy, {a}, [](Tensor&) {}, type); }

void Graph::alias(Tensor* t, Tensor* dst) {
    const Tensor* base = dst->storage();
    QUANTA_CHECK_ARG(base->kind != TensorKind::Op, std::string(op_name(t->op)) + ": destination " + dst->describe() +
                                                       " must be a leaf or a view of one");
    for (int d = 0; d < kMaxDims; ++d) {
        t->ne[d] = dst->ne[d];
        t->nb[d] = dst->nb[d];
    }
    t->n_dims = dst->n_dims;
    t->view_src = const_cast<Tensor*>(base);
    t->view_offset = dst->view_offset;
}

Tensor* Graph::copy_into(Tensor* src, Tensor* dst) {
    QUANTA_CHECK_ARG(src->n_elements() == dst->n_elements(),
                     "copy_into: " + src->describe() + " and " + dst->describe() + " differ in size");
    Tensor* t = node(Op::Copy, {src, dst}, [](Tensor&) {}, dst->type);  // src[1] orders the write after dst's producer
    alias(t, dst);
    return t;
}

Tensor* Graph::make_view(Tensor* a) {
    Tensor* t = make(a->type, a->ne, a->n_dims, Op::View);
    t->src[0] = a;
    t->view_src = const_cast<Tensor*>(a->storage());
    t->view_offset = a->view_offset;
    for (int d = 0; d < kMaxDims; ++d) t->nb[d] = a->nb[d];
    return t;
}

Tensor* Graph::reshape(Tensor* a, const Shape& ne) {
    QUANTA_CHECK_ARG(a->is_contiguous(), "reshape: " + a->describe() + " is not contiguous");
    Tensor* t = make_view(a);
    int64_t n = 1;
    for (int d = 0; d < kMaxDims; ++d) t->ne[d] = d < (int)ne.size() ? ne[d] : 1;
    t->n_dims = (int)ne.size();
    for (int64_t x : ne) n *= x;
    QUANTA_CHECK_ARG(ne.size() >= 1 && ne.size() <= 4 && n == a->n_elements(),
                     "reshape: " + a->describe() + " cannot become " + std::to_string(n) + " elements");
    set_contiguous_strides(*t);
    return t;
}

Tensor* Graph::view(Tensor* a, const Shape& ne, const std::vector<size_t>& nb, size_t offset) {
    QUANTA_CHECK_ARG(ne.size() >= 1 && ne.size() <= 4 && nb.size() + 1 == ne.size(),
                     "view: give 1..4 dims and one stride fewer (row strides)");
    Tensor* t = make_view(a);
    for (int d = 0; d < kMaxDims; ++d) t->ne[d] = d < (int)ne.size() ? ne[d] : 1;
    t->n_dims = (int)ne.size();
    QUANTA_CHECK_ARG(t->ne[0] % type_info(a->type).block_size == 0, "view: row length breaks a block");
    t->nb[0] = type_info(a->type).block_bytes;
    for (int d = 1; d < kMaxDims; ++d)
        t->nb[d] = d <= (int)nb.size() ? nb[d - 1] : t->nb[d - 1] * (size_t)t->ne[d - 1];
    t->view_offset += offset;
    QUANTA_CHECK_ARG(t->view_offset - a->view_offset + t->n_bytes() <= a->n_bytes() || a->n_elements() == 0,
                     "view: " + t->shape_string() + " at offset " + std::to_string(offset) + " runs past " + a->describe());
    return t;
}

Tensor* Graph::after(Tensor* a, Tensor* dep) {
    Tensor* t = make_view(a);
    t->src[1] = dep;
    return t;
}

Tensor* Graph::transpose(Tensor* a) { return permute(a, 1, 0, 2, 3); }

Tensor* Graph::permute(Tensor* a, int ax0, int ax1, int ax2, int ax3) {
    const int axes[4] = {ax0, ax1, ax2, ax3};
    bool seen[4] = {false, false, false, false};
    for (int ax : axes) {
        QUANTA_CHECK_ARG(ax >= 0 && ax < 4 && !seen[ax], "permute: axes must be a permutation of 0..3");
        seen[ax] = true;
    }
    QUANTA_CHECK_ARG(type_info(a->type).block_size == 1 || axes[0] == 0, "permute: cannot move a quantized row");
    Tensor* t = make_view(a);
    for (int d = 0; d < kMaxDims; ++d) {
        t->ne[axes[d]] = a->ne[d];
        t->nb[axes[d]] = a->nb[d];
        if (d < a->n_dims) t->n_dims = std::max(t->n_dims, axes[d] + 1);
    }
    return t;
}

void Graph::mark_output(Tensor* t) {
    for (Tensor* o : outputs_)
        if (o == t) return;
    check_open();
    outputs_.push_back(t);
}

std::vector<Tensor*> Graph::topo_order() const {
    std::vector<Tensor*> order;
    std::unordered_set<const Tensor*> done;
    std::vector<std::pair<Tensor*, int>> stack;  // (tensor, next source to visit)
    for (Tensor* out : outputs_) {
        if (done.count(out)) continue;
        stack.push_back({out, 0});
        while (!stack.empty()) {
            auto& [t, next] = stack.back();
            Tensor* deps[kMaxSrc + 1] = {t->src[0], t->src[1], t->src[2], t->src[3], t->view_src};
            while (next < kMaxSrc + 1 && (!deps[next] || done.count(deps[next]))) ++next;
            if (next < kMaxSrc + 1) {
                Tensor* dep = deps[next++];
                stack.push_back({dep, 0});
                continue;
            }
            if (done.insert(t).second) order.push_back(t);
            stack.pop_back();
        }
    }
    return order;
}

void Graph::finalize() {
    if (finalized_) return;
    QUANTA_CHECK_ARG(!outputs_.empty(), "graph has no outputs");
    order_ = topo_order();
    plan_ = plan_memory(order_, outputs_);
    finalized_ = true;
}

}  // namespace quanta
