"""Hugging Face checkpoints to GGUF, and GGUF requantization."""
