// The op table (op_table.h): each op's shape rule and scalar reference, and
// the one row that declares it. References favour clarity over speed: every
// element through a strided load, accumulations in double.
#include "core/op_table.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "core/elements.h"
#include "core/sinusoids.h"
#include "quant/dequantize.h"

namespace quanta {
namespace {

// ---- shared checks -----------------------------------------------------------

void check_f32(const Tensor* t, const char* op) {
    QUANTA_CHECK_ARG(t->type == DType::F32,
                     std::string(op) + ": " + t->describe() + " must be f32, not " + type_name(t->type));
}

void check_rows_contiguous(const Tensor* t, const char* op) {
    QUANTA_CHECK_ARG(t->nb[0] == type_info(t->type).block_bytes,
                     std::string(op) + ": rows of " + t->describe() + " must be contiguous");
}

void same_shape_as(Tensor& node, const Tensor* a) {
    for (int d = 0; d < kMaxDims; ++d) node.ne[d] = a->ne[d];
    node.n_dims = a->n_dims;
}

// ---- shape rules -------------------------------------------------------------

void shape_unary(Tensor& n) {
    check_f32(n.src[0], op_name(n.op));
    if (n.op == Op::RmsNorm || n.op == Op::LayerNorm) check_rows_contiguous(n.src[0], op_name(n.op));
    n.type = DType::F32;
    same_shape_as(n, n.src[0]);
}

void shape_binary(Tensor& n) {
    const Tensor *a = n.src[0], *b = n.src[1];
    check_f32(a, op_name(n.op));
    check_f32(b, op_name(n.op));
    for (int d = 0; d < kMaxDims; ++d)
        QUANTA_CHECK_ARG(b->ne[d] > 0 && a->ne[d] % b->ne[d] == 0,
                         std::string(op_name(n.op)) + ": " + b->describe() + " does not broadcast over " + a->describe());
    n.type = DType::F32;
    same_shape_as(n, a);
}

void shape_glu(Tensor& n) {
    const Tensor *gate = n.src[0], *up = n.src[1];
    check_f32(gate, "glu");
    check_f32(up, "glu");
    check_rows_contiguous(gate, "glu");
    check_rows_contiguous(up, "glu");
    QUANTA_CHECK_ARG(n.i[0] == (int32_t)GluAct::Silu || n.i[0] == (int32_t)GluAct::Gelu,
                     "glu: unknown activation " + std::to_string(n.i[0]));
    for (int d = 0; d < kMaxDims; ++d)
        QUANTA_CHECK_ARG(gate->ne[d] == up->ne[d], "glu: gate " + gate->describe() + " and up " + up->describe() +
                                                       " differ in shape");
    n.type = DType::F32;
    same_shape_as(n, gate);
}

void shape_matmul(Tensor& n) {
    const Tensor *w = n.src[0], *x = n.src[1];
    check_f32(x, "matmul");
    check_rows_contiguous(w, "matmul");
    check_rows_contiguous(x, "matmul");
    QUANTA_CHECK_ARG(w->ne[0] == x->ne[0], "matmul: inner sizes differ: " + w->describe() + " x " + x->describe());
    QUANTA_CHECK_ARG(x->ne[2] % w->ne[2] == 0 && x->ne[3] % w->ne[3] == 0,
                     "matmul: batch dims of " + w->describe() + " do not broadcast over " + x->describe());
    n.type = DType::F32;
    const int64_t ne[4] = {w->ne[1], x->ne[1], x->ne[2], x->ne[3]};
    for (int d = 0; d < kMaxDims; ++d) n.ne[d] = ne[d];
    n.n_dims = std::max({2, w->n_dims, x->n_dims});
}

void shape_rope(Tensor& n) {
    const Tensor *x = n.src[0], *pos = n.src[1], *factors = n.src[2];
    const int n_rot = n.i[0];
    check_f32(x, "rope");
    QUANTA_CHECK_ARG(x->nb[0] == 4, "rope: rows of " + x->describe() + " must be contiguous");
    QUANTA_CHECK_ARG(pos->type == DType::I32 && pos->is_contiguous() && pos->n_elements() == x->ne[2],
                     "rope: positions must be i32 with one entry per token (x.ne[2] = " + std::to_string(x->ne[2]) + ")");
    QUANTA_CHECK_ARG(n_rot > 0 && n_rot % 2 == 0 && n_rot <= x->ne[0],
                     "rope: n_rot " + std::to_string(n_rot) + " must be even and at most the head size");
    const auto mode = static_cast<RopeMode>(n.i[1]);
    QUANTA_CHECK_ARG(mode == RopeMode::Normal || mode == RopeMode::Neox, "rope: unknown mode");
    if (factors) {
        check_f32(factors, "rope freq_factors");
        QUANTA_CHECK_ARG(factors->is_contiguous() && factors->n_elements() == n_rot / 2,
                         "rope: freq_factors " + factors->describe() + " must hold n_rot / 2 = " +
                             std::to_string(n_rot / 2) + " values");
    }
    n.type = DType::F32;
    same_shape_as(n, x);
}

void shape_softmax(Tensor& n) {
    const Tensor *x = n.src[0], *mask = n.src[1];
    check_f32(x, "softmax");
    check_rows_contiguous(x, "softmax");
    if (mask) {
        check_f32(mask, "softmax mask");
        check_rows_contiguous(mask, "softmax mask");
        QUANTA_CHECK_ARG(mask->ne[0] == x->ne[0] && mask->ne[1] >= x->ne[1] && mask->ne[2] == 1 && mask->ne[3] == 1,
                         "softmax: mask " + mask->describe() + " does not cover " + x->describe());
    }
    n.type = DType::F32;
    same_shape_as(n, x);
}

void check_ids(const Tensor* ids, const char* op) {
    QUANTA_CHECK_ARG(ids->type == DType::I32 && ids->is_contiguous() && ids->ne[1] == 1 && ids->ne[2] == 1 &&
                         ids->ne[3] == 1,
                     std::string(op) + ": ids must be a 1-d contiguous i32 tensor, not " + ids->describe());
}

void shape_get_rows(Tensor& n) {
    const Tensor *table = n.src[0], *ids = n.src[1];
    check_ids(ids, "get_rows");
    QUANTA_CHECK_ARG(table->ne[2] == 1 && table->ne[3] == 1, "get_rows: table " + table->describe() + " must be 2-d");
    check_rows_contiguous(table, "get_rows");
    n.type = DType::F32;
    n.ne[0] = table->ne[0];
    n.ne[1] = ids->ne[0];
    n.n_dims = 2;
}

void shape_set_rows(Tensor& n) {
    const Tensor *dst = n.src[0], *rows = n.src[1], *ids = n.src[2];
    check_f32(rows, "set_rows");
    check_ids(ids, "set_rows");
    QUANTA_CHECK_ARG(plain_float(dst->type), "set_rows: destination " + dst->describe() + " must be f32, f16 or bf16");
    QUANTA_CHECK_ARG(dst->storage()->kind != TensorKind::Op,
                     "set_rows: destination " + dst->describe() + " must be a leaf or a view of one");
    QUANTA_CHECK_ARG(rows->ne[0] == dst->ne[0] && rows->ne[1] == ids->ne[0] && rows->ne[2] == dst->ne[2] &&
                         rows->ne[3] == dst->ne[3],
                     "set_rows: rows " + rows->describe() + " with " + std::to_string(ids->ne[0]) +
                         " ids do not fit destination " + dst->describe());
    n.type = dst->type;
    same_shape_as(n, dst);
}

// q [hd, H, T] f32; k [hd, C, Hkv] and v [hdv, C, Hkv] (f32/f16: KV cache
// layers, C cells); cells i32 [L + 1, T]: per token, how many cells it sees and
// which, in position order. -> [hdv, H, T]. Query heads share kv heads in groups.
void shape_attention(Tensor& n) {
    const Tensor *q = n.src[0], *k = n.src[1], *v = n.src[2], *cells = n.src[3];
    check_f32(q, "attention q");
    QUANTA_CHECK_ARG(q->is_contiguous(), "attention: q " + q->describe() + " must be contiguous");
    for (const Tensor* kv : {k, v}) {
        QUANTA_CHECK_ARG(kv->type == DType::F32 || kv->type == DType::F16,
                         "attention: " + kv->describe() + " must be f32 or f16, not " + type_name(kv->type));
        check_rows_contiguous(kv, "attention");
    }
    QUANTA_CHECK_ARG(k->ne[0] == q->ne[0], "attention: key size of " + k->describe() + " differs from q " + q->describe());
    QUANTA_CHECK_ARG(v->ne[1] == k->ne[1] && v->ne[2] == k->ne[2] && k->ne[3] == 1 && v->ne[3] == 1 && q->ne[3] == 1,
                     "attention: keys " + k->describe() + " and values " + v->describe() + " differ in cells or heads");
    QUANTA_CHECK_ARG(k->ne[2] > 0 && q->ne[1] % k->ne[2] == 0 && q->ne[1] / k->ne[2] <= 64,
                     "attention: " + std::to_string(q->ne[1]) + " query heads are not a multiple of " +
                         std::to_string(k->ne[2]) + " kv heads (at most 64 per kv head)");
    QUANTA_CHECK_ARG(cells->type == DType::I32 && cells->is_contiguous() && cells->ne[1] == q->ne[2] &&
                         cells->ne[0] >= 2 && cells->ne[0] - 1 <= k->ne[1] && cells->ne[2] == 1 && cells->ne[3] == 1,
                     "attention: cell lists " + cells->describe() + " must be i32 [L + 1, " + std::to_string(q->ne[2]) +
                         "] with L <= " + std::to_string(k->ne[1]) + " cells");
    n.type = DType::F32;
    n.ne[0] = v->ne[0];
    n.ne[1] = q->ne[1];
    n.ne[2] = q->ne[2];
    n.n_dims = 3;
}

// x f32 [W, H, Cin, N]; w [KW, KH, Cin, Cout] (plain float: ggml's layout, PyTorch's
// [Cout, Cin, KH, KW] reversed) or, any type, those rows flattened to [KW * KH * Cin, Cout];
// bias f32 [Cout] or none. -> f32 [OW, OH, Cout, N]. Every operand contiguous.
void shape_conv2d(Tensor& n) {
    const Tensor *x = n.src[0], *w = n.src[1], *bias = n.src[2];
    const int stride = n.i[0], pad = n.i[1], pad_end = n.i[2], kw = n.i[3], kh = n.i[4];
    check_f32(x, "conv2d input");
    QUANTA_CHECK_ARG(x->is_contiguous(), "conv2d: input " + x->describe() + " must be contiguous");
    QUANTA_CHECK_ARG(w->is_contiguous(), "conv2d: kernels " + w->describe() + " must be contiguous");
    QUANTA_CHECK_ARG(stride >= 1 && pad >= 0 && pad_end >= 0 && kw >= 1 && kh >= 1,
                     "conv2d: stride must be at least 1 and padding at least 0");
    const int64_t cin = x->ne[2], k = (int64_t)kw * kh * cin;
    const bool flat = w->ne[0] == k && w->ne[2] == 1 && w->ne[3] == 1;
    QUANTA_CHECK_ARG(flat || (w->ne[0] == kw && w->ne[1] == kh && w->ne[2] == cin),
                     "conv2d: kernels " + w->describe() + " are neither [" + std::to_string(kw) + ", " +
                         std::to_string(kh) + ", " + std::to_string(cin) + ", Cout] nor rows of " +
                         std::to_string(k) + " for input " + x->describe());
    QUANTA_CHECK_ARG(plain_float(w->type) || (flat && type_info(w->type).can_dequantize),
                     std::string("conv2d: ") + type_name(w->type) + " kernels " + w->describe() +
                         " must be flattened to rows of KW * KH * Cin = " + std::to_string(k) +
                         " (a multiple of the block size) in a dequantizable type");
    const int64_t cout = flat ? w->ne[1] : w->ne[3];
    if (bias) {
        check_f32(bias, "conv2d bias");
        QUANTA_CHECK_ARG(bias->is_contiguous() && bias->n_elements() == cout && bias->ne[0] == cout,
                         "conv2d: bias " + bias->describe() + " must hold one value per output channel (" +
                             std::to_string(cout) + ")");
    }
    const int64_t span_w = x->ne[0] + pad + pad_end - kw, span_h = x->ne[1] + pad + pad_end - kh;
    QUANTA_CHECK_ARG(span_w >= 0 && span_h >= 0, "conv2d: a " + std::to_string(kw) + "x" + std::to_string(kh) +
                                                     " kernel does not fit the padded input " + x->describe());
    n.type = DType::F32;
    n.ne[0] = span_w / stride + 1;
    n.ne[1] = span_h / stride + 1;
    n.ne[2] = cout;
    n.ne[3] = x->ne[3];
    n.n_dims = std::max(3, x->n_dims);
}

// q f32 [d, Tq, H, N]; k [d, Tk, H, N] and v [dv, Tk, H, N], f32 or f16; rows
// contiguous, other strides free (permuted views). -> f32 [dv, H, Tq, N].
void shape_dense_attention(Tensor& n) {
    const Tensor *q = n.src[0], *k = n.src[1], *v = n.src[2];
    check_f32(q, "dense_attention q");
    check_rows_contiguous(q, "dense_attention");
    for (const Tensor* kv : {k, v}) {
        QUANTA_CHECK_ARG(kv->type == DType::F32 || kv->type == DType::F16,
                         "dense_attention: " + kv->describe() + " must be f32 or f16, not " + type_name(kv->type));
        check_rows_contiguous(kv, "dense_attention");
    }
    QUANTA_CHECK_ARG(k->ne[0] == q->ne[0],
                     "dense_attention: key size of " + k->describe() + " differs from q " + q->describe());
    QUANTA_CHECK_ARG(k->ne[1] >= 1 && v->ne[1] == k->ne[1],
                     "dense_attention: keys " + k->describe() + " and values " + v->describe() + " differ in length");
    for (const Tensor* kv : {k, v})
        QUANTA_CHECK_ARG(kv->ne[2] == q->ne[2] && kv->ne[3] == q->ne[3],
                         "dense_attention: heads or batch of " + kv->describe() + " differ from q " + q->describe());
    n.type = DType::F32;
    n.ne[0] = v->ne[0];
    n.ne[1] = q->ne[2];
    n.ne[2] = q->ne[1];
    n.ne[3] = q->ne[3];
    n.n_dims = std::max(3, q->n_dims);
}

void shape_concat(Tensor& n) {
    const Tensor *a = n.src[0], *b = n.src[1];
    const int dim = n.i[0];
    QUANTA_CHECK_ARG(dim >= 0 && dim < kMaxDims, "concat: dim must be 0..3");
    QUANTA_CHECK_ARG(a->type == b->type && type_info(a->type).block_size == 1,
                     "concat: tensors must share one unquantized type");
    for (int d = 0; d < kMaxDims; ++d)
        QUANTA_CHECK_ARG(d == dim || a->ne[d] == b->ne[d],
                         "concat: " + a->describe() + " and " + b->describe() + " differ outside dim " + std::to_string(dim));
    n.type = a->type;
    same_shape_as(n, a);
    n.ne[dim] += b->ne[dim];
    n.n_dims = std::max({a->n_dims, b->n_dims, dim + 1});
}

void check_groups(const Tensor& n, const char* op) {
    const Tensor* x = n.src[0];
    check_f32(x, op);
    check_rows_contiguous(x, op);
    QUANTA_CHECK_ARG(n.i[0] >= 1 && x->ne[2] % n.i[0] == 0,
                     std::string(op) + ": " + std::to_string(n.i[0]) + " groups do not split the " +
                         std::to_string(x->ne[2]) + " channels (ne[2]) of " + x->describe());
}

// x f32 [W, H, C, N]; i[0] groups split C; moments (optional) f32 [2, groups, N]: each group's mean and variance.
void shape_group_norm(Tensor& n) {
    check_groups(n, "group_norm");
    const Tensor *x = n.src[0], *m = n.src[1];
    if (m) {
        check_f32(m, "group_norm moments");
        QUANTA_CHECK_ARG(m->is_contiguous() && m->ne[0] == 2 && m->ne[1] == n.i[0] && m->ne[2] == x->ne[3] &&
                             m->ne[3] == 1,
                         "group_norm: moments " + m->describe() + " must be [2, " + std::to_string(n.i[0]) + ", " +
                             std::to_string(x->ne[3]) + "] (mean and variance per group and image)");
    }
    n.type = DType::F32;
    same_shape_as(n, x);
}

// x f32 [W, H, C, N]; window i32 [4]: x0, y0, x1, y1 in units of i[1] pixels (clamped to the image)
// -> f32 [3, groups, N]: the count, mean and sum of squared deviations of each group's values in the window.
void shape_group_moments(Tensor& n) {
    check_groups(n, "group_moments");
    const Tensor *x = n.src[0], *w = n.src[1];
    QUANTA_CHECK_ARG(w->type == DType::I32 && w->is_contiguous() && w->n_elements() == 4,
                     "group_moments: window " + w->describe() + " must be i32 [4] (x0, y0, x1, y1)");
    QUANTA_CHECK_ARG(n.i[1] >= 1, "group_moments: the window's scale must be at least 1");
    n.type = DType::F32;
    n.n_dims = 3;
    n.ne[0] = 3;
    n.ne[1] = n.i[0];
    n.ne[2] = x->ne[3];
    n.ne[3] = 1;
}

void shape_upsample(Tensor& n) {
    const Tensor* x = n.src[0];
    check_f32(x, "upsample");
    check_rows_contiguous(x, "upsample");
    QUANTA_CHECK_ARG(n.i[0] >= 1, "upsample: factor " + std::to_string(n.i[0]) + " must be at least 1");
    n.type = DType::F32;
    same_shape_as(n, x);
    n.ne[0] *= n.i[0];
    n.ne[1] *= n.i[0];
    n.n_dims = std::max(2, x->n_dims);
}

void shape_geglu(Tensor& n) {
    const Tensor* x = n.src[0];
    check_f32(x, "geglu");
    check_rows_contiguous(x, "geglu");
    QUANTA_CHECK_ARG(x->ne[0] % 2 == 0, "geglu: rows of " + x->describe() + " must split into two halves");
    n.type = DType::F32;
    same_shape_as(n, x);
    n.ne[0] /= 2;
}

// t f32 [n]; i[0] dim, i[1] cos first, f[0] the frequency shift -> [dim, n].
void shape_timestep_embedding(Tensor& n) {
    const Tensor* t = n.src[0];
    check_f32(t, "timestep_embedding");
    QUANTA_CHECK_ARG(t->is_contiguous() && t->ne[1] == 1 && t->ne[2] == 1 && t->ne[3] == 1,
                     "timestep_embedding: timesteps " + t->describe() + " must be a contiguous 1-d tensor");
    QUANTA_CHECK_ARG(n.i[0] >= 2 && n.i[0] / 2 - n.f[0] > 0,
                     "timestep_embedding: dim " + std::to_string(n.i[0]) + " must be at least 2 and half of it more "
                         "than downscale_freq_shift " + std::to_string(n.f[0]));
    n.type = DType::F32;
    n.ne[0] = n.i[0];
    n.ne[1] = t->ne[0];
    n.n_dims = 2;
}

void shape_copy(Tensor& n) {
    QUANTA_CHECK_ARG(plain_float(n.src[0]->type) && plain_float(n.type), "copy: converts only between f32, f16 and bf16");
    same_shape_as(n, n.src[0]);
}

// ---- reference arithmetic ------------------------------------------------------

// Row (i1, i2, i3) of any tensor as floats: dequantized, or gathered through strides.
std::vector<float> row_f32(const Tensor* t, int64_t i1, int64_t i2, int64_t i3) {
    std::vector<float> out((size_t)t->ne[0]);
    if (!plain_float(t->type)) {
        dequantize_row(t->type, at(t, 0, i1, i2, i3), out.data(), t->ne[0]);
        return out;
    }
    for (int64_t j = 0; j < t->ne[0]; ++j) out[j] = load_float(t->type, at(t, j, i1, i2, i3));
    return out;
}

// Calls f(i0, i1, i2, i3) for every element of t's shape.
template <typename F>
void for_each(const Tensor& t, F f) {
    for (int64_t i3 = 0; i3 < t.ne[3]; ++i3)
        for (int64_t i2 = 0; i2 < t.ne[2]; ++i2)
            for (int64_t i1 = 0; i1 < t.ne[1]; ++i1)
                for (int64_t i0 = 0; i0 < t.ne[0]; ++i0) f(i0, i1, i2, i3);
}

float gelu_erf_value(double x) { return (float)(0.5 * x * std::erfc(-x / std::sqrt(2.0))); }

float unary_value(Op op, float x, const Tensor& d) {
    switch (op) {
        case Op::Scale: return x * d.f[0];
        case Op::Silu: return (float)(x / (1.0 + std::exp(-(double)x)));
        case Op::GeluErf: return gelu_erf_value(x);
        case Op::QuickGelu: return (float)(x / (1.0 + std::exp(-kQuickGeluScale * (double)x)));
        default: {  // Gelu, tanh approximation
            const double v = x;
            return (float)(0.5 * v * (1.0 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))));
        }
    }
}

