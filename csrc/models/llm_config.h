// Hyper-parameters of a decoder-only transformer, read from GGUF metadata.
// The architectures quanta runs share one graph builder (llm_graph.h); what
// differs between them is this small declarative description.
#pragma once

#include <string>

#include "core/tensor.h"
#include "gguf/reader.h"

namespace quanta::models {

enum class Activation { Silu, GeluTanh };

// How one family departs from the plain llama block.
struct ArchTraits {
    const char* name;
    RopeMode rope_mode;     // Normal for llama (the converter permuted Q/K rows), Neox for HF-layout families
    Activation activation;  // of the gated feed-forward
    bool qk_norm;           // RMS norm of each query and key head before rope (gemma3)
    bool sandwich_norm;     // post_attention_norm and post_ffw_norm on each branch's output (gemma3)
    bool embed_scale;       // token embeddings multiplied by sqrt(n_embd) (gemma)
    bool sliding_window;    // some layers attend to a local window with their own rope base (gemma3)
};

// The traits of `arch`, or a Model error naming it and the supported ones.
const ArchTraits& arch_traits(const std::string& arch);

struct LlmConfig {
    std::string arch;
    const ArchTraits* traits = nullptr;

    int n_vocab = 0;
    int n_ctx_train = 0;
    int n_embd = 0;
    int n_layer = 0;
    int n_head = 0;
    int n_head_kv = 0;
    int head_dim_k = 0;  // key/query head size
    int head_dim_v = 0;
    int n_ff = 0;
    int n_rot = 0;  // leading dims of each head that rope rotates
    float norm_eps = 1e-5f;
    float attn_scale = 1.0f;  // applied to q.k before the softmax

    float rope_base = 10000.0f;
    float rope_freq_scale = 1.0f;  // 1 / linear scaling factor

    // Sliding-window layers (window > 0): every layer except each
    // swa_pattern-th attends to the last `sliding_window` positions, with
    // rope base rope_base_swa and no rope scaling (Gemma 3 scales only its
    // global layers, as transformers and llama.cpp do).
    int sliding_window = 0;
    int swa_pattern = 0;
    float rope_base_swa = 10000.0f;

    bool layer_is_swa(int il) const { return sliding_window > 0 && (il + 1) % swa_pattern != 0; }
    float layer_rope_base(int il) const { return layer_is_swa(il) ? rope_base_swa : rope_base; }
    float layer_rope_scale(int il) const { return layer_is_swa(il) ? 1.0f : rope_freq_scale; }

    // Throws a Model error naming the key that is missing or out of range.
    static LlmConfig from_gguf(const gguf::File& file);
};

}  // namespace quanta::models
