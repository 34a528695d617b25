"""The ablation's control (docs/ablation.md): an action head given the TRUE box centres.

`workbench train stage2 --state --true-points` appends to every frame's robot state the four numbers an
answer-points model reads from its own answer (the centres of the source's and the target's boxes,
[-1, 1] of the image; `points_from_answer`), computed here from the ground truth's boxes instead. At
evaluation `true_points_input` appends the same four numbers from the simulator's ground truth
(evaluate(..., transform=true_points_input(size), state_mapping="neutral")). The localiser is thus
perfect and privileged: an oracle, not a learned head. It separates "the action head is told explicit
coordinates" from "the VLM was spatially guided".

Invariants: the points of a frame are exactly those an answer-points model is taught for it
(`points_from_answer(task_answer(gt, frame))`); they follow the robot joints in the state, so the
checkpoint's statistics normalise them like any state dimension; a frame without ground truth is refused.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from workbench.policy.extras import points_from_answer
from workbench.records import GroundTruth
from workbench.spatial import Frame
from workbench.train.data import FrameItem, task_answer


def true_points(gt: GroundTruth, frame: Frame) -> np.ndarray:
    """[4] the source's and the target's box centres in [-1, 1] of the model frame ((-1, -1): none)."""
    return points_from_answer(task_answer(gt, frame), width=frame.width, height=frame.height)


def with_true_points(frames: list[FrameItem]) -> None:
    """Append every frame's true points to its robot state (in place)."""
    for f in frames:
        if f.ground_truth is None or f.state is None:
            raise ValueError(f"episode {f.episode}: --true-points needs the ground truth and the robot state")
        f.state = np.concatenate([f.state, true_points(f.ground_truth, f.frame)]).astype(np.float32)


def true_points_input(image_size: int):
    """An input transform (workbench.policy_input): the observation's joints, then its true points."""

    def transform(inputs, step: int):
        obs = inputs.observation
        if obs is None or obs.ground_truth is None or obs.state is None:
            raise ValueError("the control reads the true boxes: the observation has no ground truth or state")
        h, w = obs.images[obs.main_camera].shape[:2]
        points = true_points(obs.ground_truth, Frame(image_size, image_size, w, h))
        return replace(inputs, state=np.concatenate([obs.state, points]))

    return transform
