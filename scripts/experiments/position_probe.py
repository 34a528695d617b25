"""Does a visual token know WHERE it is? A linear probe for each visual token's place in the grid.

To point at a named object, the language model can find the object's tokens by content (a head that
matches the name, as the existence question grows one), but what that head reads out is a weighted sum
of the tokens' values, and M-RoPE puts position into the attention scores only, never into the
values. So the box can be copied from the named object's tokens only if their content says where
they are. Qwen2.5-VL's vision tower has no absolute position embedding either (2-D RoPE only): a
token can learn its place from the image's edges or, in the language model, by counting the tokens
before it under the causal mask.

This probe reads the hidden state of every visual token at the language model's input and after each
layer, and fits ridge regression to the token's row and column (one-hot, 4 x 4 for the demo model),
on the first scenes, scored on the rest (accuracy; chance is 1/rows and 1/cols). `object` keeps
only the token under a lone object's centre, the one a pointing head would read.

    python scripts/experiments/position_probe.py --data runs/v2/scenes_one \
        --checkpoint runs/v5/stage1_m2_long/final
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from workbench.policy.policy import ST4VLAPolicy
from workbench.train.data import load_frames

sys.path.insert(0, str(Path(__file__).parent))
from name_probe import NEUTRAL_PROMPT, ridge_accuracy, token_under  # noqa: E402


@torch.no_grad()
def visual_states(policy: ST4VLAPolicy, frames, batch: int = 32):
    """[layers + 1, N, tokens, hidden] hidden states at the visual tokens, and each frame's object token."""
    vlm = policy.model.qwen_vl_interface
    states_out, object_token = [], []
    for start in tqdm(range(0, len(frames), batch), desc="hidden states", unit="batch"):
        chunk = frames[start : start + batch]
        inputs = vlm.build_inputs([[f.image] for f in chunk], [NEUTRAL_PROMPT] * len(chunk))
        states = torch.stack(vlm.forward(inputs).hidden_states)  # [layers + 1, B, L, hidden]
        rows, cols = vlm.image_token_grids(inputs)[0]
        for b, f in enumerate(chunk):
            positions = (inputs["input_ids"][b] == vlm.image_token_id).nonzero().flatten()
            states_out.append(states[:, b, positions].float().numpy())
            object_token.append(token_under(f.ground_truth.objects[0].center, f.frame, rows, cols))
    return np.stack(states_out, 1), np.array(object_token), (rows, cols)


def probe(policy: ST4VLAPolicy, data: str, scenes: int, train_share: float) -> dict[str, list[float]]:
    frames = [f for f in load_frames(data, policy.config.image_size, 1) if f.ground_truth is not None][
        :scenes
    ]
    states, object_token, (rows, cols) = visual_states(policy, frames)
    n_train = int(train_share * len(frames))
    n_tokens = rows * cols
    row_of, col_of = [str(t // cols) for t in range(n_tokens)], [str(t % cols) for t in range(n_tokens)]
    out: dict[str, list[float]] = {"all_row": [], "all_col": [], "object_row": [], "object_col": []}
    for layer in states:  # [N, tokens, hidden]
        flat = layer.reshape(-1, layer.shape[-1])  # scene-major, so the first n_train scenes come first
        out["all_row"].append(ridge_accuracy(flat, row_of * len(frames), n_train * n_tokens))
        out["all_col"].append(ridge_accuracy(flat, col_of * len(frames), n_train * n_tokens))
        at_object = layer[np.arange(len(frames)), object_token]
        out["object_row"].append(ridge_accuracy(at_object, [row_of[t] for t in object_token], n_train))
        out["object_col"].append(ridge_accuracy(at_object, [col_of[t] for t in object_token], n_train))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", nargs="+", required=True)
    ap.add_argument("--data", required=True, help="scenes (the first object of each is 'the object')")
    ap.add_argument("--scenes", type=int, default=600)
    ap.add_argument("--train-share", type=float, default=0.7)
    ap.add_argument("--fresh", action="store_true", help="also probe the same architecture, fresh weights")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = {}
    for path in args.checkpoint:
        trained = ST4VLAPolicy.load(path)
        todo = [(path, trained)]
        if args.fresh:
            todo.append(
                (f"{path} (fresh)", ST4VLAPolicy.from_config(trained.config, tokenizer_dir=path, seed=1))
            )
        for name, policy in todo:
            policy.model.eval()
            results[name] = probe(policy, args.data, args.scenes, args.train_share)
    print(json.dumps(results, indent=1))
    print(
        "\n| weights | row / column of every visual token, per depth (LM input, after each layer) | same, token under the object |"
    )
    print("|---|---|---|")
    for name, r in results.items():
        every = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(r["all_row"], r["all_col"], strict=True))
        obj = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(r["object_row"], r["object_col"], strict=True))
        print(f"| {name} | {every} | {obj} |")


if __name__ == "__main__":
    main()
