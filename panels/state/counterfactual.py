"""Counterfactual edit: act on the frame on screen as if the model had answered the user's box.

For a checkpoint that acts on its own spatial answer (config.reads_answer: st4vla-tiny reads its
answer's box centres as points), the box the user types (camera-image pixels) is written as the
model's answer text in its input frame (workbench.spatial.format) and act() is called again with it,
with the very seed, instruction and state of the step on screen. So the original chunk is what the
same call gives with the model's own answer, and the two differ only by the answer.

The edited box and its rollout are drawn in white in the policy's camera view (under
`{policy}/counterfactual/`), beside the policy's own answer and rollout, and cleared at the next step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from panels.state.config import AppError
from workbench.spatial import Box

COUNTERFACTUAL_COLOR = (255, 255, 255)


@dataclass
class Counterfactual:
    step: int
    branch: str
    policy: str
    box: Box  # original-image pixels
    answer: str  # what the model was made to read (its input frame)
    original_answer: str
    original_first: np.ndarray  # [7] the step's own chunk, first action (unnormalised)
    edited_first: np.ndarray  # [7] the chunk acting on the user's box
    original_end: tuple[float, float] | None  # where each rollout ends in the image (pixels)
    edited_end: tuple[float, float] | None

    def markdown(self) -> str:
        def fmt(a: np.ndarray) -> str:
            return ", ".join(f"{v:+.3f}" for v in a[:3]) + f" · gripper {a[6]:+.2f}"

        lines = [
            f"**Counterfactual at step {self.step}** ({self.policy}, drawn in white beside its own answer)",
            f"- its answer: `{self.original_answer[:120]}` → first action dx, dy, dz: {fmt(self.original_first)}",
            f"- your box: `{self.answer[:120]}` → first action dx, dy, dz: {fmt(self.edited_first)}",
            f"- the first action moved by {float(np.linalg.norm(self.edited_first[:3] - self.original_first[:3])):.4f}",
        ]
        if self.original_end and self.edited_end:
            d = float(
                np.hypot(self.edited_end[0] - self.original_end[0], self.edited_end[1] - self.original_end[1])
            )
            lines.append(f"- the rollout's end moved by {d:.1f} px in the image")
        return "\n".join(lines)


def parse_box(text: str, width: int, height: int) -> Box:
    """'x1, y1, x2, y2' in camera-image pixels -> a Box inside the image, or an AppError saying why."""
    numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", str(text or ""))]
    if len(numbers) != 4:
        raise AppError(f"Type a box as four numbers 'x1, y1, x2, y2' in camera pixels (got {text!r}).")
    x1, y1, x2, y2 = numbers
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise AppError(
            f"The box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) must lie inside the {width}x{height} camera image "
            "with x1 < x2 and y1 < y2."
        )
    return Box(x1, y1, x2, y2)


def run_counterfactual(tab, box_text: str) -> Counterfactual:
    """Act on the first lane's current frame with the user's box as the driving policy's answer."""
    from workbench.controller import project_path, rollout_path
    from workbench.policy_input import act
    from workbench.runner import act_seed
    from workbench.spatial import format as format_answer

    runner = tab._require_runner()
    lane = runner.lanes[0]
    record = tab.lane_record(lane.branch)
    slot = lane.slots[0]
    config = getattr(slot.policy, "config", None)
    if not getattr(config, "reads_answer", False):
        raise AppError(
            f"{slot.name} does not act on its own spatial answer, so editing the answer changes nothing; "
            "load a checkpoint that does (e.g. st4vla-tiny)."
        )
    obs = record.observation
    image = obs.images[obs.main_camera]
    h, w = image.shape[:2]
    ps = record.policies[slot.name]
    label = next((g.label for g in (ps.spatial.geometry if ps.spatial else []) if isinstance(g, Box)), "")
    label = label or (obs.ground_truth.object_label if obs.ground_truth else "")
    box = parse_box(box_text, w, h)
    box = Box(box.x1, box.y1, box.x2, box.y2, label)
    answer = format_answer([box], ps.spatial.frame if ps.spatial else None)
    # the runner's own act() call at this step (same inputs, same seed), with the user's answer
    inputs = replace(runner.policy_input(slot, obs, record.step, ps.instruction), answer=answer)
    chunk = act(slot.policy, inputs, num_ddim_steps=slot.num_ddim_steps, cfg_scale=slot.cfg_scale,
                seed=act_seed(runner.seed, record.step))  # fmt: skip
    cam = obs.cameras.get(obs.main_camera)
    edited_path = None
    if obs.tcp_pose is not None and cam is not None:
        edited_path = project_path(cam, rollout_path(obs.tcp_pose, chunk.actions))
    original_path = ps.chunk.ee_path_2d if ps.chunk is not None else None
    out = Counterfactual(
        step=record.step, branch=record.branch, policy=slot.name, box=box, answer=answer,
        original_answer=ps.chunk.answer if ps.chunk is not None and ps.chunk.answer else "",
        original_first=np.asarray(ps.chunk.actions[0], dtype=np.float64),
        edited_first=np.asarray(chunk.actions[0], dtype=np.float64),
        original_end=_end(original_path), edited_end=_end(edited_path),
    )  # fmt: skip
    if tab.logger is not None:
        log_counterfactual(tab.logger.rec, out, edited_path)
    tab.counterfactual = out
    tab.edits.append({"kind": "counterfactual", "step": record.step, "branch": record.branch,
                      "box": [round(v, 1) for v in (box.x1, box.y1, box.x2, box.y2)], "answer": answer})  # fmt: skip
    return out


def _end(trace) -> tuple[float, float] | None:
    if trace is None:
        return None
    pts = [(x, y) for x, y in trace.points if np.isfinite(x) and np.isfinite(y)]
    return pts[-1] if pts else None


def _paths(branch: str, policy: str) -> tuple[str, str]:
    from workbench.viz.rerun_log import branch_root, policy_part

    base = f"{branch_root(branch)}world/camera/{policy_part(policy)}/counterfactual"
    return f"{base}/box", f"{base}/rollout"


def log_counterfactual(rec, cf: Counterfactual, path) -> None:
    import rerun as rr

    from workbench.viz.rerun_log import TIMELINE

    rec.set_time(TIMELINE, sequence=cf.step)
    box_path, rollout_path = _paths(cf.branch, cf.policy)
    b = cf.box
    rec.log(box_path, rr.Boxes2D(array=[[b.x1, b.y1, b.x2, b.y2]], array_format=rr.Box2DFormat.XYXY,
                                 labels=["your box"], colors=[COUNTERFACTUAL_COLOR], radii=1.5))  # fmt: skip
    pts = [(x, y) for x, y in (path.points if path is not None else []) if np.isfinite(x) and np.isfinite(y)]
    if pts:
        rec.log(rollout_path, rr.LineStrips2D([pts], colors=[COUNTERFACTUAL_COLOR], radii=1.5))
    else:
        rec.log(rollout_path, rr.Clear(recursive=False))


def clear_counterfactual(rec, cf: Counterfactual, step: int) -> None:
    """The edit was about one frame: take it away from `step` on."""
    import rerun as rr

    from workbench.viz.rerun_log import TIMELINE

    rec.set_time(TIMELINE, sequence=int(step))
    for path in _paths(cf.branch, cf.policy):
        rec.log(path, rr.Clear(recursive=False))
