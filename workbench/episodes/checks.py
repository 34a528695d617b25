"""Reading a LeRobot dataset's metadata and columns, each problem a DatasetFormatError naming the file
and the field (for workbench.episodes.lerobot, the reader).

`check_features` holds the reader's contract: a dataset declares an action, a state and at least one
camera (dtype "image" or "video"); every feature has a dtype. Vector columns come back [N, D] float32.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.episodes.layout import ACTION_KEY, CAMERA_DTYPES, STATE_KEY, DatasetFormatError
from workbench.fileio import read_json_object


def read_info(path: Path) -> dict:
    return read_json_object(path, DatasetFormatError, "the dataset's info.json is corrupt")


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_fps(path: Path, info: dict) -> float:
    if "fps" not in info:
        raise DatasetFormatError(f"{path} has no 'fps' field (frames per second of the recording)")
    fps = info["fps"]
    if not is_number(fps) or not math.isfinite(fps) or fps <= 0:
        raise DatasetFormatError(f"{path}: 'fps' must be a positive finite number, got {fps!r}")
    return float(fps)


def check_features(path: Path, info: dict) -> dict[str, dict]:
    features = info.get("features")
    if not isinstance(features, dict) or not features:
        raise DatasetFormatError(f"{path} has no 'features' object (the columns of the dataset)")
    for key, spec in features.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("dtype"), str):
            raise DatasetFormatError(f'{path}: feature {key!r} has no \'dtype\' (e.g. "float32", "image")')
    if ACTION_KEY not in features:
        raise DatasetFormatError(
            f"{path}: 'features' declares no {ACTION_KEY!r}; a replay needs the recorded actions"
        )
    if not any(f["dtype"] in CAMERA_DTYPES for f in features.values()):
        raise DatasetFormatError(
            f"{path}: 'features' declares no camera (a feature of dtype 'image' or 'video'); "
            "a replay needs images"
        )
    if STATE_KEY not in features:
        raise DatasetFormatError(
            f"{path}: 'features' declares no {STATE_KEY!r}; the workbench shows and feeds the robot state"
        )
    return features


def check_int(path: Path, info: dict, key: str, default: int) -> int:
    value = info.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise DatasetFormatError(f"{path}: {key!r} must be a positive integer, got {value!r}")
    return value


def check_template(path: Path, info: dict, key: str) -> str:
    value = info.get(key)
    if not isinstance(value, str) or not value:
        raise DatasetFormatError(f"{path} has no {key!r} template (where the files of the dataset are)")
    return value


def read_jsonl(path: Path) -> list[dict]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetFormatError(f"{path} is not UTF-8 text ({e})") from e
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetFormatError(
                f"{path} line {n} is not valid JSON ({e}); the dataset is corrupt"
            ) from e
        if not isinstance(row, dict):
            raise DatasetFormatError(f"{path} line {n} must be a JSON object")
        rows.append(row)
    return rows


def read_parquet(path: Path, **kw: Any) -> pa.Table:
    try:
        return pq.read_table(path, **kw)
    except (pa.ArrowException, OSError) as e:
        raise DatasetFormatError(f"cannot read {path}: {e}; the file is corrupt or not parquet") from e


def episode_rows(rows: list[dict], path: Path, where: str) -> dict[int, dict]:
    """Episodes metadata rows by episode_index; each must have an integer episode_index and length."""
    out = {}
    for n, row in enumerate(rows, 1):
        for key in ("episode_index", "length"):
            value = row.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise DatasetFormatError(
                    f"{path} {where} {n}: {key!r} must be a non-negative integer, got {value!r}"
                )
        out[row["episode_index"]] = row
    return out


def vectors(table: pa.Table, key: str, path: Path) -> np.ndarray:
    """A list column -> [N, D] float32 array."""
    col = table.column(key).combine_chunks()
    if pa.types.is_fixed_size_list(col.type) and col.null_count == 0:
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return flat.astype(np.float32).reshape(len(col), col.type.list_size)
    if not pa.types.is_list(col.type) and not pa.types.is_fixed_size_list(col.type):
        return col.to_numpy(zero_copy_only=False).astype(np.float32)[:, None]
    rows = col.to_pylist()
    if len({len(r) for r in rows}) > 1:
        raise DatasetFormatError(f"{path}: column {key!r} has rows of different lengths")
    return np.asarray(rows, dtype=np.float32)
