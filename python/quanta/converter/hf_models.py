"""What a Hugging Face checkpoint of each supported architecture becomes in GGUF: llama.cpp's metadata keys,
tensor names, and the few places where the stored numbers differ from transformers' own.

- llama (and mistral, which llama.cpp runs as llama) rotates adjacent pairs in rope, transformers rotates
  halves: within each head, the Q and K rows (i, i + d/2) are interleaved into adjacent pairs.
- gemma3's RMSNorm multiplies by 1 + w; GGUF stores 1 + w.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .json_file import read_json
from ..errors import FormatError, ModelError, UnsupportedError


@dataclass(frozen=True)
class ArchSpec:
    gguf_arch: str
    permute_qk: bool  # llama's interleaved rope pairs
    norm_plus_one: bool  # gemma's (1 + w) norms
    post_attention_norm: str  # where HF's post_attention_layernorm goes
    layer_tensors: tuple  # HF names within a layer that must be present


_ATTN = ("input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
         "self_attn.v_proj.weight", "self_attn.o_proj.weight")
_MLP = ("mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight", "post_attention_layernorm.weight")
_LLAMA = ArchSpec("llama", True, False, "ffn_norm", _ATTN + _MLP)
_QWEN2 = ArchSpec("qwen2", False, False, "ffn_norm",
                  _ATTN + _MLP + ("self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"))
_GEMMA3 = ArchSpec("gemma3", False, True, "post_attention_norm",
                   _ATTN + _MLP + ("self_attn.q_norm.weight", "self_attn.k_norm.weight",
                                   "pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight"))

HF_ARCHITECTURES = {
    "LlamaForCausalLM": _LLAMA,
    "MistralForCausalLM": _LLAMA,
    "Qwen2ForCausalLM": _QWEN2,
    "Gemma3ForCausalLM": _GEMMA3,
    "Gemma3ForConditionalGeneration": _GEMMA3,  # the text model; the vision tower is left out
}

# HF name within a layer -> GGUF name within a block (post_attention_layernorm depends on the arch).
_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.bias": "attn_output.bias",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
# Multimodal checkpoints keep the text model under a prefix; their other towers are not converted.
_TEXT_PREFIXES = (("model.language_model.", "model."), ("language_model.model.", "model."),
                  ("language_model.lm_head.", "lm_head."))
_SKIPPED = re.compile(r"(^|\.)(vision_tower|vision_model|multi_modal_projector)\.|\.rotary_emb\.inv_freq$")


def read_config(folder: Path) -> dict:
    config = read_json(folder / "config.json")
    if config is None:
        raise FormatError(f"{folder}: no config.json (not a Hugging Face model folder)")
    return config


def arch_spec(config: dict) -> ArchSpec:
    names = config.get("architectures") or []
    for name in names:
        if name in HF_ARCHITECTURES:
            return HF_ARCHITECTURES[name]
    raise UnsupportedError(f"unsupported architecture {', '.join(names) or '(none named in config.json)'}; "
                           f"quanta converts {', '.join(HF_ARCHITECTURES)}")


def text_config(config: dict) -> dict:
    """The language model's settings (multimodal configs nest them under text_config)."""
    return config.get("text_config") or config


def _rope(cfg: dict, layer_kind: Optional[str] = None) -> dict:
    """Rope settings as {rope_theta, rope_type, ...}: transformers 5's rope_parameters (per layer kind for
    gemma3), or the older rope_theta + rope_scaling keys."""
    params = cfg.get("rope_parameters")
    if isinstance(params, dict) and layer_kind in params:
        params = params[layer_kind]
    if not isinstance(params, dict):
        params = dict(cfg.get("rope_scaling") or {})
        theta = cfg.get("rope_local_base_freq" if layer_kind == "sliding_attention" else "rope_theta", 10000.0)
        params.setdefault("rope_theta", theta)
    params = dict(params)
    params["rope_type"] = params.get("rope_type") or params.get("type") or "default"
    return params


def _need(cfg: dict, key: str):
    if key not in cfg or cfg[key] is None:
        raise ModelError(f"config.json lacks '{key}'")
    return cfg[key]


@dataclass
class LlmShape:
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_vocab: int


