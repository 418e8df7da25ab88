"""quanta.convert(): a Hugging Face model folder (config.json, safetensors, tokenizer) to one GGUF file."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import FormatError, ModelError
from . import hf_models as hf
from .hf_tokenizer import tokenizer_metadata
from .ldm_convert import convert_ldm, is_single_file
from .mixtures import check_file_type, file_type_metadata, tensor_types
from ..threads import threads
from .progress import ProgressArg
from .safetensors_source import SafetensorsSource
from .sd_convert import convert_sd, is_diffusers_folder
from .stream import TensorJob, write_gguf


def convert(src: "str | os.PathLike[str]", out: "str | os.PathLike[str]", type: str = "q4_k_m",
            progress: ProgressArg = True, n_threads: int = 0, prediction_type: "str | None" = None) -> None:
    """Converts the Hugging Face model folder `src` into the GGUF file `out`, quantized to `type`
    (f32, f16, bf16, q8_0, q5_0, q5_1, q4_0, q4_1, q6_k, q5_k_m or q4_k_m). A diffusers Stable Diffusion
    pipeline folder (one with model_index.json), or an original-layout single file (.safetensors, as A1111 and
    stable-diffusion.cpp read them), becomes one Stable Diffusion GGUF file (sd_convert.py, ldm_convert.py; types
    f32, f16, q8_0, q4_k_m); prediction_type ("epsilon" or "v_prediction") is for those, which a single file
    cannot show.

    Tensors stream one chunk at a time from the memory-mapped safetensors, so memory stays near one chunk
    of one tensor; `out` appears only once complete. progress: True draws a bar on stderr, a function gets
    (tensors_done, tensors, bytes_done, bytes). n_threads: quantization threads (0: all cores;
    more than the usable cores is capped with a warning).
    """
    folder = Path(src)
    if is_single_file(folder):
        return convert_ldm(folder, out, type=type, progress=progress, n_threads=n_threads,
                           prediction_type=prediction_type)
    if not folder.is_dir():
        raise FormatError(f"{folder}: not a folder (convert takes a Hugging Face model folder, a diffusers "
                          "pipeline folder or a Stable Diffusion .safetensors file)")
    if is_diffusers_folder(folder):
        return convert_sd(folder, out, type=type, progress=progress, n_threads=n_threads,
                          prediction_type=prediction_type)
    if prediction_type is not None:
        raise ValueError("prediction_type is for Stable Diffusion checkpoints")
    check_file_type(type)
    n_threads = threads(n_threads)
    config = hf.read_config(folder)
    spec = hf.arch_spec(config)
    cfg = hf.text_config(config)
    shape = hf.llm_shape(cfg)
    source = SafetensorsSource(folder)
    try:
        names = {}  # text-model name -> checkpoint name
        for name in source.tensors:
            text_name = hf.text_model_name(name)
            if text_name is not None:
                names[text_name] = name
        tied = "lm_head.weight" not in names or bool(cfg.get("tie_word_embeddings", config.get("tie_word_embeddings")))
        missing = [n for n in hf.required_names(spec, shape, tied) if n not in names]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise ModelError(f"{folder}: the checkpoint lacks tensor '{missing[0]}'{more}")
        jobs = _rope_factor_job(cfg, shape) + _tensor_jobs(source, spec, shape, names, tied)
        for job, stored in zip(jobs, tensor_types(type, [(j.name, j.shape) for j in jobs])):
            job.type = stored
        metadata = _file_metadata(folder, type, spec.gguf_arch, jobs) + hf.model_metadata(spec, cfg, shape) \
            + tokenizer_metadata(folder, shape.n_vocab)
        write_gguf(out, metadata, jobs, progress, n_threads)
    finally:
        source.close()


def _tensor_jobs(source: SafetensorsSource, spec, shape, names: dict, tied: bool) -> list:
    """One job per tensor, in file order, with its stored type still to choose."""
    shapes = hf.expected_shapes(spec, shape)
    jobs = []
    for text_name, name in names.items():
        gguf_name = hf.gguf_name(spec, text_name)
        if gguf_name == "output.weight" and tied:
            continue  # the same matrix as token_embd
        t = source.tensors[name]
        if gguf_name not in shapes:
            raise ModelError(f"tensor '{name}' does not belong in a {shape.n_layer}-layer {spec.gguf_arch} model")
        if tuple(t.shape) != shapes[gguf_name]:
            raise ModelError(f"tensor '{name}' has shape {list(t.shape)}; config.json implies "
                             f"{list(shapes[gguf_name])}")
        fn, align = hf.transform(spec, gguf_name, shape)
        jobs.append(TensorJob(
            gguf_name, t.shape, None,
            _reader(source, name, fn), align, release=lambda name=name: source.release(name)))
    return sorted(jobs, key=lambda j: _file_order(j.name))


def _reader(source: SafetensorsSource, name: str, fn):
    if fn is None:
        return lambda a, b: source.rows(name, a, b)
    return lambda a, b: fn(source.rows(name, a, b))


def _file_order(gguf_name: str) -> tuple:
    """token_embd first, then the blocks in order, then the output norm and matrix."""
    m = re.match(r"blk\.(\d+)\.(.*)", gguf_name)
    if m:
        return (1, int(m.group(1)), m.group(2))
    return (0 if gguf_name.startswith(("rope_freqs", "token_embd")) else 2, 0, gguf_name)


def _rope_factor_job(cfg: dict, shape) -> list:
    factors = hf.llama3_rope_factors(cfg, shape.head_dim)
    if factors is None:
        return []
    return [TensorJob("rope_freqs.weight", factors.shape, "f32", lambda a, b: factors.reshape(1, -1))]


def _file_metadata(folder: Path, file_type: str, arch: str, jobs: list) -> list:
    return [("general.architecture", arch, "string"), ("general.name", folder.resolve().name, "string")] \
        + file_type_metadata(file_type, [j.type for j in jobs])