bool ref_unary(const Tensor& d) {
    const Tensor* a = d.src[0];
    for_each(d, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        store_float(d.type, at(&d, i0, i1, i2, i3), unary_value(d.op, load_float(a->type, at(a, i0, i1, i2, i3)), d));
    });
    return true;
}

bool ref_binary(const Tensor& d) {
    const Tensor *a = d.src[0], *b = d.src[1];
    for_each(d, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        const float x = load_float(a->type, at(a, i0, i1, i2, i3));
        const float y = load_float(b->type, at(b, i0 % b->ne[0], i1 % b->ne[1], i2 % b->ne[2], i3 % b->ne[3]));
        store_float(d.type, at(&d, i0, i1, i2, i3), d.op == Op::Add ? x + y : x * y);
    });
    return true;
}

bool ref_glu(const Tensor& d) {
    const Tensor *gate = d.src[0], *up = d.src[1];
    const Op act = d.i[0] == (int32_t)GluAct::Silu ? Op::Silu : Op::Gelu;
    for_each(d, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        const float g = unary_value(act, load_float(gate->type, at(gate, i0, i1, i2, i3)), d);
        store_float(d.type, at(&d, i0, i1, i2, i3), g * load_float(up->type, at(up, i0, i1, i2, i3)));
    });
    return true;
}

