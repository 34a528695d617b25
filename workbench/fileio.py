"""Small file helpers shared by the readers and writers of checkpoints, sessions and datasets."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, obj: Any, indent: int = 2) -> None:
    """Write JSON so that a crash leaves the old file or the new one, never half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=indent)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json_object(path: Path, error: type[Exception], fix: str) -> dict[str, Any]:
    """A JSON file that must hold an object. Non-UTF-8, invalid or non-object content raises `error`
    naming the file, with `fix` (what the user can do about it) at the end of the message."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path} is not UTF-8 text ({e}); {fix}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{path} is not valid JSON ({e}); {fix}") from e
    if not isinstance(data, dict):
        raise error(f"{path} must hold a JSON object, it holds a {type(data).__name__}; {fix}")
    return data
