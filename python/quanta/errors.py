"""Exceptions raised by quanta.

The C++ core raises typed errors; the bindings map them onto these classes
(plus ValueError for bad arguments, OSError for I/O, MemoryError).
"""


class QuantaError(Exception):
    """Base class of quanta's own errors."""


class FormatError(QuantaError, ValueError):
    """A file's bytes are malformed: truncated, corrupt, or not GGUF."""


class ModelError(QuantaError, ValueError):
    """A well-formed file does not describe a model quanta can run."""


class UnsupportedError(QuantaError, NotImplementedError):
    """Valid input that this build or machine cannot handle (a type, CPU level or device)."""


class ContextOverflowError(QuantaError, ValueError):
    """More tokens than the context (n_ctx) holds."""