bool ref_rms_norm(const Tensor& d) {
    const Tensor* a = d.src[0];
    for (int64_t i3 = 0; i3 < d.ne[3]; ++i3)
        for (int64_t i2 = 0; i2 < d.ne[2]; ++i2)
            for (int64_t i1 = 0; i1 < d.ne[1]; ++i1) {
                const std::vector<float> x = row_f32(a, i1, i2, i3);
                double sum = 0;
                for (float v : x) sum += (double)v * v;
                const double s = 1.0 / std::sqrt(sum / (double)x.size() + (double)d.f[0]);
                for (int64_t j = 0; j < d.ne[0]; ++j) store_float(d.type, at(&d, j, i1, i2, i3), (float)(x[j] * s));
            }
    return true;
}

// (v - mean) / sqrt(var + eps) over all of v, the biased variance, in double.
std::vector<float> normalized(const std::vector<float>& v, float eps) {
    double mean = 0, var = 0;
    for (float e : v) mean += e;
    mean /= (double)v.size();
    for (float e : v) var += (e - mean) * (e - mean);
    const double s = 1.0 / std::sqrt(var / (double)v.size() + (double)eps);
    std::vector<float> out(v.size());
    for (size_t k = 0; k < v.size(); ++k) out[k] = (float)((v[k] - mean) * s);
    return out;
}

