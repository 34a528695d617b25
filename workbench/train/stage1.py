"""Stage 1: spatial grounding pre-training of the VLM (Qwen2.5-VL) on the simulator's ground truth.

The VLM learns to answer box, point and trace questions (workbench/train/data.py) with next-token
loss on the answer tokens. Only the VLM trains; the query former and DiT stay at initialisation and
are trained in stage 2. The result is a full workbench checkpoint (so the app can open it and ask
spatial questions), plus the tokenizer every later stage reuses.

    workbench train stage1 --data runs/data/demos runs/data/scenes --out runs/stage1 --steps 3000

With `--content nonspatial` the same frames are asked questions without a coordinate
(workbench/train/nonspatial.py): the ablation's vanilla pre-training (docs/ablation.md); its log adds the
share of held-out non-spatial questions answered exactly.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
import tyro
from tqdm import tqdm

from workbench.policy.policy import ST4VLAPolicy
from workbench.policy.vlm import answer_mean_loss
from workbench.train.common import (
    ModelSizeArg,
    grounding_inputs,
    make_tokenizer,
    measure_grounding,
    measure_nonspatial,
    model_size,
    sample_pairs,
    seed_everything,
)
from workbench.train.data import FrameItem, load_frames
from workbench.train.nonspatial import NONSPATIAL_KINDS
from workbench.train.optim import OptimConfig, build_optimizer, build_scheduler, optimizer_step, smoothed
from workbench.train.pointing import pointing_loss, pointing_targets
from workbench.train.state import resume_or_start, save_train_state

DEFAULT_KINDS = {"object_box": 0.45, "object_point": 0.15, "task_box": 0.25, "task_point": 0.1, "trace": 0.05}
# One object on the table: the model can only learn WHERE before it has to learn WHICH.
CURRICULUM_KINDS = {"object_box": 0.75, "object_point": 0.25}


@dataclass
class Stage1Config:
    """`workbench train stage1`: spatial grounding pre-training of the VLM (each field is a flag)."""

    data: tuple[str, ...] = ("runs/data/demos", "runs/data/scenes")  # datasets (LeRobot layout)
    out: str = "runs/stage1"  # run folder: config.json, state/, log.json, tokenizer/, final/
    # --size demo|test, --merge, --layers, --text-first
    model: ModelSizeArg = field(default_factory=model_size)
    steps: int = 1200  # training steps
    batch_size: int = 16  # questions per step
    # --lr, --warmup-steps (--warmup), --lr-vision (--vision-lr: the vision tower's own peak rate, 0 freezes it)
    optim: Annotated[OptimConfig, tyro.conf.OmitArgPrefixes] = field(
        default_factory=lambda: OptimConfig(lr=3e-4, warmup_steps=150)
    )
    # What the questions are about. "spatial": boxes, points and traces (the recipe). "nonspatial": the
    # same scenes asked about without a coordinate (names, existence, counts, the task's object, a
    # caption; workbench/train/nonspatial.py), the ablation's vanilla VLM pre-training (docs/ablation.md):
    # both pools then draw the ns_* kinds, and the spatial options (pointing, detect-all, exists,
    # contrast) are refused.
    content: Literal["spatial", "nonspatial"] = "spatial"
    # question kinds and their weights in the main pool (with --content nonspatial: NONSPATIAL_KINDS)
    kinds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_KINDS))
    # Curriculum: scenes with a single object (`workbench train data --scenes-distractors 0`), trained on
    # alone for `curriculum_steps`, then mixed in at `curriculum_mix` of the batches. Without it the
    # demo VLM stays at the coordinate prior (research/training-notes.md).
    curriculum_data: tuple[str, ...] = ()
    curriculum_steps: int = 0  # steps on the one-object scenes alone, first
    curriculum_mix: float = 0.25  # their share of batches afterwards
    # Weight of "Detect every object" (labels then boxes, left to right) in both pools; 0 leaves the
    # bundled checkpoints' recipe unchanged.
    detect_all: float = 0.0
    # Weight of "Is there a <name> in the image?" (half yes, half a seen object that is absent): a
    # direct signal for matching a name against the visual tokens. 0 leaves the recipe unchanged.
    exists: float = 0.0
    # Ask object questions in pairs: two objects of the same image (workbench/train/common.py).
    contrast: bool = False
    # Start from a checkpoint's weights and tokenizer instead of random ones (e.g. a vision
    # pre-training; research/training-notes.md, note 8); `model` is then the checkpoint's.
    init: str | None = None
    # Average the loss within each answer, then over the batch. The default (transformers' mean over
    # every answer token) gives a 3-token "Yes" a ninth of a 26-token box's weight.
    per_answer_loss: bool = False
    # Weight of the pointing loss (workbench/train/pointing.py): head `pointing_head` of layer
    # `pointing_layer` is taught to attend, while a coordinate is written, to the visual tokens under
    # the object it belongs to. 0 leaves the recipe unchanged (and keeps the faster attention kernel).
    pointing: float = 0.0
    pointing_layer: int = 2  # the pointing head's layer
    pointing_head: int = 0  # the pointing head within that layer
    heldout_episodes: int = 20  # last episodes of the first dataset: grounding is measured there
    eval_every: int = 200  # steps between grounding measurements (log rows)
    eval_frames: int = 32  # held-out frames per measurement
    save_every: int = 250  # steps between training states (out/state)
    seed: int = 0  # seeds weights and batches
    threads: int = 1  # torch CPU threads (1: two runs side by side)
    resume: bool = True  # continue from out/state when a training state is there (--no-resume: start over)

    def __post_init__(self) -> None:
        if self.content not in ("spatial", "nonspatial"):
            raise ValueError(f"--content must be 'spatial' or 'nonspatial', got {self.content!r}")
        if self.content != "nonspatial":
            return
        if self.kinds == DEFAULT_KINDS:
            self.kinds = dict(NONSPATIAL_KINDS)
        spatial = sorted(k for k, w in self.kinds.items() if w > 0 and k not in NONSPATIAL_KINDS)
        if spatial:
            raise ValueError(
                f"--content nonspatial asks no spatial question, but --kinds gives {spatial} a weight: "
                f"use kinds among {sorted(NONSPATIAL_KINDS)}"
            )
        given = {"--pointing": self.pointing, "--detect-all": self.detect_all, "--exists": self.exists}
        given["--contrast"] = self.contrast
        spatial_options = [flag for flag, value in given.items() if value]
        if spatial_options:
            raise ValueError(
                f"--content nonspatial: {', '.join(spatial_options)} asks spatial questions; drop it"
            )


def question_mixes(cfg: Stage1Config) -> tuple[dict[str, float], dict[str, float]]:
    """The main pool's and the one-object curriculum's question mixes."""
    if cfg.content == "nonspatial":
        return dict(cfg.kinds), dict(cfg.kinds)
    return with_shares(cfg.kinds, added_kinds(cfg)), with_shares(CURRICULUM_KINDS, added_kinds(cfg))


def with_shares(kinds: dict[str, float], shares: dict[str, float]) -> dict[str, float]:
    """The question mix with each kind of `shares` at its share of it (the other kinds scaled down)."""
    for kind, share in shares.items():
        if not 0.0 <= share < 1.0:
            raise ValueError(f"{kind} is a share of the questions in [0, 1), got {share}")
    shares = {k: w for k, w in shares.items() if w > 0.0}
    if not shares:
        return dict(kinds)  # exactly the recipe's mix, so its batches stay reproducible
    rest = 1.0 - sum(shares.values())
    if rest <= 0.0:
        raise ValueError(f"the added question kinds take all of the mix: {shares}")
    total = sum(kinds.values())
    return {**{k: v * rest / total for k, v in kinds.items()}, **shares}


def added_kinds(cfg: Stage1Config) -> dict[str, float]:
    """The optional question kinds' shares: detect-all, and existence split evenly into yes and no."""
    return {"all_boxes": cfg.detect_all, "exists_yes": cfg.exists / 2, "exists_no": cfg.exists / 2}


