"""Which ggml type each tensor gets for a requested file type, following llama-quantize's rules so that
our q4_k_m files hold the same mixture of types as llama.cpp's.

- 1-D tensors (norms, biases, rope factors) stay f32.
- f32, f16 and bf16 files store every matrix in that type.
- In quantized files the output matrix (or the token embedding when the output is tied to it) gets q6_k,
  except in q8_0 files, which keep q8_0.
- q4_k_m and q5_k_m give attn_v and ffn_down q6_k on the "more bits" layers: the first and last eighth of
  the model and every third layer between them. As in llama-quantize, "layer" means the tensor's place among
  the attn_v (or ffn_down) tensors in file order: files whose blocks are sorted as text (blk.0, blk.1,
  blk.10, ...) get the extra bits on other layers than files in numeric order, and the real Qwen file shows it.
- A row length that is not a multiple of the block size falls back: q4_k -> q5_0, q5_k -> q5_1,
  q6_k -> q8_0, and anything that still does not fit to f16.
"""

from __future__ import annotations

# file type -> (base type, llama.cpp's general.file_type id)
FILE_TYPES = {
    "f32": ("f32", 0), "f16": ("f16", 1), "bf16": ("bf16", 32),
    "q8_0": ("q8_0", 7), "q5_0": ("q5_0", 8), "q5_1": ("q5_1", 9), "q4_0": ("q4_0", 2), "q4_1": ("q4_1", 3),
    "q6_k": ("q6_k", 18), "q5_k_m": ("q5_k", 17), "q4_k_m": ("q4_k", 15),
}
_PLAIN = ("f32", "f16", "bf16")
_BLOCK = {"q4_0": 32, "q4_1": 32, "q5_0": 32, "q5_1": 32, "q8_0": 32, "q4_k": 256, "q5_k": 256, "q6_k": 256}
_FALLBACK = {"q4_k": "q5_0", "q5_k": "q5_1", "q6_k": "q8_0"}


def check_file_type(file_type: str) -> str:
    if file_type not in FILE_TYPES:
        raise ValueError(f"unknown type '{file_type}'; choose one of {', '.join(FILE_TYPES)}")
    return file_type


def file_type_metadata(file_type: str, stored_types: list) -> list:
    """general.file_type, and general.quantization_version when any tensor is stored quantized."""
    md = [("general.file_type", FILE_TYPES[file_type][1], "u32")]
    if any(t not in _PLAIN for t in stored_types):
        md.append(("general.quantization_version", 2, "u32"))
    return md


def more_bits(layer: int, n_layer: int) -> bool:
    """llama.cpp's use_more_bits(): integer eighths, then every third layer."""
    return layer < n_layer // 8 or layer >= 7 * n_layer // 8 or (layer - n_layer // 8) % 3 == 2


def tensor_types(file_type: str, tensors: list) -> list:
    """The stored type of each (name, numpy shape) in `tensors`, given in file order, in a `file_type` file."""
    has_output = any(name == "output.weight" for name, _ in tensors)
    kinds = (".attn_v.weight", ".ffn_down.weight")
    counted = {kind: sum(name.endswith(kind) for name, _ in tensors) for kind in kinds}
    seen = dict.fromkeys(kinds, 0)
    types = []
    for name, shape in tensors:
        kind = next((k for k in kinds if name.endswith(k)), None)
        more = kind is not None and more_bits(seen[kind], counted[kind])
        if kind:
            seen[kind] += 1
        types.append(_tensor_type(file_type, name, shape, has_output, more))
    return types


def _tensor_type(file_type: str, name: str, shape: tuple, has_output: bool, more_bits_layer: bool) -> str:
    base = FILE_TYPES[file_type][0]
    if len(shape) < 2 or base == "f32":
        return "f32"
    if base in _PLAIN:
        return base
    wanted = base
    if name == "output.weight" or (name == "token_embd.weight" and not has_output):
        wanted = "q8_0" if base == "q8_0" else "q6_k"
    elif file_type in ("q4_k_m", "q5_k_m") and more_bits_layer:
        wanted = "q6_k"
    return fit_row(wanted, shape[-1])


def fit_row(qtype: str, row_length: int) -> str:
    """`qtype`, or the fallback whose block divides `row_length`."""
    while qtype in _BLOCK and row_length % _BLOCK[qtype] != 0:
        qtype = _FALLBACK.get(qtype, "f16")
    return qtype
