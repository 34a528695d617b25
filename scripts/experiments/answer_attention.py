"""Where does the language model look when it answers about a named object? (a diagnostic)

The ninth session found a checkpoint that tells whether a named object is on the table (AUC of P(yes)
within a name 0.93) yet, asked to locate it, lands on the right object no more often than the recipe.
This script asks, for each object of each test scene, two questions about it, teacher-forced:

- "Is there a <name> in the image?" read at the position that predicts "Yes";
- "Locate the <name>" read at the position that predicts the box's first coordinate
  (after `[{"label": "<name>", "bbox_2d": [`).

At that position it takes the language model's attention over the visual tokens, per layer and head,
and reports the share on the tokens under the named object and on those under the other objects,
each divided by their share of the tokens ("lift": 1 means no preference, 16 tokens per image).
`locate_prefix` takes, per layer and head, the highest (weighted) lift at any position after the
image up to the first coordinate (the question's name and the answer's label included), in case the
looking was done before the box.
The `*_weighted` figures weigh each token's attention by the norm of what it adds to the residual
stream through that head (||W_o,h v_j||, Kobayashi et al. 2020): visual tokens are much louder than
words and need not be equally loud, so a flat attention can still read mostly one object.
If existence looks at the named object and "Locate" does not, the box answer is not read from where
the name was matched.

    python scripts/experiments/answer_attention.py --checkpoint runs/v9/stage1_bind_s0/final \
        --data runs/v5/scenes_test --episodes 60
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from workbench import spatial
from workbench.policy.policy import ST4VLAPolicy
from workbench.policy.prompts import exists_question, object_question
from workbench.policy.vlm import IGNORE_INDEX
from workbench.train.pointing import cells_under, geometry_spans

sys.path.insert(0, str(Path(__file__).parent))
from grounding_breakdown import first_frames  # noqa: E402


def cells_of(box: spatial.Box, rows: int, cols: int, size: int) -> set[int]:
    """Row-major indices of the visual tokens whose cell overlaps the box (model-frame pixels)."""
    return set(cells_under(box.x1, box.y1, box.x2, box.y2, rows, cols, size))


def first_coordinate_index(tokenizer, answer: str) -> int | None:
    """Index (within the answer's tokens) of the first coordinate, or None if no token starts there."""
    start = geometry_spans(answer)[0][0]  # the first number's first character
    offsets = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return next((k for k, (a, _) in enumerate(offsets) if a == start and k > 0), None)


def lifts(attn: torch.Tensor, image_pos: torch.Tensor, named: set[int], others: set[int]) -> np.ndarray:
    """attn [layers, heads, L] at one query position -> [layers, heads, 2] lift on named / other tokens."""
    over = attn[:, :, image_pos].float()  # [layers, heads, 16]
    over = over / over.sum(-1, keepdim=True).clamp(min=1e-12)
    n = over.shape[-1]
    out = []
    for cells in (named, others):
        idx = sorted(cells)
        out.append(over[:, :, idx].sum(-1) / (len(idx) / n) if idx else torch.full(over.shape[:2], np.nan))
    return torch.stack(out, -1).numpy()


def value_norms(lm, hidden_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """[B, layers, heads, L]: the norm of what each token adds through each head (||W_o,h v||)."""
    out = []
    for layer, h in zip(lm.layers, hidden_states, strict=False):  # hidden_states[l] enters layer l
        att = layer.self_attn
        heads, kv_heads, d = att.config.num_attention_heads, att.config.num_key_value_heads, att.head_dim
        v = att.v_proj(layer.input_layernorm(h)).unflatten(-1, (kv_heads, d))  # [B, L, kv, d]
        v = v.repeat_interleave(heads // kv_heads, dim=2)  # [B, L, heads, d], as grouped-query attention
        w_o = att.o_proj.weight.unflatten(1, (heads, d))  # [hidden, heads, d]
        out.append(torch.einsum("blhd,ohd->bhlo", v, w_o).norm(dim=-1))  # [B, heads, L]
    return torch.stack(out, 1)


@torch.no_grad()
def measure(checkpoint: str, data: str, episodes: int) -> dict:
    torch.set_num_threads(1)
    policy = ST4VLAPolicy.load(checkpoint)
    policy.model.eval()
    vlm = policy.model.qwen_vl_interface
    vlm.model.set_attn_implementation("eager")  # attention weights are only returned by eager attention
    size = policy.config.image_size
    firsts = first_frames(data, size)
    results: dict[str, list[np.ndarray]] = {
        k: [] for k in ("exists", "locate", "exists_weighted", "locate_weighted", "locate_prefix")
    }
    for f in tqdm(firsts[:episodes], desc="attention at the answer", unit="scene"):
        boxes = [spatial.to_model(b, f.frame) for b in f.ground_truth.objects]  # model-frame pixels
        for i, box in enumerate(boxes):
            answer = spatial.format([f.ground_truth.objects[i]], f.frame)  # format maps to the model frame
            k = first_coordinate_index(vlm.tokenizer, answer)
            asks = [("exists", exists_question(box.label), "Yes", 0)]
            if k is not None:
                asks.append(("locate", object_question("box", box.label), answer, k))
            inputs = vlm.build_inputs(
                [[f.image]] * len(asks), [q for _, q, _, _ in asks], [a for _, _, a, _ in asks]
            )
            unlabelled = {key: v for key, v in inputs.items() if key != "labels"}
            out = vlm.forward(unlabelled, output_hidden_states=True, output_attentions=True)
            attn = torch.stack(out.attentions, 1)  # [B, layers, heads, L, L]
            loud = value_norms(vlm.model.model.language_model, out.hidden_states)  # [B, layers, heads, L]
            rows, cols = vlm.image_token_grids(inputs)[0]
            named = cells_of(box, rows, cols, size)
            others = (
                set().union(*[cells_of(b, rows, cols, size) for j, b in enumerate(boxes) if j != i]) - named
            )
            for b, (kind, _, _, k_answer) in enumerate(asks):
                start = int((inputs["labels"][b] != IGNORE_INDEX).nonzero()[0])  # first answer token
                pos = start + k_answer - 1  # the position that predicts answer token k_answer
                image_pos = (inputs["input_ids"][b] == vlm.image_token_id).nonzero().flatten()
                results[kind].append(lifts(attn[b, :, :, pos], image_pos, named, others))
                weighted = attn[b, :, :, pos] * loud[b]
                results[f"{kind}_weighted"].append(lifts(weighted, image_pos, named, others))
                if kind == "locate":  # every position after the image, up to the first coordinate
                    after = range(int(image_pos[-1]) + 1, pos + 1)
                    prefix = [lifts(attn[b, :, :, p] * loud[b], image_pos, named, others) for p in after]
                    results["locate_prefix"].append(np.max(prefix, 0))
    summary = {}
    for kind, rows_ in results.items():
        a = np.stack(rows_)  # [questions, layers, heads, 2]
        mean = np.nanmean(a, 0)  # [layers, heads, 2]
        summary[kind] = {
            "n": len(rows_),
            "named_lift_per_layer": [round(float(x), 2) for x in mean[:, :, 0].mean(1)],  # mean over heads
            "other_lift_per_layer": [round(float(x), 2) for x in mean[:, :, 1].mean(1)],
            "best_head": {
                "layer_head": [int(x) for x in np.unravel_index(np.argmax(mean[:, :, 0]), mean.shape[:2])],
                "named_lift": round(float(mean[:, :, 0].max()), 2),
                "other_lift": round(float(mean[:, :, 1].flat[np.argmax(mean[:, :, 0])]), 2),
            },
        }
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", nargs="+", required=True)
    ap.add_argument("--data", required=True, help="scenes never trained on")
    ap.add_argument("--episodes", type=int, default=60)
    args = ap.parse_args()
    report = {c: measure(c, args.data, args.episodes) for c in args.checkpoint}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