def llm_shape(cfg: dict) -> LlmShape:
    n_embd, n_head = int(_need(cfg, "hidden_size")), int(_need(cfg, "num_attention_heads"))
    head_dim = cfg.get("head_dim") or n_embd // n_head
    return LlmShape(int(_need(cfg, "num_hidden_layers")), n_embd, int(_need(cfg, "intermediate_size")), n_head,
                    int(cfg.get("num_key_value_heads") or n_head), int(head_dim), int(_need(cfg, "vocab_size")))


def model_metadata(spec: ArchSpec, cfg: dict, shape: LlmShape) -> list:
    """The architecture's GGUF keys as (key, value, type)."""
    a = spec.gguf_arch
    rope = _rope(cfg, "full_attention")
    md = [
        (f"{a}.context_length", int(cfg.get("max_position_embeddings") or 2048), "u32"),
        (f"{a}.embedding_length", shape.n_embd, "u32"),
        (f"{a}.block_count", shape.n_layer, "u32"),
        (f"{a}.feed_forward_length", shape.n_ff, "u32"),
        (f"{a}.attention.head_count", shape.n_head, "u32"),
        (f"{a}.attention.head_count_kv", shape.n_head_kv, "u32"),
        (f"{a}.attention.key_length", shape.head_dim, "u32"),
        (f"{a}.attention.value_length", shape.head_dim, "u32"),
        (f"{a}.attention.layer_norm_rms_epsilon", float(cfg.get("rms_norm_eps", 1e-6)), "f32"),
        (f"{a}.rope.freq_base", float(rope["rope_theta"]), "f32"),
    ]
    if a == "llama":
        md += [(f"{a}.rope.dimension_count", shape.head_dim, "u32"), (f"{a}.vocab_size", shape.n_vocab, "u32")]
    if rope["rope_type"] == "linear":
        md += [(f"{a}.rope.scaling.type", "linear", "string"), (f"{a}.rope.scaling.factor", float(rope["factor"]), "f32")]
    elif rope["rope_type"] not in ("default", "llama3"):  # llama3 is carried by the rope_freqs tensor
        raise UnsupportedError(f"rope scaling '{rope['rope_type']}' is not supported (linear and llama3 are)")
    if spec is _GEMMA3:
        md += _gemma3_metadata(cfg, shape)
    return md


def _gemma3_metadata(cfg: dict, shape: LlmShape) -> list:
    for key in ("final_logit_softcapping", "attn_logit_softcapping"):
        if cfg.get(key):
            raise UnsupportedError(f"gemma3 with {key} is not supported")
    md = [("gemma3.attention.sliding_window", int(_need(cfg, "sliding_window")), "u32"),
          ("gemma3.rope.freq_base_swa", float(_rope(cfg, "sliding_attention")["rope_theta"]), "f32")]
    kinds = cfg.get("layer_types")
    if kinds:
        period = next((p for p in range(1, len(kinds) + 1)
                       if all((k == "full_attention") == ((i + 1) % p == 0) for i, k in enumerate(kinds))), None)
        if period is None:
            raise UnsupportedError("gemma3 layer_types must make every n-th layer global; got " + ", ".join(kinds))
        md.append(("gemma3.attention.sliding_window_pattern", period, "u32"))
    # Written only where it differs from 1/sqrt(head_dim), which is what llama.cpp assumes.
    scalar = float(cfg.get("query_pre_attn_scalar") or shape.head_dim)
    if scalar != shape.head_dim:
        md.append(("gemma3.attention.scale", scalar ** -0.5, "f32"))
    return md


def llama3_rope_factors(cfg: dict, head_dim: int) -> Optional[np.ndarray]:
    """Per-frequency divisors (llama.cpp's rope_freqs tensor) for Llama 3's rope scaling, else None."""
    rope = _rope(cfg)
    if rope["rope_type"] != "llama3":
        return None
    factor, low, high = float(rope["factor"]), float(rope["low_freq_factor"]), float(rope["high_freq_factor"])
    old_ctx = float(rope["original_max_position_embeddings"])
    freqs = float(rope["rope_theta"]) ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    wavelen = 2 * math.pi / freqs
    smooth = (old_ctx / wavelen - low) / (high - low)
    divisor = np.where(wavelen < old_ctx / high, 1.0,
                       np.where(wavelen > old_ctx / low, factor, 1.0 / ((1 - smooth) / factor + smooth)))
    return divisor.astype(np.float32)


