"""From an action chunk to what the environment receives, and to the path the chunk implies.

    chunk.actions [T, 7] (unnormalised) ──► AdaptiveEnsembler (CogACT) ──► [7]
        ──► rotation convention (euler -> axis-angle for upstream checkpoints) ──► gripper convention ──► env

The rollout integrates the chunk's translation deltas from the current tcp position. The env applies
them in the robot base frame, which SimplerEnv rotates against the world (both robots' bases are a
180-degree turn about z), so every delta is rotated by the base's rotation (`base_rotation(obs.base_pose)`)
before it is added to the world-frame tcp; then the path is projected into the main camera so a person
sees where the chunk would take the gripper.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from workbench.records import ActionChunk, Camera
from workbench.spatial import Trace

GRIPPER_ABSOLUTE = "absolute_open_positive"  # +1 open / -1 close (WidowX, our Panda)
GRIPPER_RELATIVE = "relative_close_positive"  # +1 close / -1 open, relative (Google Robot)


def quat_wxyz_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) [4] -> rotation matrix [3, 3] (normalised first)."""
    q = np.asarray(q, dtype=np.float64).reshape(4)
    n = float(np.linalg.norm(q))
    if not np.isfinite(n) or n < 1e-9:
        raise ValueError(f"quaternion must be finite and non-zero, got {q.tolist()}")
    w, x, y, z = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def base_rotation(base_pose: np.ndarray | None) -> np.ndarray | None:
    """[7] base pose (xyz + wxyz) -> [3, 3] base-to-world rotation; None when the source gives no base."""
    if base_pose is None:
        return None
    return quat_wxyz_to_matrix(np.asarray(base_pose, dtype=np.float64).reshape(-1)[3:7])


def rollout_path(
    tcp_pose: np.ndarray, actions: np.ndarray, base_rotation: np.ndarray | None = None
) -> np.ndarray:
    """[7] tcp pose (world xyz + quat) and [T, 7] actions -> [T + 1, 3] world positions from the tcp.

    base_rotation [3, 3] turns the actions' base-frame deltas into the world (None: the identity)."""
    actions = np.asarray(actions, dtype=np.float64)
    if actions.ndim != 2 or actions.shape[1] < 3:
        raise ValueError(f"actions must be [T, 7], got shape {actions.shape}")
    deltas = actions[:, :3]  # [T, 3] in the base frame
    if base_rotation is not None:
        deltas = deltas @ np.asarray(base_rotation, dtype=np.float64).T  # base -> world
    start = np.asarray(tcp_pose, dtype=np.float64).reshape(-1)[:3]
    return np.vstack([start, start + np.cumsum(deltas, axis=0)])  # [T + 1, 3]


def project_path(camera: Camera, path_3d: np.ndarray, label: str = "rollout") -> Trace:
    """[N, 3] world path -> Trace of pixels; points behind the camera are dropped."""
    px = camera.project(path_3d)  # [N, 2], NaN behind the camera
    keep = np.all(np.isfinite(px), axis=1)
    return Trace(tuple((float(x), float(y)) for x, y in px[keep]), label)


def euler_to_axis_angle(rpy: np.ndarray) -> np.ndarray:
    """Static XYZ roll-pitch-yaw (sxyz, as transforms3d's euler2axangle) -> axis * angle."""
    r, p, y = (float(v) for v in rpy)
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    m = np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )  # R = Rz(y) Ry(p) Rx(r)
    angle = float(np.arccos(np.clip((np.trace(m) - 1.0) / 2.0, -1.0, 1.0)))
    if angle < 1e-9:
        return np.zeros(3)
    if np.pi - angle < 1e-6:  # near pi the antisymmetric part vanishes; use the diagonal
        axis = np.sqrt(np.maximum((np.diag(m) + 1.0) / 2.0, 0.0))
        axis *= np.sign(np.array([m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]]) + 1e-12)
        return axis / np.linalg.norm(axis) * angle
    axis = np.array([m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]]) / (2.0 * np.sin(angle))
    return axis * angle


@dataclass
class ControllerConfig:
    ensemble_horizon: int = 7
    ensemble_alpha: float = 0.1
    rotation: str = (
        "axis_angle"  # what the model's rotation dims are: "axis_angle" (our sim) or "euler" (upstream)
    )
    gripper: str = GRIPPER_ABSOLUTE  # the env's convention (env.gripper_convention)
    sticky_repeat: int = 10  # Google Robot: how long a relative gripper command is held


@dataclass
class Controller:
    """Per-policy state between steps: the ensembler's history and the relative gripper's memory.

    `state()`/`set_state()` copy all of it, so the runner can branch from any step exactly.
    """

    config: ControllerConfig = field(default_factory=ControllerConfig)

    def __post_init__(self) -> None:
        from workbench.policy.ensemble import AdaptiveEnsembler

        c = self.config
        if c.rotation not in ("axis_angle", "euler"):
            raise ValueError(f"rotation must be 'axis_angle' or 'euler', got {c.rotation!r}")
        if c.gripper not in (GRIPPER_ABSOLUTE, GRIPPER_RELATIVE):
            raise ValueError(
                f"gripper must be {GRIPPER_ABSOLUTE!r} or {GRIPPER_RELATIVE!r}, got {c.gripper!r}"
            )
        self.ensembler = AdaptiveEnsembler(c.ensemble_horizon, c.ensemble_alpha)
        self._gripper = {"previous": None, "sticky": False, "sticky_action": 0.0, "count": 0}

    def reset(self) -> None:
        self.ensembler.reset()
        self._gripper = {"previous": None, "sticky": False, "sticky_action": 0.0, "count": 0}

    def state(self) -> tuple:
        return copy.deepcopy((self.ensembler, self._gripper))

    def set_state(self, state: tuple) -> None:
        self.ensembler, self._gripper = copy.deepcopy(state)

    def env_action(self, chunk: ActionChunk) -> np.ndarray:
        """The [7] action the env receives for this chunk (updates the ensembler's history)."""
        a = np.asarray(self.ensembler.ensemble_action(np.asarray(chunk.actions)), dtype=np.float64).reshape(
            -1
        )
        if a.shape != (7,):
            raise ValueError(f"ensembled action must be [7], got {a.shape}")
        out = a.copy()
        if self.config.rotation == "euler":
            out[3:6] = euler_to_axis_angle(a[3:6])
        out[6] = self._gripper_command(a[6])
        return out

    def _gripper_command(self, open_prob: float) -> float:
        if self.config.gripper == GRIPPER_ABSOLUTE:
            return 1.0 if open_prob > 0.5 else -1.0
        # Relative, as the upstream Google Robot client: a change in openness becomes a held command.
        g = self._gripper
        relative = 0.0 if g["previous"] is None else float(g["previous"] - open_prob)
        g["previous"] = float(open_prob)
        if abs(relative) > 0.5 and not g["sticky"]:
            g["sticky"], g["sticky_action"] = True, relative
        if g["sticky"]:
            g["count"] += 1
            relative = g["sticky_action"]
            if g["count"] >= self.config.sticky_repeat:
                g["sticky"], g["count"], g["sticky_action"] = False, 0, 0.0
        return relative