def vlm_groups(vlm, lr_vision: float | None) -> dict[str, list]:
    """The VLM's parameters as optimiser groups. With a rate of its own (`--vision-lr`), the vision
    tower and merger form the "vision" group; at 0 they are frozen, which keeps a vision
    pre-training (stage 0) as it is. Without one, a single group (the bundled recipe)."""
    if lr_vision is None:
        return {"vlm": list(vlm.parameters())}
    vision = list(vlm.model.model.visual.parameters())
    for p in vision:
        p.requires_grad_(lr_vision > 0)
    ids = {id(p) for p in vision}
    return {"vlm": [p for p in vlm.parameters() if id(p) not in ids], "vision": vision}


def batch_loss(
    model, inputs: dict, answers: list[str], cfg: Stage1Config
) -> tuple[torch.Tensor, float | None]:
    """The grounding loss of a batch, plus the weighted pointing loss when asked for (and its value)."""
    if not cfg.pointing:
        return model.grounding_loss(inputs, per_answer=cfg.per_answer_loss), None
    vlm = model.qwen_vl_interface
    given = {k: v for k, v in inputs.items() if k != "labels"} if cfg.per_answer_loss else inputs
    out = vlm(given, output_hidden_states=False, output_attentions=True)
    text = answer_mean_loss(out.logits, inputs["labels"]) if cfg.per_answer_loss else out.loss
    targets = pointing_targets(vlm, inputs, answers)
    point = pointing_loss(out.attentions[cfg.pointing_layer], targets, cfg.pointing_head)
    return text + cfg.pointing * point, point.item()


