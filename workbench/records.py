"""The records that flow through the workbench (see DESIGN.md, "Data that flows").

One `StepRecord` type is produced by the runner for every source (built-in sim, SimplerEnv,
recorded episode, remote policy) and consumed by every sink (Rerun, session store, plots, video).
Adding a source or a sink must not touch the others, so these types hold plain numpy arrays and the
spatial types only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.spatial import Box, Point, SpatialAnswer, Trace


@dataclass
class Camera:
    """A pinhole camera in OpenCV convention (x right, y down, z forward)."""

    intrinsic: np.ndarray  # [3, 3]
    extrinsic: np.ndarray  # [4, 4] world -> camera (SimplerEnv's extrinsic_cv)
    width: int
    height: int

    def project(self, points_world: np.ndarray) -> np.ndarray:
        """[N, 3] world points -> [N, 2] pixel coordinates (points behind the camera give NaN)."""
        pts = np.asarray(points_world, dtype=np.float64).reshape(-1, 3)
        cam = (self.extrinsic[:3, :3] @ pts.T + self.extrinsic[:3, 3:4]).T  # [N, 3]
        uv = (self.intrinsic @ cam.T).T  # [N, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            px = uv[:, :2] / uv[:, 2:3]
        px[cam[:, 2] <= 1e-6] = np.nan
        return px


@dataclass
class GroundTruth:
    """What the source knows to be true, in pixels of the original image."""

    objects: list[Box] = field(default_factory=list)  # every object's 2-D box, labelled
    key_points: list[Point] = field(default_factory=list)  # e.g. each object's grasp point
    target: Box | None = None  # the region the task wants the object in
    object_label: str = ""  # label of the object to move, the one the instruction is about
    target_label: str = ""
    expert_trace: Trace | None = None  # the scripted expert's end-effector path, projected


@dataclass
class Observation:
    images: dict[str, np.ndarray]  # camera name -> [H, W, 3] uint8
    instruction: str
    cameras: dict[str, Camera] = field(default_factory=dict)
    tcp_pose: np.ndarray | None = None  # [7] world xyz + quaternion (w, x, y, z)
    state: np.ndarray | None = None  # robot proprioception (e.g. joint positions)
    ground_truth: GroundTruth | None = None
    base_pose: np.ndarray | None = None  # [7] robot base in the world: xyz + quaternion (w, x, y, z)

    @property
    def main_camera(self) -> str:
        return next(iter(self.images))


@dataclass
class ActionChunk:
    """One prediction of the action expert: T future actions of 7 dimensions.

    Action layout: [dx, dy, dz, rx, ry, rz (axis-angle), gripper].
    """

    normalized: np.ndarray  # [T, 7] in [-1, 1], as the model predicts
    actions: np.ndarray  # [T, 7] unnormalised with dataset statistics
    ee_path_3d: np.ndarray | None = None  # [T + 1, 3] end-effector positions the chunk implies
    ee_path_2d: Trace | None = None  # the same path projected into the main camera
    attention: dict[str, np.ndarray] | None = None  # view -> [h, w] query-former attention heatmap
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    answer: str | None = None  # the spatial answer the action expert read (answer-conditioned models)


@dataclass
class PolicyStep:
    """Everything one policy said about one observation."""

    policy: str  # display name (checkpoint name, or "A"/"B")
    instruction: str
    spatial: SpatialAnswer | None = None
    chunk: ActionChunk | None = None
    executed: np.ndarray | None = None  # [7] the action sent to the env after ensembling
    metrics: dict[str, float] = field(default_factory=dict)  # grounding metrics vs ground truth
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class StepRecord:
    step: int
    observation: Observation
    policies: dict[str, PolicyStep] = field(default_factory=dict)
    executed_action: np.ndarray | None = None  # [7] what the environment received
    recorded_action: np.ndarray | None = None  # [7] from a recorded episode, when there is one
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds (env, policy, sinks)
    branch: str = "main"  # name of the branch this step belongs to