// Each group gathered whole, normalized (by its own moments or the given ones), and scattered back.
bool ref_group_norm(const Tensor& d) {
    const Tensor *x = d.src[0], *m = d.src[1];
    const int64_t per_group = x->ne[2] / d.i[0];
    for (int64_t i3 = 0; i3 < d.ne[3]; ++i3)
        for (int64_t c0 = 0; c0 < d.ne[2]; c0 += per_group) {
            std::vector<float> v;
            for (int64_t i2 = c0; i2 < c0 + per_group; ++i2)
                for (int64_t i1 = 0; i1 < d.ne[1]; ++i1)
                    for (int64_t i0 = 0; i0 < d.ne[0]; ++i0) v.push_back(load_float(x->type, at(x, i0, i1, i2, i3)));
            std::vector<float> y = normalized(v, d.f[0]);
            if (m) {
                const float* mv = static_cast<const float*>(m->data) + (i3 * d.i[0] + c0 / per_group) * 2;
                const double s = 1.0 / std::sqrt((double)mv[1] + (double)d.f[0]);
                for (size_t k = 0; k < v.size(); ++k) y[k] = (float)((v[k] - (double)mv[0]) * s);
            }
            size_t k = 0;
            for (int64_t i2 = c0; i2 < c0 + per_group; ++i2)
                for (int64_t i1 = 0; i1 < d.ne[1]; ++i1)
                    for (int64_t i0 = 0; i0 < d.ne[0]; ++i0) store_float(d.type, at(&d, i0, i1, i2, i3), y[k++]);
        }
    return true;
}