def check_pointing(cfg: Stage1Config, vlm) -> None:
    layers, heads = vlm.config.vlm.num_layers, vlm.config.vlm.num_heads
    if not 0 <= cfg.pointing_layer < layers or not 0 <= cfg.pointing_head < heads:
        raise ValueError(
            f"--pointing-layer {cfg.pointing_layer} / --pointing-head {cfg.pointing_head}: the language "
            f"model has layers 0..{layers - 1} and heads 0..{heads - 1}"
        )
    vlm.model.set_attn_implementation("eager")  # only eager attention returns the probabilities


def split_heldout(frames: list[FrameItem], n_episodes: int) -> tuple[list[FrameItem], list[FrameItem]]:
    """Hold out the last n episodes (all seen split) to measure grounding on layouts never trained on."""
    last = max(f.episode for f in frames)
    held = [f for f in frames if f.episode > last - n_episodes]
    return [f for f in frames if f.episode <= last - n_episodes], held


def load_training_frames(roots: tuple[str, ...], image_size: int, chunk: int, heldout: int):
    train, held = [], []
    for k, root in enumerate(roots):
        frames = load_frames(root, image_size, chunk, offset=len({f.episode for f in train + held}))
        if k == len(roots) - 1 and heldout:  # hold out from the last dataset (the scenes when given)
            frames, h = split_heldout(frames, heldout)
            held += h
        train += frames
    return train, held


def load_stage1_frames(cfg: Stage1Config) -> tuple[list[FrameItem], ...]:
    """(train, held-out) frames of the main datasets, then of the one-object curriculum ([] without one)."""
    size, chunk, heldout = cfg.model.image_size, cfg.model.chunk, cfg.heldout_episodes
    frames, held = load_training_frames(cfg.data, size, chunk, heldout)
    ones, held_ones = [], []
    if cfg.curriculum_data:
        ones, held_ones = load_training_frames(cfg.curriculum_data, size, chunk, heldout)
    return frames, held, ones, held_ones


def initial_policy(cfg: Stage1Config, frames: list[FrameItem], tok_dir: Path) -> ST4VLAPolicy:
    """The policy stage 1 starts from: `cfg.init`'s weights and tokenizer (the tokenizer copied to
    tok_dir), else fresh weights of cfg.model with a tokenizer built from the frames (once, in tok_dir)."""
    if cfg.init:
        policy = ST4VLAPolicy.load(cfg.init, name="stage1")
        if policy.config.image_size != cfg.model.image_size:
            raise ValueError(
                f"--init {cfg.init} takes {policy.config.image_size}-px images, the size preset "
                f"{cfg.model.image_size}: pick the matching --size"
            )
        policy.tokenizer.save_pretrained(tok_dir)  # stage 2 reads the tokenizer from here
        policy.config.vlm.text_first |= cfg.model.text_first  # e.g. a stage 0, which never saw a prompt
        policy.config.spatial_answers = policy.trained_to_answer or cfg.content == "spatial"
        return policy
    if not (tok_dir / "tokenizer.json").exists():
        make_tokenizer(frames, tok_dir)
    policy = ST4VLAPolicy.from_config(cfg.model.config(), tokenizer_dir=tok_dir, seed=cfg.seed, name="stage1")
    policy.config.spatial_answers = cfg.content == "spatial"
    return policy


