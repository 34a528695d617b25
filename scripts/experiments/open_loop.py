"""Open-loop check of a checkpoint: does its first predicted action depend on the image?

On frames of recorded demonstrations, compare the policy's first action (unnormalised) with the
expert's, against the constant that knows nothing: the mean action of the same frames. On the
frames where the expert moves, also the cosine between the predicted and the expert translation,
against the same for the mean translation direction. A policy that ignores the image lands on
these baselines; a useful one has a lower error and a higher cosine.

    python scripts/experiments/open_loop.py --checkpoint assets/checkpoints/vanilla-tiny \
        --data runs/v2/demos --episodes 20
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from tqdm import tqdm

from workbench.episodes.lerobot import LeRobotDataset
from workbench.policy.policy import ST4VLAPolicy
from workbench.train.data import CAMERA


def open_loop(checkpoint: str, data: str, episodes: int, every: int = 3) -> dict[str, float]:
    torch.set_num_threads(1)
    policy = ST4VLAPolicy.load(checkpoint)
    ds = LeRobotDataset(data)
    picked = np.linspace(0, ds.num_episodes - 1, min(episodes, ds.num_episodes)).astype(int)
    predicted, expert = [], []
    for i in tqdm(picked, desc="open loop", unit="ep"):
        ep = ds.episode(int(i))
        for t in range(0, len(ep.frames), every):
            frame = ep.frames[t]
            chunk = policy.act([frame.images[CAMERA]], ep.task, seed=0, state=frame.state)
            predicted.append(np.asarray(chunk.actions)[0])
            expert.append(ep.actions[t])
    p, e = np.stack(predicted), np.stack(expert)
    moving = np.linalg.norm(e[:, :3], axis=1) >= 0.01  # frames where the expert translates

    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        return float(
            np.mean((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-9))
        )

    # Translation and rotation only (the gripper is a sign); mean over frames and the 6 dimensions.
    return {
        "frames": len(e),
        "policy_abs_error": float(np.abs(p[:, :6] - e[:, :6]).mean()),
        "mean_action_abs_error": float(np.abs(e[:, :6].mean(0) - e[:, :6]).mean()),
        # act() returns upstream's gripper convention (1 open, 0 close); the expert's is +1 / -1.
        "gripper_agreement": float(np.mean((p[:, 6] >= 0.5) == (e[:, 6] > 0))),
        # Direction of the translation on moving frames: does the policy head where the expert does?
        "direction_cos": cosine(p[moving, :3], e[moving, :3]),
        "mean_direction_cos": cosine(e[moving, :3].mean(0, keepdims=True), e[moving, :3]),
        "prediction_std": float(p[:, :6].std(0).mean()),
        "expert_std": float(e[:, :6].std(0).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", default="runs/v2/demos")
    ap.add_argument("--episodes", type=int, default=20)
    args = ap.parse_args()
    print(json.dumps(open_loop(args.checkpoint, args.data, args.episodes), indent=1))


if __name__ == "__main__":
    main()