// Two passes in double over each group's values inside the window.
bool ref_group_moments(const Tensor& d) {
    const Tensor* x = d.src[0];
    const int32_t* win = static_cast<const int32_t*>(d.src[1]->data);
    const int64_t s = d.i[1], per_group = x->ne[2] / d.i[0];
    const int64_t x0 = std::clamp<int64_t>(win[0] * s, 0, x->ne[0]), x1 = std::clamp<int64_t>(win[2] * s, x0, x->ne[0]);
    const int64_t y0 = std::clamp<int64_t>(win[1] * s, 0, x->ne[1]), y1 = std::clamp<int64_t>(win[3] * s, y0, x->ne[1]);
    for (int64_t i3 = 0; i3 < x->ne[3]; ++i3)
        for (int64_t g = 0; g < d.i[0]; ++g) {
            std::vector<double> v;
            for (int64_t i2 = g * per_group; i2 < (g + 1) * per_group; ++i2)
                for (int64_t i1 = y0; i1 < y1; ++i1)
                    for (int64_t i0 = x0; i0 < x1; ++i0) v.push_back(load_float(x->type, at(x, i0, i1, i2, i3)));
            double mean = 0, m2 = 0;
            for (double e : v) mean += e;
            mean = v.empty() ? 0 : mean / (double)v.size();
            for (double e : v) m2 += (e - mean) * (e - mean);
            float* out = static_cast<float*>(d.data) + (i3 * d.i[0] + g) * 3;
            out[0] = (float)v.size();
            out[1] = (float)mean;
            out[2] = (float)m2;
        }
    return true;
}

