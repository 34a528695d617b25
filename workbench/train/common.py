"""Pieces both training stages share: the demo model's size, the tokenizer, grounding batches and
the grounding measurement (greedy decode on held-out frames, mean box IoU)."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import tyro

from workbench import spatial, spatial_metrics
from workbench.policy.configuration import ST4VLAConfig, tiny_config
from workbench.policy.prompts import object_question
from workbench.policy.tokenizer import build_tokenizer, default_corpus
from workbench.sim.instructions import BANK
from workbench.train.data import LATER_KINDS, QA, FrameItem, grounding_pairs, seen_object_names, task_boxes
from workbench.train.nonspatial import NONSPATIAL_KINDS, nonspatial_pairs


@dataclass
class ModelSize:
    """Sizes of the CPU demo model (a Qwen2.5-VL, query former and DiT of the upstream architecture)."""

    hidden: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    vision_depth: int = 4
    vision_hidden: int = 192
    vision_heads: int = 3
    image_size: int = 224  # 16x16 patches of 14 px, merged 2x2: 64 visual tokens, as upstream at 224
    merge: int = 2
    queries: int = 16
    dit_width: int = 128
    dit_depth: int = 4
    dit_heads: int = 4
    chunk: int = 8
    text_first: bool = False  # the question before the image in every prompt (VLMConfig.text_first)

    def config(self, use_spatial_prompt: bool = True) -> ST4VLAConfig:
        cfg = tiny_config(
            hidden_size=self.hidden, num_layers=self.layers, num_heads=self.heads, num_kv_heads=self.kv_heads,
            vision_depth=self.vision_depth, vision_hidden=self.vision_hidden, vision_heads=self.vision_heads,
            image_size=self.image_size, spatial_merge_size=self.merge, num_queries=self.queries,
            dit_width=self.dit_width, dit_depth=self.dit_depth, dit_heads=self.dit_heads, chunk_length=self.chunk,
        )  # fmt: skip
        cfg.use_spatial_prompt = use_spatial_prompt
        cfg.vlm.text_first = self.text_first
        return cfg


# Named sizes: "demo" is what the bundled checkpoints use (trained on a shared 2-core CPU, see
# research/training-notes.md); "test" is for the end-to-end tests (seconds per run).
SIZES: dict[str, ModelSize] = {
    "demo": ModelSize(
        hidden=192, layers=4, heads=4, kv_heads=2, vision_depth=3, vision_hidden=128, vision_heads=2,
        image_size=112, merge=2, queries=16, dit_width=128, dit_depth=4, dit_heads=4, chunk=8,
    ),
    "test": ModelSize(
        hidden=64, layers=1, heads=2, kv_heads=1, vision_depth=1, vision_hidden=32, vision_heads=2,
        image_size=56, merge=2, queries=4, dit_width=32, dit_depth=1, dit_heads=2, chunk=4,
    ),
}  # fmt: skip


def model_size(
    size: str = "demo", merge: int | None = None, layers: int | None = None, text_first: bool = False
) -> ModelSize:
    """The model size: a named preset with overrides (the command line's --size, --merge, --layers,
    --text-first build the training configs' `model` through this function).

    Args:
        size: model size preset: demo (the bundled checkpoints) | test (the end-to-end tests)
        merge: visual-token merge (2 as Qwen2.5-VL; 1: 4x the visual tokens); None: the preset's
        layers: language-model depth; None: the preset's
        text_first: the question before the image in every prompt (upstream: image first)
    """
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; choose one of {sorted(SIZES)}")
    if merge is not None and merge not in (1, 2):
        raise ValueError(f"merge must be 1 or 2, got {merge}")
    if layers is not None and layers < 1:
        raise ValueError(f"layers must be at least 1, got {layers}")
    preset = replace(SIZES[size], text_first=text_first)
    if merge is not None:
        preset = replace(preset, merge=merge)
    return preset if layers is None else replace(preset, layers=layers)


# A training config's `model` field on the command line: --size, --merge, --layers, --text-first
# (model_size's arguments, without a prefix), giving the resolved ModelSize that the config stores.
ModelSizeArg = Annotated[ModelSize, tyro.conf.arg(constructor=model_size), tyro.conf.OmitArgPrefixes]


def seed_everything(seed: int, threads: int) -> None:
    # One thread: the machine has two cores shared by everyone (and small matmuls gain little).
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_tokenizer(frames: list[FrameItem], out_dir: str | Path):
    """A byte-level BPE trained on the seen split's questions, answers and instructions."""
    corpus = list(default_corpus())
    for task in BANK.values():
        corpus += task["seen"]
    for item in frames[:: max(1, len(frames) // 400)]:
        if item.ground_truth is not None:
            pairs = grounding_pairs(item.ground_truth, item.instruction, item.frame)
            corpus += [t for p in pairs if p.kind not in LATER_KINDS for t in (p.question, p.answer)]
    return build_tokenizer(corpus * 2, out_dir)


# Every question kind a mix may name: the grounding questions (workbench/train/data.py), then the
# non-spatial ones (workbench/train/nonspatial.py).
GROUNDING_KINDS = ("object_box", "object_point", "task_box", "task_point", "trace", *sorted(LATER_KINDS))
QUESTION_KINDS = (*GROUNDING_KINDS, *NONSPATIAL_KINDS)

# Question kinds about one named object: those a contrast pair asks twice, about two objects.
CONTRAST_KINDS = ("object_box", "object_point")


def sample_pairs(
    frames: list[FrameItem], n: int, rng: np.random.Generator, kinds: dict[str, float], contrast: bool = False
) -> list[tuple[np.ndarray, QA]]:
    """n (image, question/answer) pairs; the question kind is drawn with the given weights.

    With `contrast`, an object question comes with a second one about another object of the same
    image: within the batch only the name separates the two answers, so what the batch teaches about
    choosing is not drowned by what it teaches about where objects usually are.
    """
    check_kinds(kinds)
    names, weights = list(kinds), np.array(list(kinds.values()), dtype=np.float64)
    out = []
    while len(out) < n:
        item = frames[int(rng.integers(len(frames)))]
        if item.ground_truth is None:
            continue
        kind = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        pairs = [p for p in frame_pairs(item, kind) if p.kind == kind]
        if not pairs:
            continue
        if contrast and kind in CONTRAST_KINDS and len(pairs) >= 2 and len(out) + 2 <= n:
            out += [(item.image, pairs[int(i)]) for i in rng.choice(len(pairs), 2, replace=False)]
        else:  # the bundled recipe's draw: unchanged, so its batches stay reproducible
            out.append((item.image, pairs[int(rng.integers(len(pairs)))]))
    return out


def check_kinds(kinds: dict[str, float]) -> None:
    """Refuse a question mix with an unknown kind or no positive weight (sampling would never end)."""
    unknown = sorted(set(kinds) - set(QUESTION_KINDS))
    if unknown:
        raise ValueError(f"unknown question kinds {unknown}; known: {sorted(QUESTION_KINDS)}")
    if not kinds or min(kinds.values()) < 0 or sum(kinds.values()) <= 0:
        raise ValueError(f"question kinds need non-negative weights with a positive sum, got {kinds}")


def frame_pairs(item: FrameItem, kind: str) -> list[QA]:
    """The questions of the family `kind` belongs to that this frame's ground truth answers: non-spatial
    (workbench/train/nonspatial.py) for the ns_* kinds, else the grounding questions."""
    if kind in NONSPATIAL_KINDS:
        return nonspatial_pairs(item.ground_truth, item.instruction, seen_object_names())
    return grounding_pairs(item.ground_truth, item.instruction, item.frame)


def grounding_inputs(vlm, pairs: list[tuple[np.ndarray, QA]]) -> dict[str, torch.Tensor]:
    return vlm.build_inputs(
        [[img] for img, _ in pairs], [p.question for _, p in pairs], [p.answer for _, p in pairs]
    )


@torch.no_grad()
def measure_grounding(
    policy, frames: list[FrameItem], max_frames: int = 32, batch: int = 16, task: bool = True
) -> dict[str, float]:
    """Greedy-decode object (and, with `task`, task) box questions on `frames`; score against the truth.

    object_box_iou: "Locate the <name>" for a random object of the scene (choosing by name);
    task_box_iou: the spatial prompt's own question, scored on the box of the object to move;
    *_centre_rms: how far the first box's centre lies from the object's centre, RMS per axis as a
    fraction of the image (unanswered questions count as 0.5: a guess at the far side of the image).
    """
    vlm = policy.model.qwen_vl_interface
    was_training = policy.model.training
    policy.model.eval()
    rng = np.random.default_rng(0)
    picked = [frames[i] for i in rng.choice(len(frames), min(max_frames, len(frames)), replace=False)]
    picked = [f for f in picked if f.ground_truth is not None and f.ground_truth.objects]
    obj_iou, task_iou, obj_off, task_off = [], [], [], []
    for start in range(0, len(picked), batch):
        chunk = picked[start : start + batch]
        targets = [f.ground_truth.objects[int(rng.integers(len(f.ground_truth.objects)))] for f in chunk]
        questions = [object_question("box", t.label) for t in targets]
        texts = vlm.generate(vlm.build_inputs([[f.image] for f in chunk], questions), max_new_tokens=32)
        for f, t, text in zip(chunk, targets, texts, strict=True):
            answer = spatial.parse(text, f.frame)
            boxes = [g for g in answer.geometry if isinstance(g, spatial.Box)]
            obj_iou.append(spatial_metrics.box_iou(boxes[0], t) if boxes else 0.0)
            obj_off.append(_offset(answer, t.center, f.frame))
        if not task:
            continue
        questions = [policy_question(f) for f in chunk]
        texts = vlm.generate(vlm.build_inputs([[f.image] for f in chunk], questions), max_new_tokens=64)
        for f, text in zip(chunk, texts, strict=True):
            answer = spatial.parse(text, f.frame)
            m = spatial_metrics.grounding_metrics(answer, f.ground_truth)
            task_iou.append(m.get("box_iou", 0.0))
            centre = spatial_metrics.object_centre(f.ground_truth)
            if centre is not None:
                task_off.append(_offset(answer, centre, f.frame))
    policy.model.train(was_training)
    out = {"object_box_iou": float(np.mean(obj_iou)), "object_centre_rms": spatial_metrics.rms(obj_off)}
    if task:
        out["task_box_iou"] = float(np.mean(task_iou))
        out["task_centre_rms"] = spatial_metrics.rms(task_off)
    return out


@torch.no_grad()
def measure_nonspatial(
    policy, frames: list[FrameItem], max_frames: int = 32, batch: int = 16, per_frame: int = 4
) -> dict[str, float]:
    """Greedy-decode up to `per_frame` random non-spatial questions of each of up to `max_frames`
    held-out frames; the share answered exactly (stripped text equal to the ground truth's answer),
    overall and for the yes/no questions."""
    vlm = policy.model.qwen_vl_interface
    was_training = policy.model.training
    policy.model.eval()
    rng = np.random.default_rng(0)
    picked = [frames[i] for i in rng.choice(len(frames), min(max_frames, len(frames)), replace=False)]
    asked = []
    for f in picked:
        pairs = nonspatial_pairs(f.ground_truth, f.instruction, seen_object_names()) if f.ground_truth else []
        for i in rng.choice(len(pairs), min(per_frame, len(pairs)), replace=False) if pairs else []:
            asked.append((f, pairs[int(i)]))
    right, yes_no = [], []
    for start in range(0, len(asked), batch):
        chunk = asked[start : start + batch]
        inputs = vlm.build_inputs([[f.image] for f, _ in chunk], [qa.question for _, qa in chunk])
        for (_, qa), text in zip(chunk, vlm.generate(inputs, max_new_tokens=48), strict=True):
            right.append(text.strip() == qa.answer)
            if qa.kind in ("ns_exists_yes", "ns_exists_no"):
                yes_no.append(text.strip() == qa.answer)
    policy.model.train(was_training)
    out = {"nonspatial_exact": float(np.mean(right)) if right else float("nan")}
    out["nonspatial_yes_no_exact"] = float(np.mean(yes_no)) if yes_no else float("nan")
    return out


def _offset(answer: spatial.SpatialAnswer, truth: tuple[float, float], frame: spatial.Frame):
    off = spatial_metrics.centre_offset(answer, truth, frame.orig_width, frame.orig_height)
    return off if off is not None else spatial_metrics.UNANSWERED_OFFSET


def policy_question(item: FrameItem) -> str:
    from workbench.policy.prompts import grounding_question

    return grounding_question("box", item.instruction)


__all__ = [
    "ModelSize",
    "grounding_inputs",
    "make_tokenizer",
    "measure_grounding",
    "measure_nonspatial",
    "sample_pairs",
    "task_boxes",
]