def text_model_name(hf_name: str) -> Optional[str]:
    """The name in text-model form (multimodal prefixes removed); None for tensors that are not converted."""
    for prefix, replacement in _TEXT_PREFIXES:
        if hf_name.startswith(prefix):
            hf_name = replacement + hf_name[len(prefix):]
    return None if _SKIPPED.search(hf_name) else hf_name


def required_names(spec: ArchSpec, shape: "LlmShape", tied: bool) -> list:
    """The HF tensors (text-model form) a checkpoint must have."""
    names = ["model.embed_tokens.weight", "model.norm.weight"] + ([] if tied else ["lm_head.weight"])
    return names + [f"model.layers.{i}.{t}" for i in range(shape.n_layer) for t in spec.layer_tensors]


def gguf_name(spec: ArchSpec, hf_name: str) -> str:
    """llama.cpp's name for HF tensor `hf_name` (text-model form); raises for tensors it does not know."""
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if hf_name in fixed:
        return fixed[hf_name]
    m = _LAYER.match(hf_name)
    if m:
        layer, rest = m.groups()
        name = spec.post_attention_norm + ".weight" if rest == "post_attention_layernorm.weight" \
            else _LAYER_NAMES.get(rest)
        if name:
            return f"blk.{layer}.{name}"
    raise ModelError(f"tensor '{hf_name}' has no place in a {spec.gguf_arch} model (unknown to the converter)")


def expected_shapes(spec: ArchSpec, shape: LlmShape) -> dict:
    """{GGUF name: numpy shape} of every tensor the model may have."""
    s, q_rows, kv_rows = shape, shape.n_head * shape.head_dim, shape.n_head_kv * shape.head_dim
    out = {"token_embd.weight": (s.n_vocab, s.n_embd), "output_norm.weight": (s.n_embd,),
           "output.weight": (s.n_vocab, s.n_embd)}
    per_layer = {
        "attn_norm.weight": (s.n_embd,), "attn_q.weight": (q_rows, s.n_embd), "attn_k.weight": (kv_rows, s.n_embd),
        "attn_v.weight": (kv_rows, s.n_embd), "attn_output.weight": (s.n_embd, q_rows),
        "ffn_gate.weight": (s.n_ff, s.n_embd), "ffn_up.weight": (s.n_ff, s.n_embd),
        "ffn_down.weight": (s.n_embd, s.n_ff), f"{spec.post_attention_norm}.weight": (s.n_embd,),
        "attn_q.bias": (q_rows,), "attn_k.bias": (kv_rows,), "attn_v.bias": (kv_rows,), "attn_output.bias": (s.n_embd,),
    }
    if spec is _GEMMA3:
        per_layer.update({"attn_q_norm.weight": (s.head_dim,), "attn_k_norm.weight": (s.head_dim,),
                          "ffn_norm.weight": (s.n_embd,), "post_ffw_norm.weight": (s.n_embd,)})
    for i in range(s.n_layer):
        out.update({f"blk.{i}.{k}": v for k, v in per_layer.items()})
    return out


def transform(spec: ArchSpec, name: str, shape: LlmShape) -> tuple:
    """(function applied to a chunk of rows, row alignment the function needs) for GGUF tensor `name`."""
    if spec.norm_plus_one and name.endswith("norm.weight"):
        return (lambda rows: rows + np.float32(1.0)), 1
    if spec.permute_qk and re.search(r"\.attn_[qk]\.weight$", name):
        d = shape.head_dim
        return (lambda rows: _interleave_rope_pairs(rows, d)), d
    if spec.permute_qk and re.search(r"\.attn_[qk]\.bias$", name):  # one row: permute its elements
        d = shape.head_dim
        return (lambda row: _interleave_rope_pairs(row.reshape(-1, 1), d).reshape(row.shape)), 1
    return None, 1


def _interleave_rope_pairs(rows: np.ndarray, head_dim: int) -> np.ndarray:
    """Within each head, rows (i, i + d/2) become rows (2i, 2i + 1)."""
    n, width = rows.shape
    return np.ascontiguousarray(rows.reshape(n // head_dim, 2, head_dim // 2, width).swapaxes(1, 2)
                                .reshape(n, width))