bool ref_layer_norm(const Tensor& d) {
    for (int64_t i3 = 0; i3 < d.ne[3]; ++i3)
        for (int64_t i2 = 0; i2 < d.ne[2]; ++i2)
            for (int64_t i1 = 0; i1 < d.ne[1]; ++i1) {
                const std::vector<float> y = normalized(row_f32(d.src[0], i1, i2, i3), d.f[0]);
                for (int64_t j = 0; j < d.ne[0]; ++j) store_float(d.type, at(&d, j, i1, i2, i3), y[j]);
            }
    return true;
}

bool ref_upsample(const Tensor& d) {
    const Tensor* x = d.src[0];
    const int f = d.i[0];
    for_each(d, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        store_float(d.type, at(&d, i0, i1, i2, i3), load_float(x->type, at(x, i0 / f, i1 / f, i2, i3)));
    });
    return true;
}

bool ref_geglu(const Tensor& d) {
    const Tensor* x = d.src[0];
    for_each(d, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        const float value = load_float(x->type, at(x, i0, i1, i2, i3));
        const float gate = load_float(x->type, at(x, i0 + d.ne[0], i1, i2, i3));
        store_float(d.type, at(&d, i0, i1, i2, i3), value * gelu_erf_value(gate));
    });
    return true;
}

bool ref_timestep_embedding(const Tensor& d) {
    const float* t = static_cast<const float*>(d.src[0]->data);
    for (int64_t m = 0; m < d.ne[1]; ++m)
        timestep_embedding_row(t[m], d.i[0], d.i[1] != 0, d.f[0], reinterpret_cast<float*>(at(&d, 0, m, 0, 0)));
    return true;
}

bool ref_matmul(const Tensor& d) {
    const Tensor *w = d.src[0], *x = d.src[1];
    const int64_t r2 = x->ne[2] / w->ne[2], r3 = x->ne[3] / w->ne[3];
    for (int64_t i3 = 0; i3 < d.ne[3]; ++i3)
        for (int64_t i2 = 0; i2 < d.ne[2]; ++i2)
            for (int64_t n = 0; n < d.ne[0]; ++n) {
                const std::vector<float> wr = row_f32(w, n, i2 / r2, i3 / r3);
                for (int64_t m = 0; m < d.ne[1]; ++m) {
                    const std::vector<float> xr = row_f32(x, m, i2, i3);
                    double sum = 0;
                    for (size_t k = 0; k < wr.size(); ++k) sum += (double)wr[k] * xr[k];
                    store_float(d.type, at(&d, n, m, i2, i3), (float)sum);
                }
            }
    return true;
}

bool ref_rope(const Tensor& d) {
    const Tensor *x = d.src[0], *pos = d.src[1], *factors = d.src[2];
    const int n_rot = d.i[0], half = n_rot / 2;
    const bool neox = static_cast<RopeMode>(d.i[1]) == RopeMode::Neox;
    for (int64_t i3 = 0; i3 < d.ne[3]; ++i3)
        for (int64_t i2 = 0; i2 < d.ne[2]; ++i2)
            for (int64_t i1 = 0; i1 < d.ne[1]; ++i1) {
                const std::vector<float> r = row_f32(x, i1, i2, i3);
                std::vector<float> y = r;
                const double p = static_cast<const int32_t*>(pos->data)[i2];
                for (int i = 0; i < half; ++i) {
                    double theta = p * d.f[1] * std::pow((double)d.f[0], -2.0 * i / n_rot);
                    if (factors) theta /= static_cast<const float*>(factors->data)[i];
                    const int j0 = neox ? i : 2 * i, j1 = neox ? i + half : 2 * i + 1;
                    const double c = std::cos(theta), s = std::sin(theta);
                    y[j0] = (float)(r[j0] * c - r[j1] * s);
                    y[j1] = (float)(r[j0] * s + r[j1] * c);
                }
                for (int64_t j = 0; j < d.ne[0]; ++j) store_float(d.type, at(&d, j, i1, i2, i3), y[j]);
            }
    return true;
}

bool ref_softmax(const Tensor& d) {
    const Tensor *x = d.src[0], *mask = d.src[1];
    for (int64_t i3 = 0; i3 < d.ne[3]; ++i3)
        for (int64_t i2 = 0; i2 < d.ne[2]; ++i2)
            for (int64_t i1 = 0; i1 < d.ne[1]; ++i1) {
                std::vector<double> v((size_t)d.ne[0]);
                double top = -INFINITY;
                for (int64_t j = 0; j < d.ne[0]; ++j) {
                    v[j] = (double)load_float(x->type, at(x, j, i1, i2, i3)) * d.f[0];
                    if (mask) v[j] += load_float(mask->type, at(mask, j, i1, 0, 0));
                    top = std::max(top, v[j]);
                }
                double sum = 0;
                for (double& e : v) sum += (e = top == -INFINITY ? 0.0 : std::exp(e - top));
                for (int64_t j = 0; j < d.ne[0]; ++j)
                    store_float(d.type, at(&d, j, i1, i2, i3), top == -INFINITY ? 0.0f : (float)(v[j] / sum));
            }
    return true;
}

