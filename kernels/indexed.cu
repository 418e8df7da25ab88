// Ops that follow ids held in device memory: GetRows (rows of a table in any
// storage type, as f32), SetRows (rows written into a KV cache, f32 or f16)
// and Attention (each query token over the cache cells it lists). An id that
// falls outside its table writes nothing useful and raises g_bad_ids, which
// compute() takes after the graph and turns into the CPU backend's
// ValueError; the CPU checks the same ids the same way. The attention kernel
// is the plain first version (issue 15): a block per (head, token), each
// thread a whole dot product, scores in shared memory; correct, not fast.
#include <cmath>

#include "dequantize.cuh"

namespace quanta_cuda {
namespace {

constexpr int kThreads = 128;

__device__ int g_bad_ids;  // set by a kernel that met an id outside its table; taken by take_bad_ids()

// ---- get_rows: out row m = table row ids[m] as floats; ids out of range give zeros and an error ----------

__global__ void get_rows_kernel(float* out, const uint8_t* table, uint64_t row_bytes, int64_t rows, uint32_t type,
                                const int32_t* ids, int64_t ne0) {
    const int64_t m = blockIdx.x;
    const int32_t id = ids[m];
    float* y = out + m * ne0;
    if (id < 0 || id >= rows) {
        for (int64_t j = threadIdx.x; j < ne0; j += blockDim.x) y[j] = 0.0f;
        if (threadIdx.x == 0) atomicExch(&g_bad_ids, 1);
        return;
    }
    dequantize_row(type, table + (uint64_t)id * row_bytes, ne0, y);
}

bool get_rows_supports(const quanta_cuda_tensor* n) {
    const quanta_cuda_tensor *table = n->src[0], *ids = n->src[1];
    return contiguous_f32(n) && n->ne[2] == 1 && n->ne[3] == 1 && rows_of_blocks(table) && table->ne[2] == 1 &&
           table->ne[3] == 1 && table->ne[0] == n->ne[0] && ids && ids->type == kI32 && contiguous(ids, 4) &&
           ids->ne[0] >= n->ne[1];
}

int get_rows_launch(const quanta_cuda_tensor* n, const Launch& l) {
    const cudaStream_t s = l.stream;
    if (n->ne[1] == 0) return 0;
    const quanta_cuda_tensor* table = n->src[0];
    get_rows_kernel<<<(unsigned)n->ne[1], kThreads, 0, s>>>(
        static_cast<float*>(n->data), static_cast<const uint8_t*>(table->data), table->nb[1], table->ne[1],
        table->type, static_cast<const int32_t*>(n->src[1]->data), n->ne[0]);
    return check(cudaGetLastError(), "get_rows launch");
}

// ---- set_rows: row t of src[1] (f32) into row ids[t] of the buffer src[0] views (f32 or f16) ------------------

__global__ void set_rows_kernel(uint8_t* dst, uint32_t type, uint64_t d_nb0, uint64_t d_nb1, uint64_t d_nb2,
                                uint64_t d_nb3, int64_t d_rows, const float* rows, int64_t ne0, int64_t n_rows,
                                int64_t ne2, const int32_t* ids) {
    const int64_t r = blockIdx.x, t = r % n_rows, i2 = (r / n_rows) % ne2, i3 = r / n_rows / ne2;
    const int32_t id = ids[t];
    if (id < 0 || id >= d_rows) {
        if (threadIdx.x == 0) atomicExch(&g_bad_ids, 1);
        return;
    }
    const float* src = rows + r * ne0;
    uint8_t* d = dst + (uint64_t)id * d_nb1 + i2 * d_nb2 + i3 * d_nb3;
    for (int64_t j = threadIdx.x; j < ne0; j += blockDim.x) store_float(type, d + j * d_nb0, src[j]);
}

bool set_rows_supports(const quanta_cuda_tensor* n) {
    const quanta_cuda_tensor *rows = n->src[1], *ids = n->src[2];
    return (n->type == kF32 || n->type == kF16) && n->nb[0] == element_bytes(n->type) && contiguous_f32(rows) && ids &&
           ids->type == kI32 && contiguous(ids, 4) && ids->ne[0] >= rows->ne[1] && rows->ne[0] == n->ne[0] &&
           rows->ne[2] == n->ne[2] && rows->ne[3] == n->ne[3];
}

int set_rows_launch(const quanta_cuda_tensor* n, const Launch& l) {
    const cudaStream_t s = l.stream;
    const quanta_cuda_tensor* rows = n->src[1];
    if (n_rows(rows) == 0) return 0;
    set_rows_kernel<<<(unsigned)n_rows(rows), kThreads, 0, s>>>(
        static_cast<uint8_t*>(n->data), n->type, n->nb[0], n->nb[1], n->nb[2], n->nb[3], n->ne[1],
        static_cast<const float*>(rows->data), rows->ne[0], rows->ne[1], rows->ne[2],
        static_cast<const int32_t*>(n->src[2]->data));
    return check(cudaGetLastError(), "set_rows launch");
}

// ---- attention: out[t][h] = softmax(q[t][h] . k[c] * scale) . v[c] over the cells c token t lists -------------
// cells is [L + 1, tokens]: list[0] = n, then n cell ids. Heads share kv head h / (heads / kv heads).

struct AttentionArgs {
    const float* q;
    int64_t hd, heads, group;
    const uint8_t *k, *v;
    uint32_t k_type, v_type;
    uint64_t k_nb1, k_nb2, v_nb1, v_nb2;
    int64_t cells, hdv;
    const int32_t* lists;
    int64_t stride;
    float scale;
    float* out;
};

__global__ void attention_kernel(AttentionArgs a) {
    extern __shared__ float p[];  // the token's scores, then their exponentials
    const int64_t h = blockIdx.x, t = blockIdx.y, kvh = h / a.group;
    const int32_t* list = a.lists + t * a.stride;
    const int32_t n = list[0];
    float* out = a.out + (t * a.heads + h) * a.hdv;
    if (n < 1 || n >= a.stride) {
        if (threadIdx.x == 0) atomicExch(&g_bad_ids, 1);
        return;
    }
    const float* q = a.q + (t * a.heads + h) * a.hd;
    bool bad = false;
    float top = -INFINITY;
    for (int32_t j = threadIdx.x; j < n; j += kThreads) {
        const int32_t c = list[1 + j];
        if (c < 0 || c >= a.cells) {
            bad = true;
            p[j] = -INFINITY;
            continue;
        }
        const uint8_t* kr = a.k + c * a.k_nb1 + kvh * a.k_nb2;
        float dot = 0;
        for (int64_t e = 0; e < a.hd; ++e) dot += load_float(a.k_type, kr + e * element_bytes(a.k_type)) * q[e];
        p[j] = dot * a.scale;
        top = fmaxf(top, p[j]);
    }
    if (bad) atomicExch(&g_bad_ids, 1);
    top = block_reduce<kThreads, true>(top);
    float sum = 0;
    for (int32_t j = threadIdx.x; j < n; j += kThreads) sum += (p[j] = expf(p[j] - top));
    const float inv = 1.0f / block_reduce<kThreads, false>(sum);  // block_reduce synchronises: every p[j] is written
    for (int64_t e = threadIdx.x; e < a.hdv; e += kThreads) {
        float acc = 0;
        for (int32_t j = 0; j < n; ++j) {
            const int32_t c = list[1 + j];
            if (c < 0 || c >= a.cells) continue;
            acc += p[j] * load_float(a.v_type, a.v + c * a.v_nb1 + kvh * a.v_nb2 + e * element_bytes(a.v_type));
        }
        out[e] = acc * inv;
    }
}

constexpr int64_t kMaxListBytes = 48 << 10;  // the scores of one token's cells, in shared memory

bool attention_supports(const quanta_cuda_tensor* n) {
    const quanta_cuda_tensor *q = n->src[0], *k = n->src[1], *v = n->src[2], *cells = n->src[3];
    const auto kv_ok = [](const quanta_cuda_tensor* t) {
        return (t->type == kF32 || t->type == kF16) && t->nb[0] == element_bytes(t->type);
    };
    return contiguous_f32(n) && contiguous_f32(q) && kv_ok(k) && kv_ok(v) && cells && cells->type == kI32 &&
           contiguous(cells, 4) && cells->ne[0] * 4 <= kMaxListBytes;
}

int attention_launch(const quanta_cuda_tensor* n, const Launch& l) {
    const cudaStream_t s = l.stream;
    const quanta_cuda_tensor *q = n->src[0], *k = n->src[1], *v = n->src[2], *cells = n->src[3];
    if (n_elements(n) == 0) return 0;
    const AttentionArgs a{static_cast<const float*>(q->data), q->ne[0], q->ne[1], q->ne[1] / k->ne[2],
                          static_cast<const uint8_t*>(k->data), static_cast<const uint8_t*>(v->data), k->type,
                          v->type, k->nb[1], k->nb[2], v->nb[1], v->nb[2], k->ne[1], v->ne[0],
                          static_cast<const int32_t*>(cells->data), cells->ne[0], n->f[0],
                          static_cast<float*>(n->data)};
    attention_kernel<<<dim3((unsigned)q->ne[1], (unsigned)q->ne[2]), kThreads, (size_t)cells->ne[0] * 4, s>>>(a);
    return check(cudaGetLastError(), "attention launch");
}

}  // namespace

int take_bad_ids(cudaStream_t s, bool* bad) {
    int flag = 0;
    if (check(cudaMemcpyFromSymbolAsync(&flag, g_bad_ids, sizeof flag, 0, cudaMemcpyDeviceToHost, s), "id check")) return 1;
    if (check(cudaStreamSynchronize(s), "id check")) return 1;
    *bad = flag != 0;
    if (!flag) return 0;
    const int zero = 0;
    return check(cudaMemcpyToSymbolAsync(g_bad_ids, &zero, sizeof zero, 0, cudaMemcpyHostToDevice, s), "id check") ||
           check(cudaStreamSynchronize(s), "id check");
}

Kernel indexed_kernel(Op op) {
    switch (op) {
        case Op::GetRows: return {get_rows_supports, get_rows_launch};
        case Op::SetRows: return {set_rows_supports, set_rows_launch};
        case Op::Attention: return {attention_supports, attention_launch};
        default: return {nullptr, nullptr};
    }
}

}  // namespace quanta_cuda
