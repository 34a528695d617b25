"""Linear probe: do a checkpoint's features still carry what the action expert needs?

For frames of recorded demonstrations, take three feature sets of one checkpoint:
  * `image`: the VLM's last-layer states at the image-token positions, concatenated;
  * `pooled`: the last-layer states averaged over every token;
  * `queries`: the query former's output (what the DiT head reads), concatenated.
Fit ridge regression on the frames of some episodes and score R^2 on the frames of other episodes,
for the robot state (arm joints, finger joint), where the object to move is in the image, the
expert's translation and the expert's gripper command. R^2 near 0 means the feature set does not carry it (linearly).

    python research/experiments/linear_probe.py --checkpoint assets/checkpoints/st4vla-tiny
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


@torch.no_grad()
def features(
    policy: ST4VLAPolicy, images: list[np.ndarray], instructions: list[str]
) -> dict[str, np.ndarray]:
    model = policy.model.eval()
    vlm = model.qwen_vl_interface
    imgs = [[im] for im in images]
    prompts = [policy.prompt(i) for i in instructions]
    inputs = vlm.build_inputs(imgs, prompts)
    if policy.config.condition_on_answer:  # then the prompt and its own answer, as at control time
        inputs = vlm.build_inputs(imgs, prompts, answers=policy.answer_spatial_prompt(imgs, instructions))
        inputs.pop("labels")
    layers, _ = model.vlm_hidden_states(inputs)
    last = layers[-1]  # [B, L, H]
    is_image = inputs["input_ids"] == vlm.model.config.image_token_id  # [B, L]
    n = int(is_image[0].sum())
    image = last[is_image].reshape(len(images), n * last.shape[-1])  # [B, N*H]
    mask = inputs["attention_mask"].unsqueeze(-1).float()
    pooled = (last * mask).sum(1) / mask.sum(1)  # [B, H]
    cond, _ = model.condition(inputs, imgs)  # [B, Q, W]
    return {"image": image.numpy(), "pooled": pooled.numpy(), "queries": cond.flatten(1).numpy()}


def collect(policy, data: str, episodes: np.ndarray, every: int, batch: int = 32):
    ds = LeRobotDataset(data)
    rows = []
    for i in episodes:
        ep = ds.episode(int(i))
        for t in range(0, len(ep.frames), every):
            f = ep.frames[t]
            gt = f.ground_truth
            obj = next(k for k in gt.key_points if k.label == gt.object_label)
            rows.append((f.images[CAMERA], ep.task, f.state, f.action, (obj.x, obj.y)))
    feats: dict[str, list] = {}
    for s in tqdm(range(0, len(rows), batch), desc="features", unit="batch"):
        part = rows[s : s + batch]
        for k, v in features(policy, [r[0] for r in part], [r[1] for r in part]).items():
            feats.setdefault(k, []).append(v)
    state = np.stack([r[2] for r in rows]).astype(np.float64)
    action = np.stack([r[3] for r in rows]).astype(np.float64)
    targets = {
        "arm_joints": state[:, :7],
        "finger_joint": state[:, -1:],
        "object_xy": np.array([r[4] for r in rows], dtype=np.float64),
        "action_xyz": action[:, :3],
        "gripper_command": action[:, 6:7],
    }
    merged = {k: np.concatenate(v).astype(np.float64) for k, v in feats.items()}
    return merged, targets, action  # action: the expert's whole 7-D action [N, 7]


def ridge_r2(x_tr, y_tr, x_te, y_te, lam: float) -> float:
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
    ym = y_tr.mean(0)
    # Dual form: the feature count can exceed the frame count.
    k = x_tr @ x_tr.T
    alpha = np.linalg.solve(k + lam * np.eye(len(k)), y_tr - ym)
    pred = x_te @ (x_tr.T @ alpha) + ym
    ss_res = ((y_te - pred) ** 2).sum(0)
    ss_tot = ((y_te - y_te.mean(0)) ** 2).sum(0) + 1e-12
    return float(np.mean(1 - ss_res / ss_tot))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", default="runs/v2/demos")
    ap.add_argument("--train-episodes", type=int, default=60)
    ap.add_argument("--test-episodes", type=int, default=20)
    ap.add_argument("--every", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    policy = ST4VLAPolicy.load(args.checkpoint)
    n = LeRobotDataset(args.data).num_episodes
    order = np.random.default_rng(0).permutation(n)
    tr = order[: args.train_episodes]
    te = order[args.train_episodes : args.train_episodes + args.test_episodes]
    f_tr, y_tr, _ = collect(policy, args.data, tr, args.every)
    f_te, y_te, _ = collect(policy, args.data, te, args.every)
    report = {"frames": [len(y_tr["action_xyz"]), len(y_te["action_xyz"])]}
    for fname in f_tr:
        for yname in y_tr:
            best = max(
                ridge_r2(f_tr[fname], y_tr[yname], f_te[fname], y_te[yname], lam)
                for lam in (1.0, 10.0, 100.0, 1000.0, 10000.0)
            )  # the best regulariser is chosen on the test episodes: an upper bound, fine for a probe
            report[f"{fname}->{yname}"] = round(best, 3)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
