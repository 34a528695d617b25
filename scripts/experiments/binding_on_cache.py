"""Can the language model learn to match a name against the image, given good visual tokens? (a diagnostic)

The seventh session found that the demo VLM, asked only "Is there a <name> in the image?", gives the
same answer whatever the image for 1,000 steps, although a linear probe reads the object's name from
the visual token under it. Stage 1 trains the vision tower too, so each step costs a vision forward
and backward pass. This script takes the vision tower out of the loop: it runs a checkpoint's vision
tower and merger once over every scene, keeps the 16 visual tokens per image, and trains only the
real Qwen2.5-VL language model on top (transformers' `mm_encoder_outputs` path: the same forward as
training, with the image features precomputed and fixed). The question it answers: given visual
tokens that are known to carry the object's name (stage 0's), does a language model learn to match a
name against them? (A step of 32 questions still takes ~0.7 s on one thread: the language model, not
the vision tower, is most of stage 1's cost.)

    python scripts/experiments/binding_on_cache.py --checkpoint runs/v6/stage0/final \
        --data runs/v2/scenes_one runs/v2/scenes --test runs/v5/scenes_test --steps 5000 --out runs/v8/bind

`--lm fresh` (default) trains a newly initialised language model (the checkpoint's sizes, `--layers`
to change its depth); `--lm checkpoint` continues the checkpoint's own. `--visual-scale s` multiplies
the cached visual tokens (the stage-1 models' tokens enter the language model ~25x louder than words).
Scored like `grounding_breakdown.py --exists`: the AUC of P(yes) within each name on test scenes.
`--save DIR` writes the result as a checkpoint (the source's vision tower, the trained language
model), for `workbench train stage1 --init DIR`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers.modeling_outputs import BaseModelOutputWithPooling

from workbench.policy.policy import ST4VLAPolicy
from workbench.policy.prompts import exists_question
from workbench.train.data import FrameItem, load_frames, seen_object_names
from workbench.train.optim import OptimConfig, build_scheduler, optimizer_step, smoothed

sys.path.insert(0, str(Path(__file__).parent))
from grounding_breakdown import existence_asks, within_name_auc  # noqa: E402


@torch.no_grad()
def visual_tokens(policy: ST4VLAPolicy, frames: list[FrameItem], batch: int = 64) -> torch.Tensor:
    """[N, tokens, hidden] the language model's visual input tokens for each frame."""
    vlm = policy.model.qwen_vl_interface
    out = []
    for start in tqdm(range(0, len(frames), batch), desc="visual tokens", unit="batch"):
        chunk = frames[start : start + batch]
        inputs = vlm.build_inputs([[f.image] for f in chunk], ["."] * len(chunk))
        feats = vlm.model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
        out += list(feats.pooler_output)
    return torch.stack(out)


def scene_frames(roots: list[str], image_size: int, limit: int | None = None) -> list[FrameItem]:
    frames = [f for r in roots for f in load_frames(r, image_size, 1) if f.ground_truth is not None]
    return frames[:limit] if limit else frames


def existence_draw(frames: list[FrameItem], n: int, rng: np.random.Generator) -> list[tuple[int, str, str]]:
    """n balanced (frame index, question, answer): a present object or an absent seen one, half each."""
    names, out = seen_object_names(), []
    while len(out) < n:
        i = int(rng.integers(len(frames)))
        present = [b.label for b in frames[i].ground_truth.objects]
        if rng.random() < 0.5:
            out.append((i, exists_question(present[int(rng.integers(len(present)))]), "Yes"))
        else:
            absent = [x for x in names if x not in present]
            out.append((i, exists_question(absent[int(rng.integers(len(absent)))]), "No"))
    return out


def lm_inputs(vlm, feats: torch.Tensor, rows: list[tuple[int, str, str | None]], frames, scale: float):
    """The batch as stage 1 builds it, with the image features taken from the cache."""
    answers = [a for _, _, a in rows] if rows[0][2] is not None else None
    inputs = vlm.build_inputs([[frames[i].image] for i, _, _ in rows], [q for _, q, _ in rows], answers)
    inputs.pop("pixel_values")
    pooled = tuple(feats[i] * scale for i, _, _ in rows)
    inputs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=pooled)}
    return inputs


