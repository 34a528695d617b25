"""Why is a checkpoint's spatial answer off: the wrong object, or the right one placed loosely?

For every object of every scene (first frame of each episode of a dataset never trained on), the
checkpoint is asked "Locate the <name>" and the centre of its first box is classed as
  right      inside the named object's true box
  other      inside another object's box (it chose the wrong object)
  elsewhere  on no object, or unanswered
and likewise for the spatial prompt's own question, scored on the task's object to move. Of the answers
that land on an object, the share on the named one ("chose right") is set against chance: the mean
of 1 / (objects in the scene), what picking an object at random would score. The centre
error is RMS per axis as a fraction of the image, over all answers and over the "right" ones alone
(how precise it is once it has the right object): the unit of the oracle table in
research/training-notes.md, where the action expert needs ~0.03 or better.

`--detect` also asks "Detect every object" once per scene (for checkpoints trained with
`--detect-all`) and reports its recall: the share of the scene's objects that some answered box,
labelled with the object's name, has its centre inside.

`--exists` also asks "Is there a <name> in the image?" about each object of the scene and as many seen
objects that are absent (for checkpoints trained with `--exists`) and reports the share answered right,
yes and no apart, and the AUC of P(yes) within each name (0.5: the answer does not depend on the
image): whether the model can match a name against the image at all, without placing it.

    workbench train data --no-demos --scenes-out runs/v5/scenes_test --scenes-per-task 40 --scenes-seed 9000
    python research/experiments/grounding_breakdown.py --data runs/v5/scenes_test \
        --checkpoint runs/v5/stage1_m1/final runs/v5/stage1_m2/final
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np
import torch
from tqdm import tqdm

from workbench import spatial, spatial_metrics
from workbench.policy.policy import ST4VLAPolicy
from workbench.policy.prompts import (
    DETECT_QUESTION,
    exists_question,
    grounding_question,
    object_question,
)
from workbench.train.data import FrameItem, load_frames, seen_object_names

CLASSES = ("right", "other", "elsewhere")


def classify(
    answer: spatial.SpatialAnswer, truth, label: str
) -> tuple[str, tuple[float, float] | None, str | None]:
    """The class of the first box's centre, its offset (image fraction) from `label`'s centre, and the
    object it landed on (None when on none)."""
    boxes = [g for g in answer.geometry if isinstance(g, spatial.Box)]
    named = [b for b in truth.objects if b.label == label]
    if not boxes or not named:
        return "elsewhere", None, None
    centre = boxes[0].center
    offset = spatial_metrics.centre_offset(
        answer, named[0].center, answer.frame.orig_width, answer.frame.orig_height
    )
    if spatial_metrics.point_in_box(centre, named[0]):
        return "right", offset, label
    others = [b.label for b in truth.objects if b.label != label and spatial_metrics.point_in_box(centre, b)]
    return ("other", offset, others[0]) if others else ("elsewhere", offset, None)


def summarise(rows: list[tuple[str, tuple[float, float] | None, int]]) -> dict[str, float]:
    """rows: (class, offset, objects in the scene) per question."""
    out = {c: sum(r[0] == c for r in rows) / len(rows) for c in CLASSES}
    on_object = [r for r in rows if r[0] != "elsewhere"]
    out["chose_right"] = sum(r[0] == "right" for r in on_object) / max(1, len(on_object))
    out["chance"] = sum(1.0 / r[2] for r in on_object) / max(1, len(on_object))
    out["centre_rms"] = spatial_metrics.rms(
        [r[1] if r[1] is not None else spatial_metrics.UNANSWERED_OFFSET for r in rows]
    )
    out["centre_rms_when_right"] = spatial_metrics.rms([r[1] for r in rows if r[0] == "right"])
    out["n"] = len(rows)
    return out


def detect_recall(answer: spatial.SpatialAnswer, truth) -> float:
    """Share of the true objects that an answered box with the same label is centred on."""
    boxes = [g for g in answer.geometry if isinstance(g, spatial.Box)]
    found = [
        any(b.label == t.label and spatial_metrics.point_in_box(b.center, t) for b in boxes)
        for t in truth.objects
    ]
    return sum(found) / len(found)


def per_object(confusions: list[tuple[str, str | None]]) -> dict[str, dict]:
    """For each named object: how often it was found, and which object it was most often taken for."""
    out = {}
    for name in sorted({n for n, _ in confusions}):
        landed = [x for n, x in confusions if n == name]
        wrong = Counter(x for x in landed if x is not None and x != name)
        out[name] = {
            "n": len(landed),
            "right": sum(x == name for x in landed) / len(landed),
            "other": sum(wrong.values()) / len(landed),
            "taken_for": wrong.most_common(2),
        }
    return out


def existence_asks(frames: list[FrameItem], seed: int = 0) -> list[tuple[FrameItem, str, bool]]:
    """(frame, question, truth): each object of each scene, and as many absent seen objects."""
    rng = np.random.default_rng(seed)
    asks = []
    for f in frames:
        present = [b.label for b in f.ground_truth.objects]
        absent = [n for n in seen_object_names() if n not in present]
        picked = rng.choice(len(absent), min(len(present), len(absent)), replace=False)
        asks += [(f, exists_question(n), True) for n in present]
        asks += [(f, exists_question(absent[i]), False) for i in picked]
    return asks


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a random positive scores above a random negative), ties counting half."""
    return float(np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])))


