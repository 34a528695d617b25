"""Stage 0 (experiment): teach the vision tower what the catalog's objects are, before grounding.

Upstream's Qwen2.5-VL comes with a vision tower pre-trained on billions of images; the demo model's
starts from nothing, and stage 1 barely teaches it identity (name_probe.py: the visual token under
an object names it 72% of the time after 9,000 stage-1 steps, 67% with fresh weights). This trains
the vision tower and merger alone to say, for every visual token, which seen object's centre lies
in it (or none), with a linear head that is thrown away. The language model, query former and DiT
keep their initial weights (the same seed as stage 1), so a stage 1 started from this checkpoint
(`workbench train stage1 --init`) differs from a fresh one only in the vision side.

    python scripts/experiments/vision_pretrain.py --data runs/v2/scenes_one runs/v2/scenes \
        --tokenizer runs/v5/stage1_m2_long/tokenizer --out runs/v6/stage0

`--boxes` also has each token that holds an object's centre regress that object's box: centre, width
and height as fractions of the image (L1), so that the features carry the geometry a box answer
needs, not only the identity. The centre is absolute, not within the token's cell: the language
model's rotary positions only make attention relative, so a frozen token must say where it is.
(`--boxes cell` regresses the centre within the cell instead, the first version.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from name_probe import token_under
from torch import nn
from tqdm import tqdm

from workbench.policy.policy import ST4VLAPolicy
from workbench.sim import catalog
from workbench.train.common import model_size, seed_everything
from workbench.train.optim import OptimConfig, build_optimizer, build_scheduler, optimizer_step, smoothed
from workbench.train.stage1 import load_training_frames

NONE_WEIGHT = 0.2  # most tokens hold no object centre; they still count, at a fifth


def token_labels(frame, rows: int, cols: int, names: list[str]) -> list[int]:
    """Per visual token (raster order): 0 for none, 1 + the index of the object whose centre is in it."""
    labels = [0] * (rows * cols)
    for box in frame.ground_truth.objects:
        if box.label in names:
            labels[token_under(box.center, frame.frame, rows, cols)] = 1 + names.index(box.label)
    return labels


def token_boxes(frame, rows: int, cols: int, cell: bool) -> tuple[list[list[float]], list[bool]]:
    """Per visual token: its object's box (centre x, y; w, h; fractions of the image, or with `cell`
    the centre as a fraction of the token's cell) and whether it holds an object's centre."""
    targets, has = [[0.0] * 4 for _ in range(rows * cols)], [False] * (rows * cols)
    w, h = frame.frame.orig_width, frame.frame.orig_height
    for box in frame.ground_truth.objects:
        i = token_under(box.center, frame.frame, rows, cols)
        cx, cy = box.center[0] / w, box.center[1] / h
        if cell:
            cx, cy = cx * cols - int(cx * cols), cy * rows - int(cy * rows)
        targets[i] = [cx, cy, (box.x2 - box.x1) / w, (box.y2 - box.y1) / h]
        has[i] = True
    return targets, has


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--tokenizer", required=True, help="the tokenizer stage 1 would build from the same data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--heldout-episodes", type=int, default=20, help="as stage 1: never trained on")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--boxes", nargs="?", const="image", choices=("image", "cell"), default=None,
        help="also regress each object's box from its token (centre over the image, or within the cell)",
    )  # fmt: skip
    args = ap.parse_args()
    seed_everything(args.seed, 1)
    size = model_size("demo")
    frames, held = [], []
    for root in args.data:  # each dataset's last episodes stay out, as stage 1 holds them out
        t, h = load_training_frames((root,), size.image_size, size.chunk, args.heldout_episodes)
        frames, held = frames + t, held + h
    frames = [f for f in frames if f.ground_truth is not None and f.ground_truth.objects]
    names = sorted(s.name for s in catalog.objects(split="seen"))
    policy = ST4VLAPolicy.from_config(
        size.config(), tokenizer_dir=args.tokenizer, seed=args.seed, name="stage0"
    )
    vlm = policy.model.qwen_vl_interface
    inner = vlm.model.model  # Qwen2_5_VLModel: .visual is the vision tower and merger
    head = nn.Linear(policy.config.vlm.hidden_size, 1 + len(names) + (4 if args.boxes else 0))
    weight = torch.tensor([NONE_WEIGHT] + [1.0] * len(names))
    optim = OptimConfig(lr=args.lr, warmup_steps=50)
    params = list(inner.visual.parameters()) + list(head.parameters())
    opt = build_optimizer({"vlm": params}, optim)  # the base rate: lr_vlm is unset
    sched = build_scheduler(opt, optim, args.steps)
    rng = np.random.default_rng(args.seed)
    log, running = [], None

    def logits_and_labels(batch):
        pix = vlm.image_processor(images=[f.image for f in batch], return_tensors="pt")
        grid = pix["image_grid_thw"]
        embeds = inner.get_image_features(pix["pixel_values"], grid).pooler_output  # per image [rows*cols, H]
        m = policy.config.vlm.spatial_merge_size
        rows, cols = int(grid[0, 1]) // m, int(grid[0, 2]) // m
        labels = torch.tensor([token_labels(f, rows, cols, names) for f in batch]).flatten()
        boxes = [token_boxes(f, rows, cols, args.boxes == "cell") for f in batch]
        targets = torch.tensor([t for b in boxes for t in b[0]])  # [B*rows*cols, 4]
        has = torch.tensor([x for b in boxes for x in b[1]])  # [B*rows*cols]
        return head(torch.cat(list(embeds))), labels, targets, has

    classes = 1 + len(names)  # the head's outputs: classes, then (with --boxes) the 4 box numbers

    def box_l1(out, targets, has):
        return (out[has, classes:] - targets[has]).abs().mean()

    def loss_of(out, labels, targets, has):
        loss = nn.functional.cross_entropy(out[:, :classes], labels, weight=weight)
        return loss + 4 * box_l1(out, targets, has) if args.boxes else loss

    for step in tqdm(range(1, args.steps + 1), desc="stage 0 vision", unit="step"):
        batch = [frames[int(i)] for i in rng.integers(len(frames), size=args.batch_size)]
        loss = loss_of(*logits_and_labels(batch))
        optimizer_step(loss, params, opt, sched, optim.clip_norm)
        running = smoothed(running, loss.item())
        if step % 250 == 0 or step == args.steps:
            with torch.no_grad():
                out, labels, targets, has = logits_and_labels(held[:64])
                on_object = labels > 0
                acc = (out[:, :classes].argmax(-1)[on_object] == labels[on_object]).float().mean().item()
                l1 = box_l1(out, targets, has).item() if args.boxes else None
            log.append(
                {"step": step, "loss": round(running, 4), "heldout_object_token_accuracy": round(acc, 3),
                 "heldout_box_l1": l1}
            )  # fmt: skip
            tqdm.write(json.dumps(log[-1]))
    out = Path(args.out)
    card = "# stage 0: vision tower pre-trained on object identity\n\n" + "\n".join(
        json.dumps(r) for r in log
    )
    policy.save(out / "final", card=card)
    (out / "log.json").write_text(json.dumps(log, indent=1))
    print("stage-0 checkpoint:", out / "final")


if __name__ == "__main__":
    main()
