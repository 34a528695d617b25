"""Periodic training checkpoints that survive an interruption.

A training state directory holds:
    model.safetensors      the trainable module's weights
    optimizer.safetensors  every tensor of the optimiser state, flattened as "<param index>.<key>"
    state.json             step, optimiser param-group settings, scheduler state, RNG states, config
Nothing is pickled: tensors go to safetensors and the rest to JSON, so a state can be read back
without trusting it.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file


@dataclass
class TrainState:
    step: int
    extra: dict[str, Any]  # whatever the stage wants back (running losses, its config)


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, float]] = {}
    for idx, entry in sd["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_train_state(
    directory: str | Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the state atomically: into a temporary directory, then renamed over the old one."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    # Tied weights share storage; safetensors refuses shared tensors, so clone each one.
    weights = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(weights, str(tmp / "model.safetensors"))
    opt_tensors, opt_meta = _optimizer_tensors(opt)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    meta = {
        "step": step,
        "optimizer": opt_meta,
        "scheduler": {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"},
        "rng": {
            "python": _jsonable(random.getstate()),
            "numpy": np.random.get_state()[1].tolist(),
            "numpy_pos": int(np.random.get_state()[2]),
        },
        "extra": extra or {},
    }
    (tmp / "state.json").write_text(json.dumps(meta))
    save_file({"torch_rng": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    if directory.exists():
        old = directory.with_name(directory.name + ".old")
        os.replace(directory, old)
        os.replace(tmp, directory)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        os.replace(tmp, directory)
    return directory


def load_model_weights(directory: str | Path, model: torch.nn.Module) -> None:
    """The model weights of a training state (the tied lm_head is saved only as the embedding)."""
    state = load_file(str(Path(directory) / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if "lm_head" not in m]:
        raise ValueError(
            f"training state does not match the model: missing {missing}, unexpected {unexpected}"
        )


def load_train_state(
    directory: str | Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> TrainState:
    """Restore model, optimiser, scheduler and RNG from `save_train_state`'s directory."""
    directory = Path(directory)
    if not (directory / "state.json").exists():
        raise FileNotFoundError(f"{directory} holds no training state (state.json): start without --resume")
    meta = json.loads((directory / "state.json").read_text())
    load_model_weights(directory, model)
    tensors = load_file(str(directory / "optimizer.safetensors"))
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for idx, scalars in meta["optimizer"]["scalars"].items():
        state.setdefault(int(idx), {}).update(scalars)
    opt.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    scheduler.load_state_dict({**scheduler.state_dict(), **meta["scheduler"]})
    random.setstate(_tupled(meta["rng"]["python"]))
    np_state = np.random.get_state()
    np.random.set_state(
        (np_state[0], np.array(meta["rng"]["numpy"], dtype=np.uint32), meta["rng"]["numpy_pos"], 0, 0.0)
    )
    torch.set_rng_state(load_file(str(directory / "rng.safetensors"))["torch_rng"])
    return TrainState(step=int(meta["step"]), extra=meta["extra"])


def _jsonable(x: Any) -> Any:
    return [_jsonable(v) for v in x] if isinstance(x, tuple | list) else x


def _tupled(x: Any) -> Any:
    return tuple(_tupled(v) for v in x) if isinstance(x, list) else x


def resume_or_start(
    directory: str | Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    what: str,
    resume: bool = True,
) -> tuple[int, list[dict]]:
    """(step, log) of the run whose state `directory` holds, restored into model, opt and scheduler; (0, [])
    when there is none or `resume` is off. `what` names the run in the message ("stage 1", ...)."""
    if not (resume and (Path(directory) / "state.json").exists()):
        return 0, []
    state = load_train_state(directory, model, opt, scheduler)
    print(f"resumed {what} at step {state.step}")
    return state.step, state.extra.get("log", [])