@torch.no_grad()
def existence_auc(vlm, feats, frames, scale: float, batch: int = 64) -> dict[str, float]:
    asks = existence_asks(frames)
    index = {id(f): i for i, f in enumerate(frames)}
    yes_id, no_id = (vlm.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in ("Yes", "No"))
    p_yes = []
    for start in range(0, len(asks), batch):
        rows = [(index[id(f)], q, None) for f, q, _ in asks[start : start + batch]]
        logits = vlm.forward(lm_inputs(vlm, feats, rows, frames, scale), output_hidden_states=False).logits
        p_yes += torch.softmax(logits[:, -1, [yes_id, no_id]].float(), -1)[:, 0].tolist()
    p, truth, names = np.array(p_yes), np.array([a[2] for a in asks]), np.array([a[1] for a in asks])
    return {
        "auc": within_name_auc(p, truth, names),
        "right": float(np.mean((p > 0.5) == truth)),
        "p_yes_std_within_name": float(np.mean([p[names == q].std() for q in set(names)])),
    }


def language_model(source: ST4VLAPolicy, mode: str, layers: int | None, seed: int, checkpoint: str):
    if mode == "checkpoint":
        return source
    vlm_cfg = source.config.vlm
    if layers:
        vlm_cfg = dataclasses.replace(vlm_cfg, num_layers=layers)
    config = dataclasses.replace(source.config, vlm=vlm_cfg)
    fresh = ST4VLAPolicy.from_config(config, tokenizer_dir=checkpoint, seed=seed)
    # The cached visual tokens are the source's: a saved result must carry the same vision tower.
    visual = source.model.qwen_vl_interface.model.model.visual
    fresh.model.qwen_vl_interface.model.model.visual.load_state_dict(visual.state_dict())
    return fresh


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="whose vision tower makes the visual tokens")
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--test-scenes", type=int, default=100)
    ap.add_argument("--lm", choices=("fresh", "checkpoint"), default="fresh")
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--visual-scale", type=float, default=1.0)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--save", default=None, help="write the trained model here as a checkpoint")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    source = ST4VLAPolicy.load(args.checkpoint)
    size = source.config.image_size
    train, test = scene_frames(args.data, size), scene_frames([args.test], size, args.test_scenes)
    train_feats, test_feats = visual_tokens(source, train), visual_tokens(source, test)
    print(f"visual tokens: train {tuple(train_feats.shape)}, RMS {train_feats.pow(2).mean().sqrt():.2f}")

    policy = language_model(source, args.lm, args.layers, args.seed, args.checkpoint)
    vlm = policy.model.qwen_vl_interface
    params = [p for n, p in vlm.model.named_parameters() if ".visual." not in f".{n}"]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    sched = build_scheduler(opt, OptimConfig(warmup_steps=args.warmup), args.steps)
    rng, log, smooth = np.random.default_rng(args.seed), [], None

    def evaluate(step: int) -> None:
        vlm.eval()
        entry = {"step": step, "loss": smooth, **existence_auc(vlm, test_feats, test, args.visual_scale)}
        vlm.train()
        log.append(entry)
        (out / "log.json").write_text(json.dumps(log, indent=1))
        tqdm.write(json.dumps(entry))

    vlm.train()
    bar = tqdm(range(1, args.steps + 1), desc="language model on cached visual tokens", unit="step")
    for step in bar:
        rows = existence_draw(train, args.batch_size, rng)
        loss = vlm.forward(lm_inputs(vlm, train_feats, rows, train, args.visual_scale), False).loss
        optimizer_step(loss, params, opt, sched, clip_norm=1.0)
        smooth = smoothed(smooth, loss.item())
        bar.set_postfix(loss=f"{smooth:.3f}")
        if step % args.eval_every == 0 or step == args.steps:
            evaluate(step)
    if args.save:
        policy.save(args.save)
        print(f"checkpoint: {args.save}")


if __name__ == "__main__":
    main()
