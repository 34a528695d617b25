"""The ceiling of spatial guidance here: an action expert told the true points of the objects.

ST4VLA's premise is that an action expert which knows where things are in the image acts better.
This measures how much better it could get on the built-in simulator if the spatial answer were
perfect. A checkpoint's state token is widened from the joints to the joints plus four numbers
from the simulator's ground truth, at every frame, in training and at control time alike:
  - the centre of the object to move in the image,
  - the target's box centre in the image (zeros where the task has no target),
each as a fraction of the image's width and height. The new inputs' weights start at zero, so the
widened model starts as the checkpoint; then the head phase (workbench/train/head.py) trains the
DiT on the checkpoint's cached query tokens, and the result is rolled out closed loop on the
evaluation seeds of the bundled checkpoints. The control is the same continuation without the
points (`workbench train stage2 ... --head-steps` with more steps).

    python research/experiments/oracle_points.py --checkpoint assets/checkpoints/st4vla-tiny \
        --head-steps 6000 --out runs/v4/oracle_st4vla
    python research/experiments/oracle_points.py --checkpoint assets/checkpoints/st4vla-tiny \
        --out runs/v4/oracle_st4vla --eval-only --point-noise 0.05   # points off by ~5% of the image
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from workbench.eval_report import write_report
from workbench.evaluate import EvalConfig, evaluate
from workbench.policy.modeling import StateEmbedder
from workbench.policy.normalization import ActionNormalizer
from workbench.policy.policy import ST4VLAPolicy
from workbench.policy_input import PolicyInput
from workbench.records import GroundTruth
from workbench.train.data import load_frames
from workbench.train.head import HeadPhaseConfig, train_head
from workbench.train.stage2 import UNNORM_KEY, statistics_for

ORACLE_DIM = 4  # source centre (x, y), target centre (x, y)


def oracle_points(gt: GroundTruth | None, width: int, height: int) -> np.ndarray:
    """[4]: the source's centre and the target's box centre, as fractions of the image size."""
    out = np.zeros(ORACLE_DIM, dtype=np.float32)
    if gt is None:
        return out
    for p in gt.key_points:
        if p.label == gt.object_label:
            out[:2] = (p.x / width, p.y / height)
            break
    if gt.target is not None:
        cx, cy = gt.target.center
        out[2:] = (cx / width, cy / height)
    return out


def widen_state_token(policy: ST4VLAPolicy, extra: int) -> None:
    """Let the state embedder read `extra` more inputs; their weights start at zero (same outputs)."""
    head = policy.model.action_model.net  # the DiT
    old: StateEmbedder = head.state_embedder
    first = old.mlp[0]
    new = StateEmbedder(first.in_features + extra, first.out_features)
    with torch.no_grad():
        new.mlp[0].weight.zero_()
        new.mlp[0].weight[:, : first.in_features] = first.weight
        new.mlp[0].bias.copy_(first.bias)
        new.mlp[2].load_state_dict(old.mlp[2].state_dict())
    head.state_embedder = new
    head.state_dim = first.in_features + extra
    policy.config.action.state_dim = head.state_dim


def oracle_state(inputs: PolicyInput, step: int) -> PolicyInput:
    """At control time (an input transform, workbench.policy_input): the joints plus the same four
    numbers, from the simulator's ground truth."""
    obs = inputs.observation
    h, w = obs.images[obs.main_camera].shape[:2]
    state = np.concatenate([obs.state, oracle_points(obs.ground_truth, w, h)])
    return replace(inputs, state=state)


def train_widened(policy: ST4VLAPolicy, frames: list, head_steps: int, out: Path) -> None:
    """Widen the state token by ORACLE_DIM (frames' states already carry the extra numbers), train the
    head phase on the checkpoint's cached query tokens and save the result as out/"final"."""
    widen_state_token(policy, ORACLE_DIM)
    policy.set_statistics(statistics_for(frames), UNNORM_KEY)  # same action block, wider state block
    normalizer = ActionNormalizer(policy.statistics, UNNORM_KEY)
    log = train_head(policy, frames, normalizer, HeadPhaseConfig(steps=head_steps), out, seed=0)
    policy.model.eval()
    policy.save(out / "final")
    (out / "log.json").write_text(json.dumps(log, indent=1))


