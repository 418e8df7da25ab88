"""A GGUF file that stable-diffusion.cpp wrote (`sd -M convert`, its convert()) as a quanta Stable Diffusion GGUF
file. What such a file holds (stable-diffusion.cpp 0.4.7's convert, run on SD1 and SD2 single files):

- tensors only: no key/value metadata, so no config and no vocabulary;
- the LDM names for the UNet and VAE and for SD1's text encoder (cond_stage_model.transformer.text_model.*);
  SD2's OpenCLIP tower under those names too, except attention's q/k/v, kept stacked as
  `self_attn.in_proj.weight`/`.bias` (rows q, k, v), plus `text_projection`; the whole tower, since it runs SD2
  with clip skip 2 (the penultimate layer);
- what else the source had, such as `alphas_cumprod`;
- its own types: norm scales (1-D) in f16 in an f16 file and quantized in a q8_0 file, convolutions in the
  source's float type.

The rewrite copies every tensor's bytes as they are, except: 1-D tensors become f32 (quanta adds and scales in
f32), stacked q/k/v are split into q_proj/k_proj/v_proj by rows (a row is whole blocks in any type), SD2's last
layer and the tensors outside the models are left out, and the metadata and vocabulary are added, from the same
facts as an original-layout file (ldm_convert.py): SD2 when the text encoder is OpenCLIP's (stacked q/k/v) or
1024 wide, as stable-diffusion.cpp decides.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import ModelError
from ..gguf import GGUF
from .clip_vocab import tokenizer_metadata
from .ldm_convert import UNET_NAME, VAE_NAME, require_parts, sd_facts
from .progress import ProgressArg
from .sd_convert import CLIP, UNET, VAE, clip_name, file_metadata, in_file_order, refuse_unknown
from .stream import TensorJob, write_gguf

_STACKED = re.compile(re.escape(CLIP) + r"encoder\.layers\.(\d+)\.self_attn\.in_proj\.(weight|bias)$")
_LAYER = re.compile(re.escape(CLIP) + r"encoder\.layers\.(\d+)\.")
# Quantized base type -> the file type that names it.
_FILE_TYPE = {"q4_k": "q4_k_m", "q5_k": "q5_k_m"}


def is_sdcpp_file(f: GGUF) -> bool:
    """A GGUF file without general.architecture whose tensors are an LDM UNet's."""
    return "general.architecture" not in f.metadata and any(t.name.startswith(UNET) for t in f.tensors)


def _f32_job(f: GGUF, name: str, gguf_name: str, cut=slice(None)) -> TensorJob:
    values = f.tensor(name).reshape(1, -1)[:, cut]
    return TensorJob(gguf_name, (values.shape[1],), "f32", lambda a, b: values)


def _raw_job(f: GGUF, t, gguf_name: str, rows: slice = slice(None)) -> TensorJob:
    stored = f.tensor_bytes(t.name)[rows]
    shape = (stored.shape[0],) + tuple(t.shape[1:]) if rows != slice(None) else tuple(t.shape)
    return TensorJob(gguf_name, shape, t.type, None, raw=lambda a, b: stored[a:b])


def _jobs(f: GGUF, path: Path) -> tuple:
    """(version, jobs) for the tensors quanta keeps."""
    names = {t.name: t for t in f.tensors}
    embd = names.get(CLIP + "embeddings.token_embedding.weight")
    stacked = any(_STACKED.match(n) for n in names)
    version = "sd2" if stacked or (embd is not None and embd.shape[-1] == 1024) else "sd1"
    layers = [int(m.group(1)) for m in map(_LAYER.match, names) if m]
    skipped = max(layers) if version == "sd2" and layers else -1  # the tower's last layer, which SD2 does not run
    jobs, unknown = [], {"UNet": [], "VAE": [], "CLIP text encoder": []}
    for name, t in names.items():
        if name.startswith(UNET) and not UNET_NAME.match(name[len(UNET):]):
            unknown["UNet"].append(name)
        elif name.startswith(VAE) and not VAE_NAME.match(name[len(VAE):]):
            unknown["VAE"].append(name)
        elif name.startswith(CLIP):
            layer = _LAYER.match(name)
            if name == CLIP + "text_projection" or (layer and int(layer.group(1)) == skipped):
                continue
            m = _STACKED.match(name)
            if m:
                jobs += _split(f, t, f"{CLIP}encoder.layers.{m.group(1)}.self_attn.", m.group(2), path)
            elif clip_name(name[len(CLIP):]) is None:
                unknown["CLIP text encoder"].append(name)
            else:
                jobs.append(_job(f, t, name))
        elif name.startswith((UNET, VAE)):
            jobs.append(_job(f, t, name))
    for part, bad in unknown.items():
        refuse_unknown(bad, path, part)
    return version, jobs


def _job(f: GGUF, t, name: str) -> TensorJob:
    return _f32_job(f, t.name, name) if len(t.shape) == 1 else _raw_job(f, t, name)


def _split(f: GGUF, t, prefix: str, kind: str, path: Path) -> list:
    n = t.shape[0] // 3
    if t.shape[0] % 3 or (len(t.shape) == 2 and t.shape[0] != 3 * t.shape[1]):
        raise ModelError(f"{path}: tensor '{t.name}' has shape {list(t.shape)}; a stacked q/k/v projection has "
                         "3 x width rows")
    jobs = []
    for i, q in enumerate("qkv"):
        name = f"{prefix}{q}_proj.{kind}"
        rows = slice(i * n, (i + 1) * n)
        jobs.append(_f32_job(f, t.name, name, rows) if len(t.shape) == 1 else _raw_job(f, t, name, rows))
    return jobs


def _file_type(jobs: list) -> str:
    """The file type that names the bytes: the quantized type most weight bytes have, else f16 or f32."""
    sizes = {}
    for j in jobs:
        sizes[j.type] = sizes.get(j.type, 0) + j.nbytes
    quantized = {t: n for t, n in sizes.items() if t not in ("f32", "f16", "bf16")}
    pool = quantized or sizes
    top = max(pool, key=pool.get)
    return _FILE_TYPE.get(top, top) if top != "bf16" else "bf16"


def convert_sdcpp(src: "str | os.PathLike[str]", out: "str | os.PathLike[str]", progress: ProgressArg = True,
                  prediction_type: "str | None" = None) -> None:
    """Rewrites stable-diffusion.cpp's GGUF file `src` as the quanta GGUF file `out` (see the module's notes)."""
    path = Path(src)
    f = GGUF(path)
    if not is_sdcpp_file(f):
        raise ModelError(f"{path}: not a Stable Diffusion GGUF file from stable-diffusion.cpp")
    version, jobs = _jobs(f, path)
    try:
        jobs = in_file_order(jobs)
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from None
    by_name = {j.name: j for j in jobs}
    require_parts(by_name, path)
    facts = sd_facts(version, by_name, path, prediction_type)
    metadata = file_metadata(path.stem, _file_type(jobs), [j.type for j in jobs], facts, tokenizer_metadata(version))
    write_gguf(out, metadata, jobs, progress, 1, label="importing")
