// The tensors of a transformer, bound by their GGUF names (llama.cpp's, which
// are the contract with the converter) and checked against the config's
// shapes when the model loads, so a graph build can never meet a bad weight.
// Weights stay in the memory-mapped file.
#pragma once

#include <vector>

#include "gguf/reader.h"
#include "models/gguf_binding.h"
#include "models/llm_config.h"

namespace quanta::models {

struct LayerWeights {
    Weight attn_norm, wq, wk, wv, wo;
    Weight bq, bk, bv;                  // qwen2
    Weight q_norm, k_norm;              // gemma3
    Weight post_attention_norm;         // gemma3
    Weight ffn_norm, ffn_gate, ffn_up, ffn_down;
    Weight post_ffw_norm;               // gemma3
};

struct LlmWeights {
    Weight token_embd, output_norm;
    Weight output;      // token_embd when the embeddings are tied
    Weight rope_freqs;  // llama 3 frequency factors, optional
    std::vector<LayerWeights> layers;

    // Throws a Model error naming the first missing, misshapen or
    // unsupported-type tensor. Sets config.n_vocab from the embeddings.
    static LlmWeights bind(const gguf::File& file, LlmConfig& config);
    // The weights activations are multiplied by (the backend may pack those: Backend::pack_weight).
    std::vector<Weight> matrices() const;
};

}  // namespace quanta::models
