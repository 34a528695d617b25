"""Do a checkpoint's visual tokens say WHICH object is there? A linear probe for the object's name.

grounding_breakdown.py shows stage 1 failing to choose the named object among several. That is
either the features (the visual tokens do not tell a red cube from a green one) or the binding (the
language model does not use the name to pick among tokens that do). This probe separates the two.

On one-object scenes (`workbench train data --scenes-distractors 0`), the visual token that holds
the object's centre is read at two depths: the language model's input (the vision tower and
merger's output) and its last layer. Image tokens come before the question, so neither depends on
what is asked. Ridge regression to the one-hot name is fitted on the first scenes and scored on the
rest (accuracy; chance is the most frequent name's share). Freshly initialised weights give the
floor of what the pixels carry through an untrained network.

    python scripts/experiments/name_probe.py --data runs/v2/scenes_one \
        --checkpoint runs/v5/stage1_m2_long/final
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from tqdm import tqdm

from workbench.policy.policy import ST4VLAPolicy
from workbench.train.data import load_frames

NEUTRAL_PROMPT = "Describe the image."  # irrelevant to image tokens (causal attention), needed to build a row


def token_under(point: tuple[float, float], frame, rows: int, cols: int) -> int:
    """Raster index of the visual token whose image cell holds `point` (pixels of the raw render)."""
    r = min(int(point[1] / frame.orig_height * rows), rows - 1)
    c = min(int(point[0] / frame.orig_width * cols), cols - 1)
    return r * cols + c


@torch.no_grad()
def object_token_features(policy: ST4VLAPolicy, frames, batch: int = 32) -> dict[str, np.ndarray]:
    """[N, hidden] features of the visual token under each scene's object, at the LM's input and output."""
    vlm = policy.model.qwen_vl_interface
    feats: dict[str, list[np.ndarray]] = {"lm_input": [], "lm_last_layer": []}
    for start in tqdm(range(0, len(frames), batch), desc="features", unit="batch"):
        chunk = frames[start : start + batch]
        inputs = vlm.build_inputs([[f.image] for f in chunk], [NEUTRAL_PROMPT] * len(chunk))
        states = vlm.forward(inputs).hidden_states  # (layers + 1) x [B, L, hidden]
        rows, cols = vlm.image_token_grids(inputs)[0]
        for b, f in enumerate(chunk):
            positions = (inputs["input_ids"][b] == vlm.image_token_id).nonzero().flatten()  # [rows*cols]
            token = token_under(f.ground_truth.objects[0].center, f.frame, rows, cols)
            feats["lm_input"].append(states[0][b, positions[token]].float().numpy())
            feats["lm_last_layer"].append(states[-1][b, positions[token]].float().numpy())
    return {k: np.stack(v) for k, v in feats.items()}


def ridge_accuracy(x: np.ndarray, labels: list[str], n_train: int, alpha: float = 1.0) -> float:
    names = sorted(set(labels))
    y = np.eye(len(names))[[names.index(label) for label in labels]]
    mean, std = x[:n_train].mean(0), x[:n_train].std(0) + 1e-6
    z = np.concatenate([(x - mean) / std, np.ones((len(x), 1))], axis=1)
    a, b = z[:n_train], y[:n_train]
    w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ b)
    return float(((z[n_train:] @ w).argmax(1) == y[n_train:].argmax(1)).mean())


def probe(policy: ST4VLAPolicy, data: str, scenes: int, train_share: float) -> dict[str, float]:
    frames = [f for f in load_frames(data, policy.config.image_size, 1) if f.ground_truth is not None]
    frames = [f for f in frames if len(f.ground_truth.objects) == 1][:scenes]
    labels = [f.ground_truth.objects[0].label for f in frames]
    n_train = int(train_share * len(frames))
    feats = object_token_features(policy, frames)
    test = labels[n_train:]
    out = {k: ridge_accuracy(v, labels, n_train) for k, v in feats.items()}
    out["chance"] = max(test.count(n) for n in set(test)) / len(test)
    out["names"], out["test_scenes"] = len(set(labels)), len(test)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", nargs="+", required=True)
    ap.add_argument("--data", required=True, help="one-object scenes")
    ap.add_argument("--scenes", type=int, default=1500)
    ap.add_argument("--train-share", type=float, default=0.7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = {}
    for path in args.checkpoint:
        trained = ST4VLAPolicy.load(path)
        fresh = ST4VLAPolicy.from_config(trained.config, tokenizer_dir=path, seed=1)
        for name, policy in ((path, trained), (f"{path} (fresh weights)", fresh)):
            policy.model.eval()
            results[name] = probe(policy, args.data, args.scenes, args.train_share)
    print(json.dumps(results, indent=1))
    print(
        "\n| weights | name from LM input token | from LM last layer | chance | test scenes |\n|---|---|---|---|---|"
    )
    for name, r in results.items():
        print(
            f"| {name} | {r['lm_input']:.2f} | {r['lm_last_layer']:.2f} | {r['chance']:.2f} | {r['test_scenes']} |"
        )


if __name__ == "__main__":
    main()
