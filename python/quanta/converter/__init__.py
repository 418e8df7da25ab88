"""Hugging Face checkpoints to GGUF (convert), and GGUF to another file type (requantize)."""

from .hf_convert import convert
from .mixtures import FILE_TYPES
from .requantize import requantize

__all__ = ["convert", "requantize", "FILE_TYPES"]