def within_name_auc(p: np.ndarray, truth: np.ndarray, names: np.ndarray) -> float:
    """The AUC of scores `p` against `truth` within each name (question), averaged weighted by questions."""
    per_name = [
        (auc(p[(names == q) & truth], p[(names == q) & ~truth]), int((names == q).sum()))
        for q in sorted(set(names))
        if ((names == q) & truth).any() and ((names == q) & ~truth).any()
    ]
    return float(np.average([a for a, _ in per_name], weights=[n for _, n in per_name]))


def existence_accuracy(vlm, frames: list[FrameItem], batch: int) -> dict[str, float]:
    """Right answers, present and absent apart, and the AUC of P(yes) within each name (averaged,
    weighted by questions): 0.5 when the answer does not depend on the image. Pooled over names, the
    AUC would also credit knowing which objects are usually on the table (the plate, the basket)."""
    asks = existence_asks(frames)
    yes_id, no_id = (vlm.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in ("Yes", "No"))
    p_yes = []
    for start in tqdm(range(0, len(asks), batch), desc="is there a <name>", unit="batch"):
        chunk = asks[start : start + batch]
        inputs = vlm.build_inputs([[a[0].image] for a in chunk], [a[1] for a in chunk])
        logits = vlm.forward(inputs, output_hidden_states=False).logits[:, -1, [yes_id, no_id]]
        p_yes += torch.softmax(logits.float(), -1)[:, 0].tolist()
    p, truth = np.array(p_yes), np.array([a[2] for a in asks])
    return {
        "yes_right": float(np.mean(p[truth] > 0.5)),
        "no_right": float(np.mean(p[~truth] <= 0.5)),
        "auc": within_name_auc(p, truth, np.array([a[1] for a in asks])),
        "n": len(asks),
    }


def first_frames(data: str, image_size: int) -> list[FrameItem]:
    """The first frame of each episode (scene) that has ground truth, in episode order."""
    frames = [f for f in load_frames(data, image_size, 1) if f.ground_truth is not None]
    return sorted({f.episode: f for f in reversed(frames)}.values(), key=lambda f: f.episode)


