"""What each side declares before anything runs: a checkpoint's needs (CheckpointNeeds, from its config
and statistics) and a source's offer (SourceGives, from the source without resetting it).

A None field means that side does not say, and nothing is checked on it (workbench.compat.diagnose).
`state_dim` of a checkpoint counts the joint values its action expert reads: the TCP position and the
answer's points are apart (`reads_tcp`, `answer_points`). A policy without a config (a remote policy, a
test double) declares nothing: `checkpoint_needs` returns None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.controller import GRIPPER_ABSOLUTE, GRIPPER_RELATIVE, base_rotation
from workbench.policy.configuration import TCP_POSITION

# Datasets the workbench knows by their statistics key: the robot, its qpos names, rate and gripper.
KNOWN_DATASETS: dict[str, dict[str, Any]] = {
    "tabletop_panda": {
        "robot": "the built-in Panda",
        "state_names": (
            *(f"panda_joint{i}" for i in range(1, 8)),
            "panda_finger_joint1",
            "panda_finger_joint2",
        ),
        "control_hz": 5.0,
        "gripper": GRIPPER_ABSOLUTE,
        "views": 1,
    },
    "bridge_orig": {"robot": "WidowX (Bridge)", "control_hz": 5.0, "gripper": GRIPPER_ABSOLUTE},
    "bridge_dataset": {"robot": "WidowX (Bridge)", "control_hz": 5.0, "gripper": GRIPPER_ABSOLUTE},
    "fractal20220817_data": {"robot": "Google Robot (RT-1)", "control_hz": 3.0, "gripper": GRIPPER_RELATIVE},
}


@dataclass(frozen=True)
class CheckpointNeeds:
    """What a checkpoint reads. None: the checkpoint does not say."""

    name: str
    state_dim: int  # joint values its action expert reads (0: none); the TCP and answer points excluded
    state_names: tuple[str, ...] | None = None
    reads_tcp: bool = False
    answer_points: bool = False
    image_size: int | None = None  # its square frame
    views: int | None = None
    rotation: str = "axis_angle"
    gripper: str | None = None  # the convention of its training data
    control_hz: float | None = None
    dataset: str | None = None  # the statistics key
    robot: str | None = None
    neutral_state: np.ndarray | None = field(default=None, repr=False)  # [state_dim], normalises to 0


@dataclass(frozen=True)
class SourceGives:
    """What a source gives, known before its first reset. None: the source does not say."""

    name: str
    state_dim: int | None = None
    state_names: tuple[str, ...] | None = None
    cameras: tuple[str, ...] | None = None
    image_size: tuple[int, int] | None = None  # (width, height) of the main camera
    gripper: str | None = None
    control_hz: float | None = None
    tcp: bool = True
    base_turn_deg: float | None = None  # the base's turn about z against the world


def checkpoint_needs(policy: Any, rotation: str = "axis_angle") -> CheckpointNeeds | None:
    """What an ST4VLA policy reads, from its config and statistics; None for a policy without a config
    (a remote policy, a test double): it declares nothing, so nothing is checked."""
    config = getattr(policy, "config", None)
    if config is None or not hasattr(config, "action"):
        return None
    key = getattr(policy, "unnorm_key", None)
    block = (getattr(policy, "statistics", None) or {}).get(key, {})
    known = KNOWN_DATASETS.get(str(key), {})
    notes = dict(getattr(config, "notes", {}) or {})
    reads_tcp = bool(getattr(config, "state_tcp", False))
    robot_dim = int(getattr(config, "robot_state_dim", config.action.state_dim))
    state_dim = max(robot_dim - (TCP_POSITION if reads_tcp else 0), 0)
    state = block.get("state") or {}
    names = state.get("names") or notes.get("state_names") or known.get("state_names")
    names = tuple(names) if names is not None and len(names) == state_dim else None
    neutral = None
    if state_dim and "q01" in state and "q99" in state:
        q01, q99 = (np.asarray(state[k], dtype=np.float64).reshape(-1)[:state_dim] for k in ("q01", "q99"))
        neutral = (q01 + q99) / 2.0
    return CheckpointNeeds(
        name=str(getattr(policy, "name", "checkpoint")),
        state_dim=state_dim,
        state_names=names,
        reads_tcp=reads_tcp,
        answer_points=bool(getattr(config, "answer_points", False)),
        image_size=getattr(config, "image_size", None),
        views=notes.get("views", known.get("views")),
        rotation=rotation,
        gripper=notes.get("gripper", known.get("gripper")),
        control_hz=notes.get("control_hz", known.get("control_hz")),
        dataset=None if key is None else str(key),
        robot=notes.get("robot", known.get("robot")),
        neutral_state=neutral,
    )


def source_gives(source: Any) -> SourceGives:
    """What a runner Source (SimSource over an env, EpisodeSource) gives, without resetting it."""
    env = getattr(source, "env", None)
    name = str(getattr(source, "name", type(source).__name__))
    if env is None:  # a recording: its first frame says it all
        frames = getattr(source, "observations", None) or []
        first = frames[0] if frames else None
        if first is None:
            return SourceGives(name, gripper=getattr(source, "gripper_convention", None))
        image = first.images[first.main_camera]
        return SourceGives(
            name,
            state_dim=0 if first.state is None else int(np.asarray(first.state).size),  # 0: recorded none
            cameras=tuple(first.images),
            image_size=(int(image.shape[1]), int(image.shape[0])),
            gripper=getattr(source, "gripper_convention", None),
            tcp=first.tcp_pose is not None,
            base_turn_deg=_turn_deg(first.base_pose),
        )
    names = getattr(env, "state_names", None)
    names = tuple(names) if names else None
    dim = getattr(env, "state_dim", None)
    return SourceGives(
        name,
        state_dim=len(names) if names else (None if dim is None else int(dim)),
        state_names=names,
        cameras=_env_cameras(env),
        image_size=_env_image_size(env),
        gripper=getattr(env, "gripper_convention", None),
        control_hz=getattr(env, "control_hz", None),
        tcp=True,
        base_turn_deg=_env_base_turn(env),
    )


def _env_cameras(env: Any) -> tuple[str, ...] | None:
    cam = getattr(env, "main_camera", None)  # the SimplerEnv adapter
    if cam:
        return (str(cam),)
    rig = getattr(env, "rig", None)  # the built-in simulator
    return (str(rig.cfg.name),) if rig is not None else None


def _env_image_size(env: Any) -> tuple[int, int] | None:
    size = getattr(env, "image_size", None)
    if size:
        return (int(size[0]), int(size[1]))
    cam = getattr(getattr(env, "config", None), "camera", None)
    if cam is not None and hasattr(cam, "width"):
        return (int(cam.width), int(cam.height))
    return None


def _env_base_turn(env: Any) -> float | None:
    pose = getattr(env, "base_pose", None)
    if pose is not None and not callable(pose):
        return _turn_deg(pose)
    cfg = getattr(env, "config", None)
    return float(getattr(cfg, "base_yaw_deg", 0.0)) if cfg is not None else None


def _turn_deg(base_pose: np.ndarray | None) -> float | None:
    if base_pose is None:
        return None
    r = base_rotation(base_pose)
    return float(np.degrees(np.arctan2(r[1, 0], r[0, 0])))
