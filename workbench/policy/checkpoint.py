"""Checkpoint IO in this project's format, and the checks shared with the upstream reader.

Our format (a directory):
    config.json                ST4VLAConfig + {"format": "st4vla-workbench"}
    model.safetensors          the state dict (upstream key names)
    dataset_statistics.json    upstream schema: {key: {"action": {q01, q99, mask, ...}, ...}}
    tokenizer.json, tokenizer_config.json, ..., preprocessor_config.json
    README.md                  the model card

Upstream InternVLA-M1 run directories are read by workbench/policy/upstream_run.py; both loaders fill
the model through `load_state_strict` and check `dataset_statistics.json` with `read_statistics`.

Invariants: a bad or missing field raises CheckpointError naming the file and the field (`typed`);
a state dict loads only when every key and shape matches the model built from the config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from workbench import fileio
from workbench.policy.configuration import ST4VLAConfig

FORMAT = "st4vla-workbench"
LM_HEAD = "qwen_vl_interface.model.lm_head.weight"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded as asked; the message says what to do."""


# ------------------------------------------------------------------------------------------------
# Strict loading with clear errors
# ------------------------------------------------------------------------------------------------


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model`; missing/unexpected keys or shape mismatches raise CheckpointError."""
    own = model.state_dict()
    tied = getattr(model.qwen_vl_interface.model.config, "tie_word_embeddings", False)
    missing = [k for k in own if k not in state and not (tied and k == LM_HEAD)]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {missing[:5]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {unexpected[:5]})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches (first: {shapes[:5]})")
    if problems:
        raise CheckpointError(
            f"{source} does not match the model built from its config: " + "; ".join(problems) + ". "
            "Check that the config (and base model, for upstream runs) is the one this checkpoint was trained with."
        )
    with torch.no_grad():
        for k, v in state.items():
            if not (tied and k == LM_HEAD):  # tied: the embedding already carries these weights
                own[k].copy_(v.to(own[k].dtype))


# ------------------------------------------------------------------------------------------------
# Our format
# ------------------------------------------------------------------------------------------------


def is_checkpoint_dir(path: Path) -> bool:
    """Laid out as a checkpoint of either format: ours (config.json + model.safetensors) or an upstream
    run dir (config.yaml + checkpoints/). For listing: loading checks the contents and names what is wrong."""
    ours = (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    upstream = (path / "config.yaml").is_file() and (path / "checkpoints").is_dir()
    return ours or upstream


def is_workbench_dir(path: Path) -> bool:
    """Our format, by its config's "format" field (decides which loader reads the folder)."""
    cfg = path / "config.json"
    if not (path.is_dir() and cfg.is_file() and (path / "model.safetensors").is_file()):
        return False
    try:
        return json.loads(cfg.read_text()).get("format") == FORMAT
    except (json.JSONDecodeError, OSError):
        return False


def read_statistics(path: Path) -> dict[str, Any]:
    """dataset_statistics.json in upstream's schema, checked: {key: {"action": {q01, q99, mask?}}}."""
    stats = path / "dataset_statistics.json"
    if not stats.is_file():
        raise CheckpointError(
            f"No dataset_statistics.json in {path}: the policy cannot unnormalise actions without it. "
            "Copy the training run's dataset_statistics.json into this directory."
        )
    data = read_json_object(stats, "the training run's dataset_statistics.json")
    if not data:
        raise CheckpointError(f"{stats} holds no statistics; expected {{key: {{'action': {{...}}}}}}.")
    for key, entry in data.items():
        if not isinstance(entry, dict):
            raise CheckpointError(f"{stats}: field {key} must be an object, got {type(entry).__name__}.")
        action = typed(entry, "action", dict, stats, key)
        lengths = set()
        for name in ("q01", "q99"):
            values = typed(action, name, list, stats, f"{key}.action")
            if not values or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                raise CheckpointError(
                    f"{stats}: field {key}.action.{name} must be a non-empty list of numbers."
                )
            lengths.add(len(values))
        mask = typed(action, "mask", list, stats, f"{key}.action", None)
        if mask is not None:
            if not all(isinstance(v, bool) for v in mask):
                raise CheckpointError(f"{stats}: field {key}.action.mask must be a list of true/false.")
            lengths.add(len(mask))
        if len(lengths) > 1:
            raise CheckpointError(
                f"{stats}: fields {key}.action.q01, q99 (and mask) must have one length, got {sorted(lengths)}."
            )
    return data


def read_workbench_config(path: Path) -> ST4VLAConfig:
    data = json.loads((path / "config.json").read_text())
    data.pop("format", None)
    data.pop("format_version", None)
    return ST4VLAConfig.from_dict(data)


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(
            f"Cannot read {path}: {e}. The file is truncated or corrupt; copy it again from its source."
        ) from e


def save_state(model: nn.Module, path: Path) -> None:
    state = model.state_dict()
    if getattr(model.qwen_vl_interface.model.config, "tie_word_embeddings", False):
        state.pop(LM_HEAD, None)  # shared with the input embedding; safetensors refuses aliases
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(path), metadata={"format": FORMAT})


# ------------------------------------------------------------------------------------------------
# Typed reading of files: every error names the file and the field
# ------------------------------------------------------------------------------------------------


_REQUIRED = object()


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON file that must hold an object; unreadable, non-UTF-8 or non-object content is refused."""
    return fileio.read_json_object(path, CheckpointError, f"restore {what} from its source.")


def typed(data: dict[str, Any], key: str, kind: type, source: Path, where: str, default: Any = _REQUIRED):
    """data[key] checked to be an int / float / str / bool / list / dict; `where` is the dotted path of
    `data` in `source` (for the message). A missing key takes `default`, or is an error without one."""
    field_name = f"{where}.{key}" if where else key
    if key not in data or data[key] is None:
        if default is _REQUIRED:
            raise CheckpointError(
                f"{source}: field {field_name} is missing; it is needed to rebuild the model."
            )
        return default
    value = data[key]
    ok = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        bool: isinstance(value, bool),
        str: isinstance(value, str),
        list: isinstance(value, list),
        dict: isinstance(value, dict),
    }[kind]
    if not ok:
        raise CheckpointError(
            f"{source}: field {field_name} must be {kind.__name__}, got {type(value).__name__} {value!r}."
        )
    return float(value) if kind is float else value


def typed_ints(data: dict[str, Any], key: str, source: Path, where: str, default: Any = _REQUIRED):
    value = typed(data, key, list, source, where, default)
    if value is default:
        return value
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise CheckpointError(f"{source}: field {where}.{key} must be a list of ints, got {value!r}.")
    return tuple(value)
