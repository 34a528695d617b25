"""The explicit spatial prompt: the action expert reads the points its own VLM wrote.

The fourth session's oracle (oracle_points.py) showed that this DiT, told the source's and the
target's image positions as numbers, succeeds on about half the episodes; the twelfth showed that a
VLM which writes a good box does not pass that box, through its hidden states and the query former,
to the DiT (linear probe R^2 0.46). This experiment closes the gap the explicit way: the checkpoint's
own greedy answer to the spatial prompt is parsed, and the centres of its first two boxes (source,
then target, as the answer is taught) join the robot state the DiT reads, as fractions of the image.
Unlike the oracle, nothing here reads the simulator's ground truth, at training or at control time:
the head is trained on the points the model itself writes on the training frames (with their real
errors), and at control time the model answers the spatial prompt on every observation.

The pipeline's form of the same idea is `ST4VLAConfig.answer_points` (`workbench train stage2
--answer-points`), whose points are in [-1, 1] of the image (`points_from_answer`); this script keeps the
fourteenth session's first measurement reproducible (workbench/train/NOTES.md).

    python scripts/experiments/answer_points.py --checkpoint assets/checkpoints/st4vla-tiny \
        --head-steps 6000 --out runs/v14/answer_points
    python scripts/experiments/answer_points.py --checkpoint assets/checkpoints/st4vla-tiny \
        --out runs/v14/answer_points --eval-only --seed 30000 --episodes 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from oracle_points import ORACLE_DIM, train_widened

from workbench import spatial
from workbench.evaluate import EvalConfig, evaluate, write_report
from workbench.policy.policy import ST4VLAPolicy
from workbench.sim.base import robot_state
from workbench.train.data import load_frames
from workbench.train.head import own_answers


def answer_points(geometry: list, width: int, height: int) -> np.ndarray:
    """[4]: the centres of the answer's first two boxes (source, target) as fractions of the image;
    zeros for a box the answer does not have."""
    out = np.zeros(ORACLE_DIM, dtype=np.float32)
    boxes = [g for g in geometry if isinstance(g, spatial.Box)][:2]
    for i, box in enumerate(boxes):
        cx, cy = box.center
        out[2 * i : 2 * i + 2] = (cx / width, cy / height)
    return out


def training_points(policy: ST4VLAPolicy, frames) -> np.ndarray:
    """[N, 4]: the model's own points on every training frame (the head phase's batched greedy decode)."""
    rows = []
    for f, text in zip(frames, own_answers(policy, frames), strict=True):
        h, w = f.image.shape[:2]  # the answer is in the model frame's pixels
        rows.append(answer_points(spatial.parse(text).geometry, w, h))
    return np.stack(rows)


class OwnPoints:
    """At control time: the joints plus the points of the model's answer on this observation."""

    def __init__(self, policy: ST4VLAPolicy):
        self.policy = policy

    def __call__(self, env, obs: dict) -> np.ndarray:
        image = obs["image"][next(iter(obs["image"]))]["rgb"]
        answer = self.policy.spatial([image], env.get_language_instruction())  # original pixels
        h, w = image.shape[:2]
        return np.concatenate([robot_state(obs), answer_points(answer.geometry, w, h)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="a checkpoint whose action expert reads the state")
    ap.add_argument("--data", nargs="+", default=["runs/v2/demos", "runs/v2/demos2"])
    ap.add_argument("--head-steps", type=int, default=6000)
    ap.add_argument("--out", required=True, help="where the widened model and its evaluations go")
    ap.add_argument("--episodes", type=int, default=5, help="per task and cell, as for the cards")
    ap.add_argument("--seed", type=int, default=10_000)
    ap.add_argument("--max-steps", type=int, default=50)
    ap.add_argument("--eval-only", action="store_true", help="evaluate <out>/final, trained before")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.eval_only:
        closed_loop(ST4VLAPolicy.load(out / "final"), out, args)
        return
    policy = ST4VLAPolicy.load(args.checkpoint)
    if not policy.reads_state or policy.config.condition_on_answer:
        raise SystemExit(f"{args.checkpoint}: needs a state token and the upstream condition")
    policy.model.eval()
    frames = load_frames(tuple(args.data), policy.config.image_size, policy.chunk_length)
    points = training_points(policy, frames)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "training_points.npy", points)  # to measure their error against the ground truth
    for f, p in zip(frames, points, strict=True):
        f.state = np.concatenate([f.state, p])
    train_widened(policy, frames, args.head_steps, out)
    closed_loop(policy, out, args)


def closed_loop(policy: ST4VLAPolicy, out: Path, args: argparse.Namespace) -> None:
    cfg = EvalConfig(
        checkpoint=str(out / "final"),
        out=str(out / f"eval_seed{args.seed}"),
        episodes=args.episodes,
        seed=args.seed,
        max_steps=args.max_steps,
    )
    report = evaluate(cfg, policy, state_fn=OwnPoints(policy))
    write_report(report, cfg.out)
    print(json.dumps(report.summary(), indent=1))


if __name__ == "__main__":
    main()
