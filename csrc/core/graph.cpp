#include "core/graph.h"

#include <algorithm>
#include <unordered_set>

#include "core/error.h"

namespace quanta {
namespace {

std::string describe(const Tensor* t) {
    return (t->name.empty() ? std::string(op_name(t->op)) : "'" + t->name + "'") + " " + t->shape_string();
}

void check_f32(const Tensor* t, const char* op) {
    QUANTA_CHECK_ARG(t->type == DType::F32,
                     std::string(op) + ": " + describe(t) + " must be f32, not " + type_name(t->type));
}

void check_rows_contiguous(const Tensor* t, const char* op) {
    QUANTA_CHECK_ARG(t->nb[0] == type_info(t->type).block_bytes,
                     std::string(op) + ": rows of " + describe(t) + " must be contiguous");
}

}  // namespace

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

Tensor* Graph::unary(Op op, Tensor* a) {
    check_f32(a, op_name(op));
    Tensor* t = make(DType::F32, a->ne, a->n_dims, op);
    t->src[0] = a;
    return t;
}

Tensor* Graph::binary(Op op, Tensor* a, Tensor* b) {
    check_f32(a, op_name(op));
    check_f32(b, op_name(op));
    for (int d = 0; d < kMaxDims; ++d)
        QUANTA_CHECK_ARG(b->ne[d] > 0 && a->ne[d] % b->ne[d] == 0,
                         std::string(op_name(op)) + ": " + describe(b) + " does not broadcast over " + describe(a));
    Tensor* t = unary(op, a);
    t->src[1] = b;
    return t;
}

Tensor* Graph::add(Tensor* a, Tensor* b) { return binary(Op::Add, a, b); }
Tensor* Graph::mul(Tensor* a, Tensor* b) { return binary(Op::Mul, a, b); }
Tensor* Graph::silu(Tensor* a) { return unary(Op::Silu, a); }
Tensor* Graph::gelu(Tensor* a) { return unary(Op::Gelu, a); }

Tensor* Graph::scale(Tensor* a, float s) {
    Tensor* t = unary(Op::Scale, a);
    t->f[0] = s;
    return t;
}

Tensor* Graph::matmul(Tensor* w, Tensor* x) {
    check_f32(x, "matmul");
    check_rows_contiguous(w, "matmul");
    check_rows_contiguous(x, "matmul");
    QUANTA_CHECK_ARG(w->ne[0] == x->ne[0], "matmul: inner sizes differ: " + describe(w) + " x " + describe(x));
    QUANTA_CHECK_ARG(x->ne[2] % w->ne[2] == 0 && x->ne[3] % w->ne[3] == 0,
                     "matmul: batch dims of " + describe(w) + " do not broadcast over " + describe(x));
    const int64_t ne[4] = {w->ne[1], x->ne[1], x->ne[2], x->ne[3]};
    Tensor* t = make(DType::F32, ne, std::max({2, w->n_dims, x->n_dims}), Op::MatMul);
    t->src[0] = w;
    t->src[1] = x;
    return t;
}

Tensor* Graph::rms_norm(Tensor* x, float eps) {
    check_rows_contiguous(x, "rms_norm");
    Tensor* t = unary(Op::RmsNorm, x);
    t->f[0] = eps;
    return t;
}

Tensor* Graph::rope(Tensor* x, Tensor* pos, int n_rot, RopeMode mode, float freq_base, float freq_scale,
                    Tensor* freq_factors) {
    QUANTA_CHECK_ARG(pos->type == DType::I32 && pos->n_elements() == x->ne[2],
                     "rope: positions must be i32 with one entry per token (x.ne[2] = " + std::to_string(x->ne[2]) +
                         ")");
    QUANTA_CHECK_ARG(n_rot > 0 && n_rot % 2 == 0 && n_rot <= x->ne[0],
                     "rope: n_rot " + std::to_string(n_rot) + " must be even and at most the head size");
    QUANTA_CHECK_ARG(mode == RopeMode::Normal || mode == RopeMode::Neox, "rope: unknown mode");
    if (freq_factors) {
        check_f32(freq_factors, "rope freq_factors");
        QUANTA_CHECK_ARG(freq_factors->is_contiguous() && freq_factors->n_elements() == n_rot / 2,
                         "rope: freq_factors " + describe(freq_factors) + " must hold n_rot / 2 = " +
                             std::to_string(n_rot / 2) + " values");
    }
    Tensor* t = unary(Op::Rope, x);
    t->src[1] = pos;
    t->src[2] = freq_factors;
    t->i[0] = n_rot;
    t->i[1] = static_cast<int32_t>(mode);
    t->f[0] = freq_base;
    t->f[1] = freq_scale;
    return t;
}

Tensor* Graph::softmax(Tensor* x, Tensor* mask, float scale) {
    check_rows_contiguous(x, "softmax");
    Tensor* t = unary(Op::SoftMax, x);
    if (mask) {
        check_f32(mask, "softmax mask");
        check_rows_contiguous(mask, "softmax mask");
        QUANTA_CHECK_ARG(mask->ne[0] == x->ne[0] && mask->ne[1] >= x->ne[1] && mask->ne[2] == 1 && mask->ne[3] == 1,
                         "softmax: mask " + describe(mask) + " does not cover " + describe(x));
    }
    t->src[1] = mask;
    t->f[0] = scale;
    return t;
}

Tensor* Graph::get_rows(Tensor* table, Tensor* ids) {
    QUANTA_CHECK_ARG(ids->type == DType::I32 && ids->ne[1] == 1 && ids->ne[2] == 1 && ids->ne[3] == 1,
                     "get_rows: ids must be a 1-d i32 tensor");
    QUANTA_CHECK_ARG(table->ne[2] == 1 && table->ne[3] == 1, "get_rows: table must be 2-d");
    check_rows_contiguous(table, "get_rows");
    const int64_t ne[2] = {table->ne[0], ids->ne[0]};
    Tensor* t = make(DType::F32, ne, 2, Op::GetRows);
    t->src[0] = table;
    t->src[1] = ids;
    return t;
}

Tensor* Graph::concat(Tensor* a, Tensor* b, int dim) {
    QUANTA_CHECK_ARG(dim >= 0 && dim < kMaxDims, "concat: dim must be 0..3");
    QUANTA_CHECK_ARG(a->type == b->type && type_info(a->type).block_size == 1,
                     "concat: tensors must share one unquantized type");
    for (int d = 0; d < kMaxDims; ++d)
        QUANTA_CHECK_ARG(d == dim || a->ne[d] == b->ne[d],
                         "concat: " + describe(a) + " and " + describe(b) + " differ outside dim " + std::to_string(dim));
    int64_t ne[4] = {a->ne[0], a->ne[1], a->ne[2], a->ne[3]};
    ne[dim] += b->ne[dim];
    Tensor* t = make(a->type, ne, std::max({a->n_dims, b->n_dims, dim + 1}), Op::Concat);
    t->src[0] = a;
    t->src[1] = b;
    t->i[0] = dim;
    return t;
}

Tensor* Graph::copy(Tensor* a, DType type) {
    auto plain = [](DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; };
    QUANTA_CHECK_ARG(plain(a->type) && plain(type), "copy: converts only between f32, f16 and bf16");
    Tensor* t = make(type, a->ne, a->n_dims, Op::Copy);
    t->src[0] = a;
    return t;
}

Tensor* Graph::copy_into(Tensor* src, Tensor* dst) {
    QUANTA_CHECK_ARG(src->n_elements() == dst->n_elements(),
                     "copy_into: " + describe(src) + " and " + describe(dst) + " differ in size");
    Tensor* t = copy(src, dst->type);
    const Tensor* base = dst->storage();
    QUANTA_CHECK_ARG(base->kind != TensorKind::Op, "copy_into: destination must be a leaf or a view of one");
    for (int d = 0; d < kMaxDims; ++d) {
        t->ne[d] = dst->ne[d];
        t->nb[d] = dst->nb[d];
    }
    t->n_dims = dst->n_dims;
    t->view_src = const_cast<Tensor*>(base);
    t->view_offset = dst->view_offset;
    t->src[1] = dst;  // orders the write after whatever produced dst
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
    QUANTA_CHECK_ARG(a->is_contiguous(), "reshape: " + describe(a) + " is not contiguous");
    Tensor* t = make_view(a);
    int64_t n = 1;
    for (int d = 0; d < kMaxDims; ++d) t->ne[d] = d < (int)ne.size() ? ne[d] : 1;
    t->n_dims = (int)ne.size();
    for (int64_t x : ne) n *= x;
    QUANTA_CHECK_ARG(ne.size() >= 1 && ne.size() <= 4 && n == a->n_elements(),
                     "reshape: " + describe(a) + " cannot become " + std::to_string(n) + " elements");
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
                     "view: " + t->shape_string() + " at offset " + std::to_string(offset) + " runs past " + describe(a));
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
            Tensor* deps[4] = {t->src[0], t->src[1], t->src[2], t->view_src};
            while (next < 4 && (!deps[next] || done.count(deps[next]))) ++next;
            if (next < 4) {
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