@torch.no_grad()
def breakdown(
    checkpoint: str,
    data: str,
    episodes: int | None = None,
    batch: int = 16,
    detect: bool = False,
    exists: bool = False,
) -> dict[str, dict[str, float]]:
    torch.set_num_threads(1)
    policy = ST4VLAPolicy.load(checkpoint)
    policy.model.eval()
    vlm = policy.model.qwen_vl_interface
    firsts = first_frames(data, policy.config.image_size)[:episodes]
    asks: list[tuple[FrameItem, str, str, str]] = []  # (frame, question, label, kind)
    for f in firsts:
        asks += [(f, object_question("box", b.label), b.label, "object") for b in f.ground_truth.objects]
        asks.append((f, grounding_question("box", f.instruction), f.ground_truth.object_label, "task"))
    rows: dict[str, list] = {"object": [], "task": []}
    confusions: list[tuple[str, str | None]] = []  # (named, landed on) for "Locate the <name>"
    if detect:
        recalls = []
        for start in tqdm(range(0, len(firsts), batch), desc="detect every object", unit="batch"):
            chunk = firsts[start : start + batch]
            inputs = vlm.build_inputs([[f.image] for f in chunk], [DETECT_QUESTION] * len(chunk))
            for f, text in zip(chunk, vlm.generate(inputs, 128), strict=True):
                recalls.append(detect_recall(spatial.parse(text, f.frame), f.ground_truth))
    for start in tqdm(range(0, len(asks), batch), desc=f"ask {checkpoint}", unit="batch"):
        chunk = asks[start : start + batch]
        texts = vlm.generate(vlm.build_inputs([[a[0].image] for a in chunk], [a[1] for a in chunk]), 64)
        for (f, _, label, kind), text in zip(chunk, texts, strict=True):
            cls, offset, landed = classify(spatial.parse(text, f.frame), f.ground_truth, label)
            rows[kind].append((cls, offset, len(f.ground_truth.objects)))
            if kind == "object":
                confusions.append((label, landed))
    out = {kind: summarise(r) for kind, r in rows.items()}
    out["per_object"] = per_object(confusions)
    if exists:
        out["exists"] = existence_accuracy(vlm, firsts, batch)
    if detect:
        out["detect"] = {"recall": sum(recalls) / len(recalls), "n": len(recalls)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", nargs="+", required=True)
    ap.add_argument("--data", required=True, help="scenes or demonstrations never trained on")
    ap.add_argument("--episodes", type=int, default=None, help="the first frames of this many (default all)")
    ap.add_argument("--detect", action="store_true", help="also ask 'Detect every object' (recall)")
    ap.add_argument("--exists", action="store_true", help="also ask 'Is there a <name>?' (accuracy)")
    args = ap.parse_args()
    results = {
        c: breakdown(c, args.data, args.episodes, detect=args.detect, exists=args.exists)
        for c in args.checkpoint
    }
    print(json.dumps(results, indent=1))
    print(
        "\n| checkpoint | question | right / other / elsewhere | on an object: chose right (chance) "
        "| centre error, all / when right | n |"
    )
    print("|---|---|---|---|---|---|")
    for c, kinds in results.items():
        for kind, s in kinds.items():
            if kind == "per_object":
                continue
            if kind == "detect":
                print(f"| {c} | detect every object: recall {s['recall']:.2f} | | | | {s['n']} |")
                continue
            if kind == "exists":
                print(
                    f"| {c} | is there a <name>: right when present {s['yes_right']:.2f}, "
                    f"when absent {s['no_right']:.2f}, AUC of P(yes) within a name {s['auc']:.2f} | | | | {s['n']} |"
                )
                continue
            print(
                f"| {c} | {kind} | {s['right']:.2f} / {s['other']:.2f} / {s['elsewhere']:.2f} "
                f"| {s['chose_right']:.2f} ({s['chance']:.2f}) "
                f"| {s['centre_rms']:.3f} / {s['centre_rms_when_right']:.3f} | {s['n']} |"
            )

    for c, kinds in results.items():
        print(f"\n{c}: 'Locate the <name>' per object (right / other, most often taken for)")
        for name, r in kinds["per_object"].items():
            taken = ", ".join(f"{x} {k}" for x, k in r["taken_for"])
            print(f"  {name:14s} {r['right']:.2f} / {r['other']:.2f}  n={r['n']:3d}  {taken}")


if __name__ == "__main__":
    main()
