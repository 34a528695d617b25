"""Does the action expert grasp more precisely when it reads where its gripper is?

Closed-loop traces (NOTES, seventeenth session) show the DiT bringing the gripper down 2-3 cm beside
the object and closing on nothing, even when it is fed the *true* points of the objects. It reads the
nine joint positions, so to turn "the object is at (u, v) in the image" into a motion it must also
compute the forward kinematics of the arm. This gives it the TCP position (x, y, z in the robot's
base frame: SimplerEnv's obs["extra"]["tcp_pose"][:3]) as three more state inputs, as a
`state_tcp` checkpoint reads them (`fill_tcp_poses` computes the TCP of the bundled recipe's
demonstrations from their joints). The new inputs' weights start at zero (the widened model starts as
the checkpoint); the head phase then trains the DiT on the checkpoint's cached query tokens. The result
loads as a `state_tcp` checkpoint, so `workbench evaluate` passes it the pose.

    python scripts/experiments/tcp_state.py --checkpoint assets/checkpoints/st4vla-tiny \
        --head-steps 6000 --out runs/v17/tcp_st4vla
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from workbench.policy.configuration import TCP_POSITION
from workbench.policy.modeling import StateEmbedder
from workbench.policy.normalization import ActionNormalizer
from workbench.policy.policy import ST4VLAPolicy
from workbench.train.data import fill_tcp_poses, load_frames
from workbench.train.head import HeadPhaseConfig, train_head
from workbench.train.stage2 import UNNORM_KEY, statistics_for


def widen_robot_state(policy: ST4VLAPolicy, extra: int) -> None:
    """Insert `extra` state inputs after the robot state (before the answer's points), weights zero."""
    head = policy.model.action_model.net
    old: StateEmbedder = head.state_embedder
    first = old.mlp[0]
    robot = policy.config.robot_state_dim
    new = StateEmbedder(first.in_features + extra, first.out_features)
    with torch.no_grad():
        w = torch.zeros(first.out_features, first.in_features + extra)
        w[:, :robot] = first.weight[:, :robot]
        w[:, robot + extra :] = first.weight[:, robot:]
        new.mlp[0].weight.copy_(w)
        new.mlp[0].bias.copy_(first.bias)
        new.mlp[2].load_state_dict(old.mlp[2].state_dict())
    head.state_embedder = new
    head.state_dim = first.in_features + extra
    policy.config.action.state_dim = head.state_dim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", nargs="+", default=["runs/v2/demos", "runs/v2/demos2"])
    ap.add_argument("--head-steps", type=int, default=6000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    policy = ST4VLAPolicy.load(args.checkpoint)
    if not policy.reads_state:
        raise SystemExit(f"{args.checkpoint} has no state token (trained without --state)")
    frames = load_frames(tuple(args.data), policy.config.image_size, policy.chunk_length)
    fill_tcp_poses(frames)
    widen_robot_state(policy, TCP_POSITION)
    policy.config.state_tcp = True  # the DiT's robot state is now [joints, TCP position]
    policy.set_statistics(statistics_for(frames, tcp=True), UNNORM_KEY)  # same actions, wider state block
    normalizer = ActionNormalizer(policy.statistics, UNNORM_KEY)
    log = train_head(policy, frames, normalizer, HeadPhaseConfig(steps=args.head_steps), out, seed=0)
    policy.model.eval()
    policy.save(out / "final")
    (out / "log.json").write_text(json.dumps(log, indent=1))


if __name__ == "__main__":
    main()
