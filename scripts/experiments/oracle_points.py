"""The ceiling of spatial guidance here: an action expert told the true points of the objects.

ST4VLA's premise is that an action expert which knows where things are in the image acts better.
This measures how much better it could get on the built-in simulator if the spatial answer were
perfect. A checkpoint's state token is widened from the joints to the joints plus four numbers
from the simulator's ground truth, at every frame, in training and at control time alike:
  - the source object's centre in the image,
  - the target's box centre in the image (zeros where the task has no target),
each as a fraction of the image's width and height. The new inputs' weights start at zero, so the
widened model starts as the checkpoint; then the head phase (workbench/train/head.py) trains the
DiT on the checkpoint's cached query tokens, and the result is rolled out closed loop on the
evaluation seeds of the bundled checkpoints. The control is the same continuation without the
points (`workbench train stage2 ... --head-steps` with more steps).

    python scripts/experiments/oracle_points.py --checkpoint assets/checkpoints/st4vla-tiny \
        --head-steps 6000 --out runs/v4/oracle_st4vla
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from workbench.evaluate import EvalConfig, evaluate, write_report
from workbench.policy.modeling import StateEmbedder
from workbench.policy.normalization import ActionNormalizer
from workbench.policy.policy import ST4VLAPolicy
from workbench.records import GroundTruth
from workbench.sim.base import robot_state
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
        if p.label == gt.source_label:
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


def oracle_state(env, obs: dict) -> np.ndarray:
    """At control time: the joints plus the same four numbers, from the simulator's ground truth."""
    image = obs["image"][next(iter(obs["image"]))]["rgb"]
    h, w = image.shape[:2]
    return np.concatenate([robot_state(obs), oracle_points(env.ground_truth(), w, h)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="a checkpoint whose action expert reads the state")
    ap.add_argument("--data", nargs="+", default=["runs/v2/demos", "runs/v2/demos2"])
    ap.add_argument("--head-steps", type=int, default=6000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--episodes", type=int, default=5, help="per task and cell, as for the cards")
    ap.add_argument("--seed", type=int, default=10_000)
    ap.add_argument("--max-steps", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    policy = ST4VLAPolicy.load(args.checkpoint)
    if not policy.reads_state:
        raise SystemExit(f"{args.checkpoint} has no state token (trained without --state)")
    frames = load_frames(tuple(args.data), policy.config.image_size, policy.chunk_length)
    for f in frames:
        f.state = np.concatenate(
            [f.state, oracle_points(f.ground_truth, f.frame.orig_width, f.frame.orig_height)]
        )
    widen_state_token(policy, ORACLE_DIM)
    policy.set_statistics(statistics_for(frames), UNNORM_KEY)  # same action block, wider state block
    normalizer = ActionNormalizer(policy.statistics, UNNORM_KEY)
    log = train_head(policy, frames, normalizer, HeadPhaseConfig(steps=args.head_steps), out, seed=0)
    policy.model.eval()
    policy.save(out / "final")
    (out / "log.json").write_text(json.dumps(log, indent=1))
    cfg = EvalConfig(
        checkpoint=str(out / "final"),
        out=str(out / "eval"),
        episodes=args.episodes,
        seed=args.seed,
        max_steps=args.max_steps,
    )
    report = evaluate(cfg, policy, state_fn=oracle_state)
    write_report(report, cfg.out)
    print(json.dumps(report.summary(), indent=1))


if __name__ == "__main__":
    main()
