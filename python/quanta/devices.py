"""Where a model runs: the device names quanta.LLM, quanta.Diffusion, --device
and quanta serve take, and the one-line warning when "auto" leaves a GPU unused.

"auto" (the default) runs on the first GPU when one is usable and the model
runs there, else on the CPU; the engine decides (backends::load_on) and says
why it chose the CPU in the model's device_note.
"""

from __future__ import annotations

import warnings

from . import _core

DEVICES = ("auto", "cpu", "cuda")


def check_device(device: str) -> None:
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")


def warn_unused_gpu(note: str) -> None:
    """A RuntimeWarning when "auto" chose the CPU although the machine has a GPU; silent on machines without one."""
    if note and _core.cuda_status()["device_count"] > 0:
        warnings.warn(f"running on the CPU: {note}", RuntimeWarning, stacklevel=3)