bool ref_get_rows(const Tensor& d) {
    const Tensor *table = d.src[0], *ids = d.src[1];
    bool ok = true;
    for (int64_t m = 0; m < d.ne[1]; ++m) {
        const int32_t id = static_cast<const int32_t*>(ids->data)[m];
        const bool valid = id >= 0 && id < table->ne[1];
        ok = ok && valid;
        const std::vector<float> r = valid ? row_f32(table, id, 0, 0) : std::vector<float>((size_t)d.ne[0], 0.0f);
        for (int64_t j = 0; j < d.ne[0]; ++j) store_float(d.type, at(&d, j, m, 0, 0), r[j]);
    }
    return ok;
}

bool ref_set_rows(const Tensor& d) {
    const Tensor *rows = d.src[1], *ids = d.src[2];
    bool ok = true;
    for (int64_t i3 = 0; i3 < rows->ne[3]; ++i3)
        for (int64_t i2 = 0; i2 < rows->ne[2]; ++i2)
            for (int64_t t = 0; t < rows->ne[1]; ++t) {
                const int32_t id = static_cast<const int32_t*>(ids->data)[t];
                if (id < 0 || id >= d.ne[1]) {
                    ok = false;
                    continue;
                }
                for (int64_t j = 0; j < d.ne[0]; ++j)
                    store_float(d.type, at(&d, j, id, i2, i3), load_float(rows->type, at(rows, j, t, i2, i3)));
            }
    return ok;
}

bool ref_concat(const Tensor& d) {
    const Tensor *a = d.src[0], *b = d.src[1];
    const int dim = d.i[0];
    for_each(d, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        int64_t idx[4] = {i0, i1, i2, i3};
        const Tensor* s = a;
        if (idx[dim] >= a->ne[dim]) {
            idx[dim] -= a->ne[dim];
            s = b;
        }
        std::memcpy(at(&d, i0, i1, i2, i3), at(s, idx[0], idx[1], idx[2], idx[3]),
                    type_info(d.type).block_bytes);
    });
    return true;
}

// Same element count, maybe different shapes: both walked in logical row-major order.
bool ref_copy(const Tensor& d) {
    const Tensor* s = d.src[0];
    int64_t flat = 0;
    for_each(d, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        int64_t f = flat++;
        const int64_t s0 = f % s->ne[0];
        f /= s->ne[0];
        const int64_t s1 = f % s->ne[1];
        f /= s->ne[1];
        store_float(d.type, at(&d, i0, i1, i2, i3), load_float(s->type, at(s, s0, s1, f % s->ne[2], f / s->ne[2])));
    });
    return true;
}

// Two passes per (token, head): scores and their softmax, then the weighted
// sum of values, both over the token's cells in the order listed.
bool ref_attention(const Tensor& d) {
    const Tensor *q = d.src[0], *k = d.src[1], *v = d.src[2], *cells = d.src[3];
    const int64_t group = q->ne[1] / k->ne[2], stride = cells->ne[0];
    const int32_t* lists = static_cast<const int32_t*>(cells->data);
    bool ok = true;
    for (int64_t t = 0; t < q->ne[2]; ++t) {
        const int32_t* list = lists + t * stride;
        const int32_t n = list[0];
        if (n < 1 || n >= stride) {
            ok = false;
            continue;
        }
        for (int64_t h = 0; h < q->ne[1]; ++h) {
            const int64_t kvh = h / group;
            const std::vector<float> qr = row_f32(q, h, t, 0);
            std::vector<double> p(n);
            double top = -INFINITY, sum = 0;
            for (int32_t j = 0; j < n; ++j) {
                if (list[1 + j] < 0 || list[1 + j] >= k->ne[1]) return false;
                const std::vector<float> kr = row_f32(k, list[1 + j], kvh, 0);
                double dot = 0;
                for (size_t e = 0; e < kr.size(); ++e) dot += (double)kr[e] * qr[e];
                top = std::max(top, p[j] = dot * d.f[0]);
            }
            for (double& x : p) sum += (x = std::exp(x - top));
            std::vector<double> acc((size_t)v->ne[0], 0.0);
            for (int32_t j = 0; j < n; ++j) {
                const std::vector<float> vr = row_f32(v, list[1 + j], kvh, 0);
                for (size_t e = 0; e < vr.size(); ++e) acc[e] += p[j] * vr[e];
            }
            for (int64_t e = 0; e < d.ne[0]; ++e) store_float(d.type, at(&d, e, h, t, 0), (float)(acc[e] / sum));
        }
    }
    return ok;
}

// Direct convolution: each output is the sum over input channels and kernel
// taps that land inside the image (the padding is zeros).
bool ref_conv2d(const Tensor& d) {
    const Tensor *x = d.src[0], *w = d.src[1], *bias = d.src[2];
    const int64_t stride = d.i[0], pad = d.i[1], kw = d.i[3], kh = d.i[4], cin = x->ne[2];
    const size_t w_row = row_bytes(w->type, kw * kh * cin);
    for (int64_t co = 0; co < d.ne[2]; ++co) {
        std::vector<float> kernel((size_t)(kw * kh * cin));  // [ci][ky][kx]
        const char* row = static_cast<const char*>(w->data) + co * w_row;
        if (plain_float(w->type))
            for (size_t e = 0; e < kernel.size(); ++e) kernel[e] = load_float(w->type, row + e * w->nb[0]);
        else
            dequantize_row(w->type, row, kernel.data(), (int64_t)kernel.size());
        const double b = bias ? load_float(DType::F32, at(bias, co, 0, 0, 0)) : 0.0;
        for (int64_t n = 0; n < d.ne[3]; ++n)
            for (int64_t oy = 0; oy < d.ne[1]; ++oy)
                for (int64_t ox = 0; ox < d.ne[0]; ++ox) {
                    double sum = b;
                    for (int64_t ci = 0; ci < cin; ++ci)
                        for (int64_t ky = 0; ky < kh; ++ky)
                            for (int64_t kx = 0; kx < kw; ++kx) {
                                const int64_t ix = ox * stride + kx - pad, iy = oy * stride + ky - pad;
                                if (ix < 0 || ix >= x->ne[0] || iy < 0 || iy >= x->ne[1]) continue;
                                sum += (double)kernel[(size_t)((ci * kh + ky) * kw + kx)] *
                                       load_float(DType::F32, at(x, ix, iy, ci, n));
                            }
                    store_float(d.type, at(&d, ox, oy, co, n), (float)sum);
                }
    }
    return true;
}

