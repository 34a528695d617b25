"""Action normalisation with upstream's dataset statistics (BOUNDS_Q99, as OpenVLA/CogACT/InternVLA-M1).

dataset_statistics.json is keyed by embodiment ("oxe_bridge", "franka", ...):
    {key: {"action": {"mean", "std", "max", "min", "q01", "q99", "mask"}, "state": {...},
           "num_transitions": int, "num_trajectories": int}}

Training side (upstream's RLDS pipeline, NormalizationType.BOUNDS_Q99):
    a_norm = clip(2 * (a - q01) / (q99 - q01 + 1e-8) - 1, -1, 1)   where mask, else a unchanged.
The gripper (dim 6) is unmasked, so it is left in its dataset convention: 0 = closed, 1 = open.
Inference side (upstream's unnormalize_actions):
    clip to [-1, 1]; a[..., 6] = 1 if a[..., 6] >= 0.5 else 0; a = 0.5 (a + 1)(q99 - q01) + q01 where mask.
So normalize -> unnormalize is the identity on masked dims inside [q01, q99] (up to the 1e-8), and on a
gripper already in {0, 1}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

STATISTICS_FILE = "dataset_statistics.json"
GRIPPER_DIM = 6
_EPS = 1e-8  # upstream's guard against q99 == q01


class UnnormKeyError(KeyError):
    """The statistics key asked for is not there, or none was asked and several are."""

    def __str__(self) -> str:  # KeyError would print the message quoted as a repr
        return str(self.args[0])


@dataclass
class DatasetStatistics:
    """The parsed contents of an upstream dataset_statistics.json."""

    data: dict[str, dict[str, Any]]
    source: str = "<dict>"  # where it came from, for error messages

    @classmethod
    def load(cls, path: str | Path) -> DatasetStatistics:
        """Read a dataset_statistics.json, or the one inside a run/checkpoint directory."""
        path = Path(path)
        if path.is_dir():
            path = path / STATISTICS_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"dataset statistics not found: {path} (expected an upstream {STATISTICS_FILE})"
            )
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from e
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> DatasetStatistics:
        if not isinstance(data, dict) or not data:
            raise ValueError(f"{source}: expected a non-empty {{key: {{'action': ...}}}} mapping")
        if "action" in data and isinstance(data["action"], dict):
            raise ValueError(
                f"{source}: this is a single statistics block; wrap it as {{'<embodiment key>': block}}"
            )
        for key, block in data.items():
            if not isinstance(block, dict) or not isinstance(block.get("action"), dict):
                raise ValueError(f"{source}: key {key!r} has no 'action' statistics dict")
        return cls(data=data, source=source)

    def keys(self) -> list[str]:
        return list(self.data)

    def resolve_key(self, key: str | None = None) -> str:
        """The key to use: `key` itself, or the only key when none was asked (as upstream does)."""
        if key is None:
            if len(self.data) == 1:
                return next(iter(self.data))
            raise UnnormKeyError(
                f"{self.source} holds statistics for several keys {self.keys()}; pass one of them as the key"
            )
        if key not in self.data:
            raise UnnormKeyError(
                f"no statistics for key {key!r} in {self.source}; available keys: {self.keys()}"
            )
        return key

    def action(self, key: str | None = None) -> dict[str, np.ndarray]:
        """The action statistics of `key` as float64 arrays; `mask` is bool (all True when absent)."""
        key = self.resolve_key(key)
        return _block_arrays(self.data[key]["action"], f"{self.source}[{key!r}]['action']")

    def state(self, key: str | None = None) -> dict[str, np.ndarray] | None:
        """The state (proprioception) statistics of `key`, or None when the file has none."""
        key = self.resolve_key(key)
        block = self.data[key].get("state")
        return None if block is None else _block_arrays(block, f"{self.source}[{key!r}]['state']")

    def save(self, path: str | Path) -> Path:
        """Write the statistics as JSON (a directory gets dataset_statistics.json inside it)."""
        path = Path(path)
        if path.is_dir():
            path = path / STATISTICS_FILE
        path.write_text(json.dumps(_jsonable(self.data), indent=2))
        return path


def _block_arrays(block: dict[str, Any], where: str) -> dict[str, np.ndarray]:
    missing = [k for k in ("q01", "q99") if k not in block]
    if missing:
        raise ValueError(f"{where} lacks {missing}: BOUNDS_Q99 normalisation needs q01 and q99")
    out = {k: np.asarray(v, dtype=np.float64) for k, v in block.items() if k != "mask" and _is_vector(v)}
    q01, q99 = out["q01"], out["q99"]
    if q01.ndim != 1 or q01.shape != q99.shape or not np.isfinite(q01).all() or not np.isfinite(q99).all():
        raise ValueError(
            f"{where}: q01 and q99 must be finite vectors of one length, got {q01.shape}/{q99.shape}"
        )
    mask = np.asarray(block.get("mask", np.ones_like(q01, dtype=bool)), dtype=bool)
    if mask.shape != q01.shape:
        raise ValueError(f"{where}: mask has shape {mask.shape}, q01 has {q01.shape}")
    out["mask"] = mask
    return out


def _is_vector(v: Any) -> bool:
    return isinstance(v, list | tuple | np.ndarray)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, np.ndarray | list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.bool_ | bool):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    return x


class ActionNormalizer:
    """Maps actions between the dataset's units and the model's [-1, 1] (see the module docstring)."""

    def __init__(self, stats: DatasetStatistics | dict | str | Path, key: str | None = None):
        if isinstance(stats, str | Path):
            stats = DatasetStatistics.load(stats)
        elif isinstance(stats, dict):
            stats = DatasetStatistics.from_dict(stats)
        self.key = stats.resolve_key(key)
        block = stats.action(self.key)
        self.q01, self.q99, self.mask = block["q01"], block["q99"], block["mask"]  # each [D]

    @property
    def dim(self) -> int:
        return int(self.q01.shape[0])

    def _check(self, x: np.ndarray, what: str) -> np.ndarray:
        x = np.array(x, dtype=np.float64)  # a copy: callers' arrays are never modified
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(
                f"{what} must have last dimension {self.dim} (key {self.key!r}), got shape {x.shape}"
            )
        if not np.isfinite(x).all():
            raise ValueError(f"{what} contain NaN or inf; refusing to turn them into robot commands")
        return x

    def unnormalize(self, normalized: np.ndarray) -> np.ndarray:
        """Model output [..., D] in [-1, 1] -> actions [..., D] in dataset units (upstream's rule)."""
        a = np.clip(self._check(normalized, "normalized actions"), -1.0, 1.0)
        if self.dim > GRIPPER_DIM:
            a[..., GRIPPER_DIM] = (a[..., GRIPPER_DIM] >= 0.5).astype(np.float64)  # 1 = open
        return np.where(self.mask, 0.5 * (a + 1.0) * (self.q99 - self.q01) + self.q01, a)

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        """Actions [..., D] in dataset units -> model targets [..., D] (upstream's training rule).

        Unmasked dims (the gripper) pass through unchanged, as upstream trains on them raw (0/1).
        """
        x = self._check(actions, "actions")
        return np.where(self.mask, bounds_q99(x, self.q01, self.q99), x)


class StateNormalizer:
    """The robot state [..., S] -> [-1, 1] by the same BOUNDS_Q99 rule as the actions, every dim.

    Only for checkpoints whose action expert reads the state (ActionConfig.state_dim > 0).
    """

    def __init__(self, stats: DatasetStatistics | dict, key: str | None = None):
        if isinstance(stats, dict):
            stats = DatasetStatistics.from_dict(stats)
        self.key = stats.resolve_key(key)
        block = stats.state(self.key)
        if block is None:
            raise ValueError(f"statistics {self.key!r} have no 'state' block, which this model needs")
        self.q01, self.q99 = block["q01"], block["q99"]  # each [S]

    @property
    def dim(self) -> int:
        return int(self.q01.shape[0])

    def normalize(self, state: np.ndarray) -> np.ndarray:
        x = np.array(state, dtype=np.float64)
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(
                f"the robot state must have {self.dim} values (key {self.key!r}), got shape {x.shape}"
            )
        if not np.isfinite(x).all():
            raise ValueError("the robot state contains NaN or inf")
        return bounds_q99(x, self.q01, self.q99)


def bounds_q99(x: np.ndarray, q01: np.ndarray, q99: np.ndarray) -> np.ndarray:
    """Upstream's training-side rule: [q01, q99] -> [-1, 1], clipped outside."""
    return np.clip(2.0 * (x - q01) / (q99 - q01 + _EPS) - 1.0, -1.0, 1.0)


def default_mask(dim: int) -> np.ndarray:
    """Upstream's OXE action mask: every dim normalised except the gripper (dim 6)."""
    mask = np.ones(dim, dtype=bool)
    if dim > GRIPPER_DIM:
        mask[GRIPPER_DIM] = False
    return mask


def _summary(x: np.ndarray) -> dict[str, list[float]]:
    return {
        "mean": x.mean(axis=0).tolist(),
        "std": x.std(axis=0).tolist(),
        "max": x.max(axis=0).tolist(),
        "min": x.min(axis=0).tolist(),
        "q01": np.quantile(x, 0.01, axis=0).tolist(),
        "q99": np.quantile(x, 0.99, axis=0).tolist(),
    }


def _as_matrix(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{what} must be a non-empty [N, D] array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or inf; clean the dataset before computing statistics")
    return x


def compute_statistics(
    actions: np.ndarray,
    states: np.ndarray | None = None,
    *,
    num_trajectories: int = 1,
    mask: np.ndarray | None = None,
) -> dict[str, Any]:
    """One key's statistics block in upstream's schema from all transitions' actions [N, D].

    `mask` defaults to upstream's (gripper unmasked); `states` [N, S] adds a "state" block.
    Save several keys with `DatasetStatistics({key: block, ...}).save(path)`.
    """
    actions = _as_matrix(actions, "actions")
    mask = default_mask(actions.shape[1]) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != (actions.shape[1],):
        raise ValueError(f"mask must have shape ({actions.shape[1]},), got {mask.shape}")
    block: dict[str, Any] = {"action": {**_summary(actions), "mask": mask.tolist()}}
    if states is not None:
        block["state"] = _summary(_as_matrix(states, "states"))
    block["num_transitions"] = int(actions.shape[0])
    block["num_trajectories"] = int(num_trajectories)
    return block
