"""The quanta GGUF file quanta.Diffusion loads for a path: the file itself when it is one, else its conversion in
the cache. An original-layout single file (.safetensors, ldm_convert.py) or a GGUF file from stable-diffusion.cpp
(sdcpp_gguf.py) is converted once, at its own types (an f16 file stays f16, f32 stays f32, quantized blocks are
copied unchanged), into cache_dir()/sd/, and loaded from there memory-mapped like any GGUF file.

Why a converted copy and not a second loader: the C++ side reads one format, and keeps it mapped; these files
need renamed and split tensors (OpenCLIP's stacked q/k/v), f32 norm scales (stable-diffusion.cpp stores them in
f16 or q8_0), and metadata and a vocabulary they lack, all of which a rewrite does once, in a few seconds per GB.
The copy costs its size on disk. Its name holds a key of the source's absolute path, size and modification time
and of this converter's version, so a changed source or a new quanta converts again; the folder can be deleted
at any time.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from ..errors import FormatError
from ..fetch import cache_dir
from ..gguf import GGUF
from .ldm_convert import convert_ldm, file_float_type, is_single_file, refuse_pickle
from .sdcpp_gguf import convert_sdcpp, is_sdcpp_file

# Bumped when a conversion would write a different file for the same source.
CONVERTER_VERSION = 1


def cached_conversion(path: Path) -> Path:
    st = path.stat()
    key = hashlib.sha256(f"{CONVERTER_VERSION}\0{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()
    return cache_dir() / "sd" / f"{path.stem}-{key[:16]}.gguf"


def diffusion_gguf(src: "str | os.PathLike[str]") -> Path:
    """The GGUF file to load for `src`, converting it into the cache first when needed."""
    path = Path(src)
    if is_single_file(path):
        refuse_pickle(path)
        if not path.is_file():
            raise FormatError(f"{path}: no such file")
        def convert(out):
            convert_ldm(path, out, type=file_float_type(path), progress=sys.stderr.isatty())
    elif path.is_file() and is_sdcpp_file(GGUF(path)):
        def convert(out):
            convert_sdcpp(path, out, progress=sys.stderr.isatty())
    else:
        return path
    out = cached_conversion(path)
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        convert(out)
    return out