def measure(
    policy: ST4VLAPolicy,
    cfg: Stage1Config,
    held: list[FrameItem],
    held_ones: list[FrameItem],
    running_point: float | None,
) -> dict:
    """A log row's measurements: grounding on the held-out frames, on the held-out one-object scenes
    (when there is a curriculum) and the running pointing loss (when it trains)."""
    m = measure_grounding(policy, held, cfg.eval_frames) if held else {}
    if held and cfg.content == "nonspatial":
        m.update(measure_nonspatial(policy, held, cfg.eval_frames))
    if running_point is not None:
        m["pointing_loss"] = round(running_point, 4)
    if held_ones:
        one = measure_grounding(policy, held_ones, cfg.eval_frames, task=False)
        m["one_object_box_iou"] = one["object_box_iou"]
        m["one_object_centre_rms"] = one["object_centre_rms"]
    return m


def train_stage1(cfg: Stage1Config) -> Path:
    seed_everything(cfg.seed, cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    frames, held, ones, held_ones = load_stage1_frames(cfg)
    policy = initial_policy(cfg, frames, out / "tokenizer")
    model = policy.model.train()
    vlm = model.qwen_vl_interface
    if cfg.pointing:
        check_pointing(cfg, vlm)
    groups = vlm_groups(vlm, cfg.optim.lr_vision)
    trained = [p for g in groups.values() for p in g if p.requires_grad]
    opt = build_optimizer(groups, cfg.optim)
    sched = build_scheduler(opt, cfg.optim, cfg.steps)
    step, log = resume_or_start(out / "state", model, opt, sched, "stage 1", cfg.resume)
    main_kinds, curriculum_kinds = question_mixes(cfg)
    rng = np.random.default_rng(cfg.seed + step)  # a resumed run draws fresh batches, not replays
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    bar = tqdm(total=cfg.steps, initial=step, desc="stage 1 grounding", unit="step")
    t0, running, running_point = time.time(), None, None
    while step < cfg.steps:
        one_object = bool(ones) and (step < cfg.curriculum_steps or rng.random() < cfg.curriculum_mix)
        pool, kinds = (ones, curriculum_kinds) if one_object else (frames, main_kinds)
        pairs = sample_pairs(pool, cfg.batch_size, rng, kinds, cfg.contrast)
        inputs = grounding_inputs(vlm, pairs)
        loss, point = batch_loss(model, inputs, [qa.answer for _, qa in pairs], cfg)
        optimizer_step(loss, trained, opt, sched, cfg.optim.clip_norm)
        step += 1
        running = smoothed(running, loss.item())
        if point is not None:
            running_point = smoothed(running_point, point)
        bar.update(1)
        bar.set_postfix(loss=f"{running:.3f}")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            m = measure(policy, cfg, held, held_ones, running_point)
            row = {"step": step, "loss": round(running, 4), "minutes": round((time.time() - t0) / 60, 2), **m}
            log.append(row)
            tqdm.write(json.dumps(row))
        if step % cfg.save_every == 0 or step == cfg.steps:
            save_train_state(out / "state", model, opt, sched, step, {"log": log})
    bar.close()
    policy.model.eval()
    policy.save(out / "final", card=_card(cfg, log))
    (out / "log.json").write_text(json.dumps(log, indent=1))
    return out / "final"


CARD_COLUMNS = {
    "one_object_box_iou": "one-object box IoU",
    "object_box_iou": "object box IoU",
    "task_box_iou": "task box IoU",
    "task_centre_rms": "task centre error (RMS, image fraction)",
}


def _card(cfg: Stage1Config, log: list[dict]) -> str:
    rows = "\n".join(
        f"| {r['step']} | {r['loss']} | "
        + " | ".join(f"{r.get(k, float('nan')):.3f}" for k in CARD_COLUMNS)
        + " |"
        for r in log
    )
    return (
        "# stage-1 grounding checkpoint\n\nQwen2.5-VL grounding pre-training on the built-in simulator "
        "(seen split). The query former and DiT are untrained.\n\n"
        "Held-out, greedy decode: mean box IoU on one-object scenes; 'Locate the <name>' among the scene's "
        "objects; the spatial prompt's question scored on the object to move, and how far its first "
        "box's centre lies from that object's centre.\n\n"
        "| step | loss | "
        + " | ".join(CARD_COLUMNS.values())
        + " |\n|---|---|"
        + "---|" * len(CARD_COLUMNS)
        + "\n"
        + rows
        + "\n\n"
        f"Config: `{json.dumps(asdict(cfg))}`\n"
    )
