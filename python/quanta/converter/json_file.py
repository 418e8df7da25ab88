"""Reading the JSON files of a model folder (config.json, tokenizer files, model_index.json): one object each,
with a FormatError naming the file when it is not one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from ..errors import FormatError


def read_json(path: Path) -> Optional[dict]:
    """The JSON object in `path`, or None when there is no such file."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise FormatError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data