class NoisyOracle:
    """The oracle's points, each off by an offset drawn once per episode from N(0, sigma^2) (sigma a
    fraction of the image size): a grounding model that misplaces an object misplaces it the same
    way step after step, so the error is persistent, not jitter."""

    def __init__(self, sigma: float, seed: int = 0):
        self.sigma, self.rng, self.offset = sigma, np.random.default_rng(seed), np.zeros(ORACLE_DIM)

    def __call__(self, inputs: PolicyInput, step: int) -> PolicyInput:
        if step == 0:
            self.offset = self.rng.normal(0.0, self.sigma, ORACLE_DIM)
        state = oracle_state(inputs, step).state
        points = state[-ORACLE_DIM:]
        present = np.repeat(points.reshape(2, 2).any(axis=1), 2)  # no target stays "no target"
        state[-ORACLE_DIM:] = np.where(present, points + self.offset, points)
        return replace(inputs, state=state)


def own_point_error(checkpoint: str, data: str, episodes: int) -> dict[str, float]:
    """How far the checkpoint's own spatial answer puts the object to move, on the first frame of
    held-out demonstrations: the centre of its first box (or its first point) against the true
    centre, per axis as a fraction of the image size (comparable with --point-noise)."""
    from workbench.episodes.lerobot import LeRobotDataset
    from workbench.spatial_metrics import centre_offset
    from workbench.train.data import CAMERA

    policy, ds = ST4VLAPolicy.load(checkpoint), LeRobotDataset(data)
    out = {}
    for query in ("box", "point"):
        errors, missing = [], 0
        for i in range(min(episodes, ds.num_episodes)):
            ep = ds.episode(i)
            frame = ep.frames[0]
            image = frame.images[CAMERA]
            h, w = image.shape[:2]
            truth = oracle_points(frame.ground_truth, w, h)[:2]
            answer = policy.spatial([image], ep.task, query=query)
            offset = centre_offset(answer, (truth[0] * w, truth[1] * h), w, h)
            if offset is None:
                missing += 1
                continue
            errors.append(offset)
        e = np.asarray(errors).reshape(-1, 2)
        out[f"{query}_rms_per_axis"] = float(np.sqrt((e**2).mean())) if len(e) else float("nan")
        out[f"{query}_median_distance"] = (
            float(np.median(np.linalg.norm(e, axis=1))) if len(e) else float("nan")
        )
        out[f"{query}_unanswered"] = missing
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="a checkpoint whose action expert reads the state")
    ap.add_argument("--data", nargs="+", default=["runs/v2/demos", "runs/v2/demos2"])
    ap.add_argument("--head-steps", type=int, default=6000)
    ap.add_argument("--out", help="where the widened model and its evaluations go")
    ap.add_argument("--episodes", type=int, default=5, help="per task and cell, as for the cards")
    ap.add_argument("--seed", type=int, default=10_000)
    ap.add_argument("--max-steps", type=int, default=50)
    ap.add_argument("--eval-only", action="store_true", help="evaluate <out>/final, trained before")
    ap.add_argument(
        "--point-noise",
        type=float,
        default=0.0,
        help="per-episode offset of the points (fraction of the image)",
    )
    ap.add_argument(
        "--own-error", metavar="DATA", help="only measure the checkpoint's own point error on DATA"
    )
    ap.add_argument("--own-episodes", type=int, default=50, help="first frames of this many episodes")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.own_error:
        print(json.dumps(own_point_error(args.checkpoint, args.own_error, args.own_episodes), indent=1))
        return
    if not args.out:
        ap.error("--out is needed to train and evaluate")
    out = Path(args.out)
    if args.eval_only:
        closed_loop(ST4VLAPolicy.load(out / "final"), out, args)
        return
    policy = ST4VLAPolicy.load(args.checkpoint)
    if not policy.reads_state:
        raise SystemExit(f"{args.checkpoint} has no state token (trained without --state)")
    frames = load_frames(tuple(args.data), policy.config.image_size, policy.chunk_length)
    for f in frames:
        f.state = np.concatenate(
            [f.state, oracle_points(f.ground_truth, f.frame.orig_width, f.frame.orig_height)]
        )
    train_widened(policy, frames, args.head_steps, out)
    closed_loop(policy, out, args)


def closed_loop(policy: ST4VLAPolicy, out: Path, args: argparse.Namespace) -> None:
    noise = args.point_noise
    cfg = EvalConfig(
        checkpoint=str(out / "final"),
        out=str(out / (f"eval_noise{noise:g}" if noise else "eval")),
        episodes=args.episodes,
        seed=args.seed,
        max_steps=args.max_steps,
    )
    # the widened state does not fit the sim's joints: "neutral" lets the runner start, the transform fills it
    transform = NoisyOracle(noise) if noise else oracle_state
    report = evaluate(cfg, policy, transform=transform, state_mapping="neutral")
    write_report(report, cfg.out)
    print(json.dumps(report.summary(), indent=1))


if __name__ == "__main__":
    main()
