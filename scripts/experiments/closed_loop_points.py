"""How good are an answer-points checkpoint's points in closed loop, and what would exact ones give?

An answer-points checkpoint (ST4VLAConfig.answer_points) answers its spatial prompt at every control
step and its DiT reads the centres of the answer's first two boxes. This rolls out the evaluation
episodes with one of three answers fed to the DiT:
  - own:   the model's own answer (what `workbench evaluate` measures), with each step's point error
           against the simulator's truth recorded;
  - truth: the true answer from the simulator's ground truth at every step (privileged: the ceiling
           of this action expert if its VLM grounded perfectly);
  - hold:  the model's own answer, but each point held at the median of its answers so far while the
           gripper is open (a test-time filter; the object only moves once grasped).
It is a diagnostic, not a policy: "truth" reads the simulator's state. Choose nothing on the unseen
cells.

    python scripts/experiments/closed_loop_points.py --checkpoint assets/checkpoints/st4vla-tiny \
        --mode truth --seed 40000 --episodes 10 --cells seen/seen seen/unseen --out runs/v17/clp/truth
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from workbench.evaluate import CELLS, TASKS, EvalConfig, evaluate, write_report
from workbench.policy.policy import ST4VLAPolicy, points_from_answer
from workbench.sim.base import robot_state
from workbench.spatial import Box
from workbench.spatial import format as format_answer
from workbench.train.data import task_answer


class PointsProbe:
    """A policy wrapper: acts on the chosen answer and logs its own points' error against the truth."""

    def __init__(self, policy: ST4VLAPolicy, mode: str):
        self.policy, self.mode = policy, mode
        self.gt = None
        self.errors: list[dict] = []  # one row per control step
        self.history: list[np.ndarray] = []  # own points this episode, [4] each

    def __getattr__(self, name):  # spatial(), config ... as the wrapped policy
        return getattr(self.policy, name)

    def state_fn(self, env, obs: dict) -> np.ndarray:
        """Called by the evaluation loop before each act(): keeps the truth for that step."""
        self.gt = env.ground_truth()
        return robot_state(obs)

    def act(self, images, instruction, **kw):
        views, frames = self.policy.prepare_images(images)
        size = views[0].shape[:2]
        own = self.policy.answer_spatial_prompt([views], [instruction])[0]
        truth = task_answer(self.gt, frames[0])
        p_own = points_from_answer(own, width=size[1], height=size[0])
        p_true = points_from_answer(truth, width=size[1], height=size[0])
        if kw.get("seed", 0) % 1000 == 0:  # the first step of an episode (seed = episode seed * 1000)
            self.history = []
        self.history.append(p_own)
        # error as a fraction of the image (the [-1, 1] points span 2)
        err = np.abs(p_own - p_true) / 2
        self.errors.append(
            {
                "step": kw.get("seed", 0) % 1000,
                "source": float(np.hypot(*err[:2])),
                "target": float(np.hypot(*err[2:])),
            }
        )
        answer = {"own": own, "truth": truth, "hold": self._held(own, size)}[self.mode]
        return self.policy.act(images, instruction, answer=answer, **kw)

    def _held(self, own: str, size: tuple[int, int]) -> str:
        """The median of this episode's own points so far, as an answer of two tiny boxes."""
        med = np.median(np.stack(self.history), axis=0)
        h, w = size
        boxes = []
        for i, label in enumerate(("source", "target")):
            x, y = (med[2 * i] + 1) / 2 * w, (med[2 * i + 1] + 1) / 2 * h
            boxes.append(Box(x - 1, y - 1, x + 1, y + 1, label=label))
        return format_answer(boxes, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--mode", choices=("own", "truth", "hold"), default="own")
    ap.add_argument("--seed", type=int, default=40_000)
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--max-steps", type=int, default=50)
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--cells", nargs="+", default=["seen/seen", "seen/unseen"])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cells = tuple(tuple(c.split("/")) for c in args.cells)
    assert all(c in CELLS for c in cells), cells
    policy = ST4VLAPolicy.load(args.checkpoint)
    if not policy.config.answer_points:
        raise SystemExit(f"{args.checkpoint} does not read its answer's points (config.answer_points)")
    probe = PointsProbe(policy, args.mode)
    cfg = EvalConfig(
        checkpoint=args.checkpoint,
        out=args.out,
        tasks=tuple(args.tasks),
        episodes=args.episodes,
        seed=args.seed,
        max_steps=args.max_steps,
        cells=cells,
    )
    report = evaluate(cfg, policy=probe, state_fn=probe.state_fn)
    write_report(report, args.out)
    errs = probe.errors
    src = np.array([e["source"] for e in errs])
    first = np.array([e["source"] for e in errs if e["step"] == 0])
    summary = {
        "mode": args.mode,
        "success": report.success().successes,
        "n": report.success().n,
        "source_error_median": float(np.median(src)),
        "source_within_0.03": float(np.mean(src < 0.03)),
        "source_error_median_first_step": float(np.median(first)),
        "first_within_0.03": float(np.mean(first < 0.03)),
    }
    Path(args.out, "points.json").write_text(json.dumps({"summary": summary, "steps": errs}))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
