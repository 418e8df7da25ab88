#!/usr/bin/env python3
"""A quanta Stable Diffusion GGUF rewritten as an original-layout (LDM) single-file safetensors checkpoint, for the
peers that want one (stable-diffusion.cpp in bench/sd_bench.py): quanta's converter already writes
stable-diffusion.cpp's names (model.diffusion_model.*, first_stage_model.*, cond_stage_model.transformer.text_model.*),
which are the LDM checkpoint's names, so this only copies each tensor out in numpy (PyTorch) order under its own name.
No metadata is carried over: the LDM format has none, and stable-diffusion.cpp detects SD1/SD2 from names and shapes.

    python bench/sd_to_ldm.py /tmp/sdc/sd15-f16.gguf /tmp/sdc/sd15-ldm-f16.safetensors

F16 and F32 tensors are copied as stored (the same bits as the GGUF); any other type (a q8_0 or q4_k_m file) is
dequantized to f16 (--dtype f32 for f32), so the peer gets the weights quanta ran, not the original ones.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def gguf_to_ldm(src: str, dst: str, dequant_dtype: str = "float16") -> dict:
    """Writes `dst`; returns {"tensors": n, "bytes": size, "types": {ggml type: count}}."""
    from gguf import GGUFReader, GGMLQuantizationType
    from gguf.quants import dequantize
    from safetensors.numpy import save_file

    reader = GGUFReader(src)
    tensors, types = {}, {}
    for t in reader.tensors:
        shape = tuple(int(n) for n in reversed(t.shape))  # ggml's ne is innermost first; numpy's order is the reverse
        kind = GGMLQuantizationType(t.tensor_type)
        types[kind.name] = types.get(kind.name, 0) + 1
        if kind in (GGMLQuantizationType.F16, GGMLQuantizationType.F32):
            a = np.asarray(t.data).reshape(shape)
        else:
            a = dequantize(t.data, kind).reshape(shape).astype(dequant_dtype)
        if t.name in tensors:
            raise ValueError(f"{src}: tensor {t.name} appears twice")
        tensors[t.name] = np.ascontiguousarray(a)
    save_file(tensors, dst, metadata={"format": "pt"})
    return {"tensors": len(tensors), "bytes": sum(a.nbytes for a in tensors.values()), "types": types}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="a quanta Stable Diffusion .gguf")
    p.add_argument("dst", help="the .safetensors to write")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"],
                   help="what quantized tensors are dequantized to (default float16)")
    args = p.parse_args()
    t0 = time.perf_counter()
    info = gguf_to_ldm(args.src, args.dst, args.dtype)
    types = ", ".join(f"{n} {k}" for k, n in sorted(info["types"].items()))
    print(f"wrote {args.dst}: {info['tensors']} tensors, {info['bytes'] / 1e6:.0f} MB (from {types}) "
          f"in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