// Two passes per query row, as ref_attention: every score and its softmax,
// then the weighted sum of every value row.
bool ref_dense_attention(const Tensor& d) {
    const Tensor *q = d.src[0], *k = d.src[1], *v = d.src[2];
    for (int64_t n = 0; n < q->ne[3]; ++n)
        for (int64_t h = 0; h < q->ne[2]; ++h)
            for (int64_t t = 0; t < q->ne[1]; ++t) {
                const std::vector<float> qr = row_f32(q, t, h, n);
                std::vector<double> p((size_t)k->ne[1]);
                double top = -INFINITY, sum = 0;
                for (int64_t j = 0; j < k->ne[1]; ++j) {
                    const std::vector<float> kr = row_f32(k, j, h, n);
                    double dot = 0;
                    for (size_t e = 0; e < kr.size(); ++e) dot += (double)kr[e] * qr[e];
                    top = std::max(top, p[j] = dot * d.f[0]);
                }
                for (double& x : p) sum += (x = std::exp(x - top));
                std::vector<double> acc((size_t)v->ne[0], 0.0);
                for (int64_t j = 0; j < k->ne[1]; ++j) {
                    const std::vector<float> vr = row_f32(v, j, h, n);
                    for (size_t e = 0; e < vr.size(); ++e) acc[e] += p[j] * vr[e];
                }
                for (int64_t e = 0; e < d.ne[0]; ++e) store_float(d.type, at(&d, e, h, t, n), (float)(acc[e] / sum));
            }
    return true;
}

// ---- the table -----------------------------------------------------------------

constexpr OpInfo kOps[kOpCount] = {
    /* None    */ {"none", 0, 0, nullptr, nullptr},
    /* View    */ {"view", 1, 2, nullptr, nullptr},
    /* Copy    */ {"copy", 1, 2, shape_copy, ref_copy},
    /* Add     */ {"add", 2, 2, shape_binary, ref_binary},
    /* Mul     */ {"mul", 2, 2, shape_binary, ref_binary},
    /* Scale   */ {"scale", 1, 1, shape_unary, ref_unary},
    /* MatMul  */ {"matmul", 2, 2, shape_matmul, ref_matmul},
    /* RmsNorm */ {"rms_norm", 1, 1, shape_unary, ref_rms_norm},
    /* Rope    */ {"rope", 2, 3, shape_rope, ref_rope},
    /* SoftMax */ {"softmax", 1, 2, shape_softmax, ref_softmax},
    /* Silu    */ {"silu", 1, 1, shape_unary, ref_unary},
    /* Gelu    */ {"gelu", 1, 1, shape_unary, ref_unary},
    /* GetRows */ {"get_rows", 2, 2, shape_get_rows, ref_get_rows},
    /* SetRows */ {"set_rows", 3, 3, shape_set_rows, ref_set_rows},
    /* Concat  */ {"concat", 2, 2, shape_concat, ref_concat},
    /* Attention */ {"attention", 4, 4, shape_attention, ref_attention},
    /* GroupNorm */ {"group_norm", 1, 2, shape_group_norm, ref_group_norm},
    /* LayerNorm */ {"layer_norm", 1, 1, shape_unary, ref_layer_norm},
    /* Upsample  */ {"upsample", 1, 1, shape_upsample, ref_upsample},
    /* GeluErf   */ {"gelu_erf", 1, 1, shape_unary, ref_unary},
    /* QuickGelu */ {"quick_gelu", 1, 1, shape_unary, ref_unary},
    /* Geglu     */ {"geglu", 1, 1, shape_geglu, ref_geglu},
    /* TimestepEmbedding */ {"timestep_embedding", 1, 1, shape_timestep_embedding, ref_timestep_embedding},
    /* Conv2d  */ {"conv2d", 2, 3, shape_conv2d, ref_conv2d},
    /* DenseAttention */ {"dense_attention", 3, 3, shape_dense_attention, ref_dense_attention},
    /* GroupMoments */ {"group_moments", 2, 2, shape_group_moments, ref_group_moments},
    /* Glu     */ {"glu", 2, 2, shape_glu, ref_glu},
};

}  // namespace

const OpInfo& op_info(Op op) {
    const int i = static_cast<int>(op);
    if (i < 0 || i >= kOpCount) fail(ErrorKind::Internal, "op id " + std::to_string(i) + " is not in the op table");
    return kOps[i];
}

const char* op_name(Op op) {
    const int i = static_cast<int>(op);
    return i >= 0 && i < kOpCount ? kOps[i].name : "?";
}

}  // namespace quanta
