"""MLP probe: how much of the expert's action do the robot state and a checkpoint's features give?

A two-layer MLP regresses the expert's action (standardised) from: the joint positions alone; a
checkpoint's query-former output or image-token states (linear_probe.py's features); and each of
those with the joint positions. Fitted on frames of 120 training demonstrations, scored on 30 others:
mean absolute translation/rotation error (against the training mean action) and gripper agreement.

    python scripts/experiments/mlp_probe.py --checkpoint assets/checkpoints/st4vla-tiny
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from linear_probe import collect

from workbench.episodes.lerobot import LeRobotDataset
from workbench.policy.policy import ST4VLAPolicy


def fit_and_score(x_tr, y_tr, x_te, y_te, steps: int = 1500) -> tuple[float, float]:
    xm, xs = x_tr.mean(0), x_tr.std(0) + 1e-6
    ym, ys = y_tr.mean(0), y_tr.std(0) + 1e-6
    xt = torch.tensor((x_tr - xm) / xs, dtype=torch.float32)
    yt = torch.tensor((y_tr - ym) / ys, dtype=torch.float32)
    net = torch.nn.Sequential(
        torch.nn.Linear(xt.shape[1], 256), torch.nn.GELU(), torch.nn.Dropout(0.2),
        torch.nn.Linear(256, 256), torch.nn.GELU(), torch.nn.Linear(256, y_tr.shape[1]),
    )  # fmt: skip
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=0.05)
    for _ in range(steps):
        idx = torch.randint(len(xt), (64,))
        loss = ((net(xt[idx]) - yt[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        pred = net(torch.tensor((x_te - xm) / xs, dtype=torch.float32)).numpy() * ys + ym
    return float(np.abs(pred[:, :6] - y_te[:, :6]).mean()), float(
        np.mean((pred[:, 6] > 0) == (y_te[:, 6] > 0))
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", default="runs/v2/demos")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    policy = ST4VLAPolicy.load(args.checkpoint)
    order = np.random.default_rng(0).permutation(LeRobotDataset(args.data).num_episodes)
    (f_tr, y_tr, a_tr), (f_te, y_te, a_te) = (
        collect(policy, args.data, e, 2) for e in (order[:120], order[120:150])
    )
    s_tr, s_te = y_tr["arm_joints"], y_te["arm_joints"]
    s_tr = np.concatenate([s_tr, y_tr["finger_joint"]], 1)
    s_te = np.concatenate([s_te, y_te["finger_joint"]], 1)
    print(f"mean-action error {np.abs(a_tr[:, :6].mean(0) - a_te[:, :6]).mean():.4f}")
    inputs = {"state only": (s_tr, s_te)}
    for k in ("queries", "image"):
        inputs[k] = (f_tr[k], f_te[k])
        inputs[f"{k} + state"] = (np.concatenate([f_tr[k], s_tr], 1), np.concatenate([f_te[k], s_te], 1))
    for name, (x_tr, x_te) in inputs.items():
        err, grip = fit_and_score(x_tr, a_tr, x_te, a_te)
        print(f"{name:16s} error {err:.4f}  gripper agreement {grip:.2f}")


if __name__ == "__main__":
    main()
