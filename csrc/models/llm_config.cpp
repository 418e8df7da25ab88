#include "models/llm_config.h"

#include <cmath>

#include "base/error.h"
#include "models/gguf_binding.h"

namespace quanta::models {
namespace {

//                                  name      rope mode        activation             qk_norm sandwich emb_scale swa
constexpr ArchTraits kArchs[] = {
    {"llama",  RopeMode::Normal, Activation::Silu,     false, false, false, false},
    {"qwen2",  RopeMode::Neox,   Activation::Silu,     false, false, false, false},
    {"gemma3", RopeMode::Neox,   Activation::GeluTanh, true,  true,  true,  true},
};

}  // namespace

const ArchTraits& arch_traits(const std::string& arch) {
    std::string known;
    for (const ArchTraits& t : kArchs) {
        if (arch == t.name) return t;
        known += known.empty() ? t.name : std::string(", ") + t.name;
    }
    fail(ErrorKind::Model, "unsupported architecture '" + arch + "' (quanta runs " + known + ")");
}

LlmConfig LlmConfig::from_gguf(const gguf::File& file) {
    LlmConfig c;
    c.arch = file.get_string("general.architecture");
    c.traits = &arch_traits(c.arch);
    const MetadataReader md(file, c.arch + ".");

    c.n_embd = (int)md.integer("embedding_length", 0, true);
    c.n_layer = (int)md.integer("block_count", 0, true, 1, 4096);
    c.n_ff = (int)md.integer("feed_forward_length", 0, true);
    c.n_head = (int)md.integer("attention.head_count", 0, true, 1, 4096);
    c.n_head_kv = (int)md.integer("attention.head_count_kv", c.n_head, false, 1, c.n_head);
    if (c.n_head % c.n_head_kv != 0)
        fail(ErrorKind::Model, file.label() + ": head_count " + std::to_string(c.n_head) +
                                   " is not a multiple of head_count_kv " + std::to_string(c.n_head_kv));
    const int64_t default_head = c.n_embd % c.n_head == 0 ? c.n_embd / c.n_head : 0;
    c.head_dim_k = (int)md.integer("attention.key_length", default_head, default_head == 0, 2, 1 << 16);
    c.head_dim_v = (int)md.integer("attention.value_length", c.head_dim_k, false, 1, 1 << 16);
    c.n_rot = (int)md.integer("rope.dimension_count", c.head_dim_k, false, 2, c.head_dim_k);
    if (c.n_rot % 2 != 0) fail(ErrorKind::Model, file.label() + ": rope.dimension_count must be even");
    c.n_ctx_train = (int)md.integer("context_length", 2048, false, 1, 1 << 30);
    c.norm_eps = md.real("attention.layer_norm_rms_epsilon", 1e-5f);
    c.rope_base = md.real("rope.freq_base", 10000.0f);

    const std::string scaling = md.text("rope.scaling.type", "none");
    const float factor = md.real("rope.scaling.factor", 1.0f);
    if (scaling == "linear") c.rope_freq_scale = 1.0f / factor;
    else if (scaling != "none")
        fail(ErrorKind::Unsupported, file.label() + ": rope scaling '" + scaling + "' is not supported (linear is)");

    // An explicit attention.scale wins (it carries gemma3's query_pre_attn_scalar
    // where a converter wrote it); otherwise 1/sqrt(head size), as the models were trained.
    c.attn_scale = md.real("attention.scale", 1.0f / std::sqrt((float)c.head_dim_k));

    if (c.traits->sliding_window) {
        c.sliding_window = (int)md.integer("attention.sliding_window", 0, false, 0, 1 << 30);
        // Gemma 3 makes every 6th layer global and gives the local ones rope base
        // 10000; llama.cpp writes neither into the file, so these are the defaults.
        c.swa_pattern = (int)md.integer("attention.sliding_window_pattern", 6, false, 1, 1 << 16);
        c.rope_base_swa = md.real("rope.freq_base_swa", 10000.0f);
    }
    return c;
}

}  // namespace quanta::models
