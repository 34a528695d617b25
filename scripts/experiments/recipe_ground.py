"""Stage-1 grounding recipe search: a tiny Qwen2.5-VL learns "locate the <object>" on simulator scenes.

Uses the project's own pieces (tiny_config, build_tokenizer, ST4VLAPolicy's VLM interface and its
grounding loss, the shared optimiser/schedule); only the data recipe and the knobs change. Scenes come
from recipe_data.py (.npz of raw renders + boxes). Held-out scenes (the last --heldout of the cache)
are never trained on; every --eval-every steps greedy decoding answers "Locate the <name>" for one
object of each and the mean box IoU is logged (plus the IoU with the best-matching object of the
scene, which separates "finds objects" from "finds the named one").

    python scripts/experiments/recipe_ground.py --name r224 --frame 224 --minutes 10
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from workbench import spatial, spatial_metrics
from workbench.policy.configuration import tiny_config
from workbench.policy.policy import ST4VLAPolicy
from workbench.policy.prompts import object_question
from workbench.policy.tokenizer import build_tokenizer, default_corpus
from workbench.spatial import Box
from workbench.train.optim import OptimConfig, build_optimizer, build_scheduler

ALL_QUESTION = "Locate every object in the image. Output their bounding boxes in [x1,y1,x2,y2] format."


@dataclass
class Recipe:
    name: str = "base"
    data: str = "runs/recipe/scenes_default.npz"
    data1: str = ""  # one-object scenes for the curriculum (recipe_data.py --distractors 0)
    curriculum: int = 0  # steps trained on one-object scenes only, before the multi-object scenes
    mix1: float = 0.25  # after the curriculum, the share of batches still drawn from one-object scenes
    number_init: int = 0  # smooth (sinusoidal) initial embeddings for the coordinate tokens
    frame: int = 112  # model input (112: 16 visual tokens, 224: 64 with merge 2)
    crop: tuple[int, int, int, int] | None = None  # x0 y0 x1 y1 of the render kept before resizing
    quant: int = 1  # coordinate bin in model pixels
    hidden: int = 192
    layers: int = 4
    heads: int = 4
    vision_depth: int = 3
    vision_hidden: int = 128
    vision_heads: int = 2
    lr: float = 3e-4
    warmup: int = 200
    steps: int = 3000  # cosine length
    minutes: float = 10.0  # wall-clock stop
    batch: int = 16
    per_image: int = 4  # questions per scene in a batch (batch / per_image scenes)
    all_frac: float = 0.0  # fraction of "locate every object" questions
    heldout: int = 64
    eval_every: int = 250
    seed: int = 0


@dataclass
class Scene:
    image: np.ndarray  # [S, S, 3] uint8 at the model frame
    boxes: list[Box]  # model-frame pixels


def load_scenes(r: Recipe, path: str) -> list[Scene]:
    d = np.load(path)
    images, boxes, labels, counts = d["images"], d["boxes"], d["labels"], d["counts"]
    h, w = images.shape[1:3]
    x0, y0, x1, y1 = r.crop or (0, 0, w, h)
    sx, sy = r.frame / (x1 - x0), r.frame / (y1 - y0)
    out, k = [], 0
    for img, n in zip(images, counts, strict=True):
        small = cv2.resize(img[y0:y1, x0:x1], (r.frame, r.frame), interpolation=cv2.INTER_AREA)
        bs = []
        for (bx1, by1, bx2, by2), lab in zip(boxes[k : k + n], labels[k : k + n], strict=True):
            b = [(bx1 - x0) * sx, (by1 - y0) * sy, (bx2 - x0) * sx, (by2 - y0) * sy]
            b = np.clip(b, 0, r.frame)
            if b[2] - b[0] >= 1 and b[3] - b[1] >= 1:  # objects cropped away are dropped
                bs.append(Box(*map(float, b), str(lab)))
        k += n
        if bs:
            out.append(Scene(small, bs))
    return out


def quantise(b: Box, q: int, size: int) -> Box:
    c = [min(size, max(0, int(round(v / q)) * q)) for v in (b.x1, b.y1, b.x2, b.y2)]
    return Box(*map(float, c), b.label)


def answer_for(boxes: list[Box], r: Recipe) -> str:
    return spatial.format([quantise(b, r.quant, r.frame) for b in boxes])


def sample_batch(scenes: list[Scene], r: Recipe, rng: np.random.Generator):
    images, questions, answers = [], [], []
    while len(images) < r.batch:
        s = scenes[int(rng.integers(len(scenes)))]
        for b in rng.permutation(len(s.boxes))[: r.per_image]:
            if rng.random() < r.all_frac:
                ordered = sorted(s.boxes, key=lambda x: (x.x1, x.y1))  # left to right: a fixed order
                q, a = ALL_QUESTION, answer_for(ordered, r)
            else:
                q, a = object_question("box", s.boxes[b].label), answer_for([s.boxes[b]], r)
            images.append([s.image])
            questions.append(q)
            answers.append(a)
    return images[: r.batch], questions[: r.batch], answers[: r.batch]


@torch.no_grad()
def evaluate(vlm, held: list[Scene], r: Recipe, batch: int = 16) -> dict[str, float]:
    rng = np.random.default_rng(123)  # the same question per held-out scene at every evaluation
    targets = [s.boxes[int(rng.integers(len(s.boxes)))] for s in held]
    ious, best, texts_seen = [], [], []
    for i in range(0, len(held), batch):
        chunk, tgt = held[i : i + batch], targets[i : i + batch]
        inputs = vlm.build_inputs([[s.image] for s in chunk], [object_question("box", t.label) for t in tgt])
        for s, t, text in zip(chunk, tgt, vlm.generate(inputs, max_new_tokens=32), strict=True):
            boxes = [g for g in spatial.parse(text).geometry if isinstance(g, Box)]
            ious.append(spatial_metrics.box_iou(boxes[0], t) if boxes else 0.0)
            best.append(max(spatial_metrics.box_iou(boxes[0], o) for o in s.boxes) if boxes else 0.0)
            texts_seen.append(text)
    return {"iou": float(np.mean(ious)), "any_object_iou": float(np.mean(best)), "example": texts_seen[0]}


def build(r: Recipe, scenes: list[Scene], out: Path):
    corpus = list(default_corpus()) + [ALL_QUESTION]
    for s in scenes[:400]:
        corpus += [object_question("box", b.label) for b in s.boxes] + [answer_for(s.boxes, r)]
    build_tokenizer(corpus * 2, out / "tokenizer")
    cfg = tiny_config(
        hidden_size=r.hidden, num_layers=r.layers, num_heads=r.heads, num_kv_heads=max(1, r.heads // 2),
        vision_depth=r.vision_depth, vision_hidden=r.vision_hidden, vision_heads=r.vision_heads,
        image_size=r.frame, spatial_merge_size=2, num_queries=4, dit_width=32, dit_depth=1, dit_heads=2,
    )  # fmt: skip
    return ST4VLAPolicy.from_config(cfg, tokenizer_dir=out / "tokenizer", seed=r.seed, name=r.name)


def smooth_number_embeddings(policy) -> None:
    """Coordinate tokens start on a smooth curve (sinusoids of the value), so that nearby numbers
    begin with similar embeddings (and, tied, similar output rows): an init, not an architecture change."""
    vlm = policy.model.qwen_vl_interface
    emb = vlm.model.get_input_embeddings().weight
    tok = vlm.tokenizer
    values = torch.arange(1024, dtype=torch.float32)
    ids = torch.tensor(tok.convert_tokens_to_ids([str(int(v)) for v in values]))
    dim = emb.shape[1]
    freqs = torch.exp(torch.linspace(0, -np.log(1024.0), dim // 2))  # periods from ~6 to ~6,000 values
    angles = values[:, None] * freqs[None, :]
    table = torch.cat([angles.sin(), angles.cos()], dim=1) * emb.std()
    with torch.no_grad():
        emb[ids] = table.to(emb.dtype)


def train(r: Recipe) -> list[dict]:
    torch.set_num_threads(1)  # the other core belongs to the other engineer's training
    torch.manual_seed(r.seed)
    out = Path("runs/recipe") / r.name
    out.mkdir(parents=True, exist_ok=True)
    scenes = load_scenes(r, r.data)
    train_s, held = scenes[: -r.heldout], scenes[-r.heldout :]
    ones_all = load_scenes(r, r.data1) if r.data1 else []
    ones, held1 = ones_all[: -r.heldout], ones_all[-r.heldout :]
    policy = build(r, train_s + ones[:200], out)
    if r.number_init:
        smooth_number_embeddings(policy)
    model = policy.model.train()
    vlm = model.qwen_vl_interface
    n_params = sum(p.numel() for p in vlm.parameters())
    print(f"{len(train_s)} train scenes, {len(held)} held out, VLM {n_params / 1e6:.2f} M parameters")
    opt = build_optimizer({"vlm": vlm.parameters()}, OptimConfig(lr=r.lr, warmup_steps=r.warmup))
    sched = build_scheduler(opt, OptimConfig(lr=r.lr, warmup_steps=r.warmup), r.steps)
    rng = np.random.default_rng(r.seed)
    log, running, t0 = [], None, time.time()
    bar = tqdm(total=r.steps, desc=r.name, unit="step")
    for step in range(1, r.steps + 1):
        one_object = ones and (step <= r.curriculum or rng.random() < r.mix1)
        loss = model.grounding_loss(vlm.build_inputs(*sample_batch(ones if one_object else train_s, r, rng)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vlm.parameters(), 1.0)
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{running:.3f}")
        timeout = (time.time() - t0) / 60 > r.minutes
        if step % r.eval_every == 0 or step == r.steps or timeout:
            model.eval()
            m = evaluate(vlm, held, r)
            if held1:
                m["one_object_iou"] = evaluate(vlm, held1, r)["iou"]
            model.train()
            row = {"step": step, "minutes": round((time.time() - t0) / 60, 2), "loss": round(running, 3), **m}
            log.append(row)
            tqdm.write(json.dumps(row))
            (out / "log.json").write_text(json.dumps({"recipe": asdict(r), "log": log}, indent=1))
        if timeout:
            break
    bar.close()
    return log


def main() -> None:
    ap = argparse.ArgumentParser()
    for f, default in asdict(Recipe()).items():
        if f == "crop":
            ap.add_argument("--crop", type=int, nargs=4, default=None)
        else:
            ap.add_argument(f"--{f.replace('_', '-')}", type=type(default), default=default)
    args = vars(ap.parse_args())
    train(Recipe(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in args.items()}))


if __name__ == "__main__":
    main()
