"""Stage 2: spatially guided action post-training, and the vanilla baseline.

ST4VLA (upstream InternVLA-M1's recipe, scaled down):
  * the VLM reads the image and the instruction wrapped in the spatial prompt; the query former reads
    its last hidden layer; the DiT denoises the normalised action chunk from the queries
    (diffusion loss, each sample repeated at `repeated_diffusion_steps` timesteps);
  * co-trained with the grounding next-token loss (weight 0.1) on the task's box questions, so the
    spatial understanding of stage 1 is kept;
  * per-module learning rates (VLM < base < action, upstream's 1e-5 : 5e-5 : 1e-4 ratios), AdamW
    (0.9, 0.95), warm-up + cosine, clipping at 1.0.
The vanilla baseline is the same architecture, data, steps and seed, without stage 1 (the VLM starts
from scratch), without the spatial prompt (the plain instruction) and without grounding co-training.

    workbench train stage2 --init runs/stage1/final --out runs/st4vla
    workbench train stage2 --vanilla --out runs/vanilla

The ablation (docs/ablation.md) adds three options: --no-spatial-prompt (an --init VLM given the plain
instruction, co-training kept), --grounding-content nonspatial (co-training without coordinates) and
--true-points (the control: the true box centres after the joints in the robot state).

On this CPU the joint phase can be followed by a head phase (`--head-steps`): the DiT alone, on
frozen and cached conditions (workbench/train/head.py; not upstream).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
import tyro
from tqdm import tqdm

from workbench.policy.configuration import ANSWER_POINTS, TCP_POSITION
from workbench.policy.modeling import ActionModel
from workbench.policy.normalization import ActionNormalizer, compute_statistics
from workbench.policy.policy import ST4VLAPolicy
from workbench.train.common import (
    ModelSizeArg,
    grounding_inputs,
    make_tokenizer,
    model_size,
    sample_pairs,
    seed_everything,
)
from workbench.train.control import with_true_points
from workbench.train.data import FrameItem, fill_tcp_poses, gripper_to_model, load_frames
from workbench.train.head import HeadPhaseConfig, train_head, true_answer
from workbench.train.nonspatial import NONSPATIAL_KINDS
from workbench.train.optim import LossProgress, OptimConfig, build_optimizer, build_scheduler, optimizer_step
from workbench.train.state import resume_or_start, save_train_state

UNNORM_KEY = "tabletop_panda"
CO_TRAINING_KINDS = {"task_box": 0.6, "object_box": 0.4}


@dataclass
class Stage2Config:
    """`workbench train stage2`: spatially guided action post-training, or --vanilla (each field is a flag)."""

    data: tuple[str, ...] = ("runs/data/demos",)  # demonstrations (LeRobot layout)
    out: str = "runs/st4vla"  # run folder: config.json, state/, log.json, latest/, final/
    init: str | None = "runs/stage1/final"  # stage-1 checkpoint; None = from scratch
    vanilla: bool = False  # the baseline: no stage 1, plain instruction, no grounding co-training
    # The vanilla baseline's starting VLM: a checkpoint never trained on grounding questions (the
    # vision pre-training that stage 1 started from, if any); None = random weights.
    base: str | None = None
    # The spatial prompt around the instruction (ST4VLA). --no-spatial-prompt keeps --init's VLM and any
    # co-training but gives it the plain instruction, as --vanilla does: the ablation's vanilla arms
    # (docs/ablation.md).
    spatial_prompt: bool = True
    # Not upstream, the ablation's control (workbench/train/control.py): the robot state (--state) ends
    # with the TRUE box centres of the source and the target, from the ground truth, in training and (an
    # input transform, true_points_input) at evaluation: an action head told where things are.
    true_points: bool = False
    # --size, --layers, --text-first, --merge: used only when init is None
    model: ModelSizeArg = field(default_factory=model_size)
    tokenizer: str | None = "runs/stage1/tokenizer"  # shared so both models read the same tokens
    steps: int = 600  # joint-phase steps
    batch_size: int = 12  # demonstration frames per step
    grounding_batch_size: int = 4  # co-training questions per step
    grounding_loss_weight: float = 0.1  # (--grounding-weight)
    # co-training question kinds and their weights
    grounding_kinds: dict[str, float] = field(default_factory=lambda: dict(CO_TRAINING_KINDS))
    # What the co-training asks. "nonspatial": the non-spatial questions of the same frames
    # (workbench/train/nonspatial.py; grounding_kinds becomes NONSPATIAL_KINDS), so that a VLM
    # pre-trained without spatial content gets the same samples per step without any (docs/ablation.md).
    grounding_content: Literal["spatial", "nonspatial"] = "spatial"
    # The co-training's grounding corpus, when it is not the demonstrations (upstream co-trains on its
    # VLM grounding data): e.g. stage 1's scenes, so that objects stage 1 taught and no demonstration
    # shows stay grounded. Empty: the demonstrations' frames (the bundled recipe's draw).
    grounding_data: tuple[str, ...] = ()
    repeated_diffusion_steps: int = 4  # each sample's action loss at this many diffusion timesteps
    # Not upstream: the action expert also reads the robot state (joint positions) as one token.
    # Both bundled models use it, so the comparison stays fair (see research/training-notes.md).
    state: bool = False
    # Not upstream: the query former also reads the spatial answer (ST4VLAConfig.condition_on_answer).
    # The joint phase teacher-forces the true answer; the head phase caches the model's own answers,
    # as the policy computes them at control time.
    condition_on_answer: bool = False
    # Not upstream: the DiT also reads the centres of the spatial answer's boxes (ST4VLAConfig.answer_points),
    # true in the joint phase; in the head phase the model's own (as for condition_on_answer) or, with
    # head.answers = "true" (--head-answers true), the true ones again.
    answer_points: bool = False
    # Not upstream: the robot state ends with the TCP position (ST4VLAConfig.state_tcp); needs --state.
    tcp: bool = False
    # --lr, --lr-vlm, --lr-action, --warmup-steps, ...
    optim: Annotated[OptimConfig, tyro.conf.OmitArgPrefixes] = field(
        default_factory=lambda: OptimConfig(lr=5e-4, lr_vlm=1e-4, lr_action=1e-3, warmup_steps=100)
    )
    # Then the DiT alone (train/head.py): --head.steps (--head-steps), --head.batch-size, --head.lr,
    # --head.answers own|true
    head: HeadPhaseConfig = field(default_factory=HeadPhaseConfig)
    save_every: int = 250  # steps between training states (out/state)
    save_latest: bool = True  # also a loadable checkpoint of the run so far at each save (out/latest)
    log_every: int = 50  # steps between log rows
    seed: int = 0  # seeds weights, batches and noise
    threads: int = 1  # torch CPU threads
    resume: bool = True  # continue from out/state when a training state is there (--no-resume: start over)

    def __post_init__(self) -> None:
        if self.vanilla:
            self.init = self.base
            self.grounding_loss_weight = 0.0
        elif self.base:
            raise ValueError("--base is the vanilla baseline's starting point; ST4VLA starts from --init")
        if self.vanilla and self.condition_on_answer:
            raise ValueError("--condition-on-answer needs the spatial prompt; the vanilla baseline has none")
        if self.vanilla and self.answer_points:
            raise ValueError("--answer-points needs the spatial prompt; the vanilla baseline has none")
        if self.tcp and not self.state:
            raise ValueError("--tcp adds the TCP position to the robot state: it needs --state")
        if self.grounding_content not in ("spatial", "nonspatial"):
            raise ValueError(
                f"--grounding-content must be spatial or nonspatial, got {self.grounding_content!r}"
            )
        if self.grounding_content == "nonspatial":
            if self.grounding_kinds == CO_TRAINING_KINDS:
                self.grounding_kinds = dict(NONSPATIAL_KINDS)
            spatial = sorted(
                k for k, w in self.grounding_kinds.items() if w > 0 and k not in NONSPATIAL_KINDS
            )
            if spatial:
                raise ValueError(
                    f"--grounding-content nonspatial, but the co-training kinds {spatial} are spatial"
                )
        if not self.spatial_prompt and self.condition_on_answer:
            raise ValueError(
                "--condition-on-answer reads the spatial prompt's answer: drop --no-spatial-prompt"
            )
        if not self.spatial_prompt and self.answer_points:
            raise ValueError("--answer-points reads the spatial prompt's answer: drop --no-spatial-prompt")
        if self.true_points and (not self.state or self.answer_points or self.tcp):
            raise ValueError("--true-points appends the true box centres to the joints: it needs --state, "
                             "without --answer-points or --tcp")  # fmt: skip
        if self.vanilla and self.grounding_data:
            raise ValueError(
                "--grounding-data is the co-training's corpus; the vanilla baseline co-trains none"
            )


def robot_states(frames: list[FrameItem], tcp: bool = False) -> np.ndarray | None:
    """[N, S] the robot state of every frame as the DiT reads it: the joints, then (tcp) the TCP position;
    None unless every frame has one."""
    if any(f.state is None for f in frames) or (tcp and any(f.tcp_pose is None for f in frames)):
        return None
    joints = np.stack([f.state for f in frames]).astype(np.float64)
    if not tcp:
        return joints
    return np.concatenate([joints, np.stack([f.tcp_pose[:TCP_POSITION] for f in frames])], axis=1)


def statistics_for(frames: list[FrameItem], tcp: bool = False) -> dict:
    """Upstream-schema statistics of the demonstrations' actions (gripper as 1 open / 0 closed) and,
    when every frame has one, of the robot state (with the TCP position when `tcp`)."""
    actions = gripper_to_model(np.stack([f.chunk[0] for f in frames]))  # every frame's own action
    states = robot_states(frames, tcp)
    episodes = len({f.episode for f in frames})
    return {UNNORM_KEY: compute_statistics(actions, states, num_trajectories=episodes)}


def state_dim_of(cfg: Stage2Config, frames: list[FrameItem]) -> int:
    """The DiT's state input: the robot's joints (--state), then the answer's points (--answer-points)."""
    points = ANSWER_POINTS if cfg.answer_points else 0
    if not cfg.state:
        return points
    if any(f.state is None for f in frames):
        raise ValueError("--state needs observation.state in every frame of the demonstrations")
    return int(frames[0].state.shape[0]) + (TCP_POSITION if cfg.tcp else 0) + points


def build_policy(cfg: Stage2Config, frames: list[FrameItem], out: Path) -> ST4VLAPolicy:
    stats = statistics_for(frames, cfg.tcp)
    state_dim = state_dim_of(cfg, frames)
    cotrained = cfg.grounding_loss_weight > 0 and cfg.grounding_content == "spatial"
    if cfg.init:
        policy = ST4VLAPolicy.load(cfg.init)
        policy.config.spatial_answers = policy.trained_to_answer or cotrained  # the init's, then this run's
        policy.config.answer_points = cfg.answer_points  # before the statistics: it splits the state
        policy.config.state_tcp = cfg.tcp
        policy.config.use_spatial_prompt = cfg.spatial_prompt and not cfg.vanilla
        policy.config.vlm.text_first |= cfg.model.text_first  # --text-first on a --base never grounded
        policy.config.grounding_loss_weight = cfg.grounding_loss_weight
        if state_dim != policy.config.action.state_dim:  # stage 1 never trains the action expert
            policy.config.action.state_dim = state_dim
            torch.manual_seed(cfg.seed)
            policy.model.action_model = ActionModel(policy.config)
        policy.set_statistics(stats, UNNORM_KEY)
    else:
        tok = cfg.tokenizer
        if tok is None or not (Path(tok) / "tokenizer.json").exists():
            tok = out / "tokenizer"
            make_tokenizer(frames, tok)
        model_cfg = cfg.model.config(use_spatial_prompt=cfg.spatial_prompt and not cfg.vanilla)
        model_cfg.grounding_loss_weight = cfg.grounding_loss_weight
        model_cfg.action.state_dim = state_dim
        model_cfg.answer_points = cfg.answer_points
        model_cfg.state_tcp = cfg.tcp
        model_cfg.spatial_answers = cotrained
        policy = ST4VLAPolicy.from_config(model_cfg, tokenizer_dir=tok, statistics=stats, seed=cfg.seed)
    policy.config.action.repeated_diffusion_steps = cfg.repeated_diffusion_steps
    policy.config.condition_on_answer = cfg.condition_on_answer
    policy.config.notes["training"] = training_note(cfg)
    policy.name = Path(cfg.out).name
    return policy


def training_note(cfg: Stage2Config) -> str:
    """What the checkpoint is, in its config's notes (the app and the cards show it)."""
    if cfg.vanilla:
        return "vanilla baseline"
    if cfg.true_points:
        return "control: the robot state ends with the true box centres (workbench/train/control.py)"
    if cfg.spatial_prompt:
        return "ST4VLA two-stage"
    if cfg.grounding_loss_weight > 0:
        return f"plain instruction, co-trained on {cfg.grounding_content} questions"
    return "plain instruction"


def module_groups(model) -> dict[str, list[torch.nn.Parameter]]:
    """Upstream's three learning-rate groups: the VLM, the action model (DiT), and the rest (query former)."""
    vlm = list(model.qwen_vl_interface.parameters())
    action = list(model.action_model.parameters())
    seen = {id(p) for p in vlm + action}
    return {"vlm": vlm, "action": action, "base": [p for p in model.parameters() if id(p) not in seen]}


def action_batch(policy, frames, idx, normalizer):
    items = [frames[i] for i in idx]
    vlm = policy.model.qwen_vl_interface
    images = [[f.image] for f in items]
    prompts = [policy.prompt(f.instruction) for f in items]
    # teacher forcing: the true answer, for the query former and/or as the DiT's points
    answers = [true_answer(f) if policy.config.reads_answer else None for f in items]
    if policy.config.condition_on_answer:
        inputs = vlm.build_inputs(images, prompts, answers=answers)
        inputs.pop("labels")
    else:
        inputs = vlm.build_inputs(images, prompts)
    chunks = normalizer.normalize(gripper_to_model(np.stack([f.chunk for f in items])))  # [B, T, 7]
    states = None
    if policy.reads_state:
        states = torch.cat(
            [
                policy.state_tensor(f.state, a, f.image.shape[:2], f.tcp_pose)
                for f, a in zip(items, answers, strict=True)
            ]
        ).float()  # [B, S]
    return inputs, images, torch.as_tensor(chunks, dtype=torch.float32), states


def stage2_frames(cfg: Stage2Config) -> tuple[list, list]:
    """(demonstration frames, co-training frames) at the size and chunk of --init when given."""
    size, chunk = cfg.model.image_size, cfg.model.chunk
    if cfg.init:
        init_cfg = json.loads((Path(cfg.init) / "config.json").read_text())
        size, chunk = init_cfg["image_size"], init_cfg["action"]["chunk_length"]
    frames = load_frames(cfg.data, size, chunk)
    if cfg.tcp:
        fill_tcp_poses(frames)
    if cfg.true_points:
        with_true_points(
            frames
        )  # [S] joints -> [S + 4]: the statistics and the DiT's state then include them
    questions = load_frames(cfg.grounding_data, size, chunk) if cfg.grounding_data else frames
    return frames, questions


def progress_bar(cfg: Stage2Config, step: int) -> tqdm:
    kind = "vanilla" if cfg.vanilla else "ST4VLA" if cfg.spatial_prompt else "plain prompt"
    return tqdm(total=cfg.steps, initial=step, desc=f"stage 2 {kind}", unit="step")


def train_stage2(cfg: Stage2Config) -> Path:
    seed_everything(cfg.seed, cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    frames, questions = stage2_frames(cfg)
    policy = build_policy(cfg, frames, out)
    model = policy.model.train()
    normalizer = ActionNormalizer(policy.statistics, UNNORM_KEY)
    opt = build_optimizer(module_groups(model), cfg.optim)
    sched = build_scheduler(opt, cfg.optim, cfg.steps)
    step, log = resume_or_start(out / "state", model, opt, sched, "stage 2", cfg.resume)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    rng = np.random.default_rng(cfg.seed + step)
    vlm = model.qwen_vl_interface
    bar = progress_bar(cfg, step)
    progress = LossProgress(bar, log, every=cfg.log_every)
    while step < cfg.steps:
        inputs, images, actions, states = action_batch(
            policy, frames, rng.integers(len(frames), size=cfg.batch_size), normalizer
        )
        cond, _ = model.condition(inputs, images)  # [B, Q, W]
        loss_a = model.action_loss(actions, cond, states)
        loss = loss_a
        loss_g = torch.zeros(())
        if cfg.grounding_loss_weight > 0:
            pairs = sample_pairs(questions, cfg.grounding_batch_size, rng, cfg.grounding_kinds)
            loss_g = model.grounding_loss(grounding_inputs(vlm, pairs))
            loss = loss + cfg.grounding_loss_weight * loss_g
        optimizer_step(loss, model.parameters(), opt, sched, cfg.optim.clip_norm)
        step += 1
        losses = {"action_loss": loss_a.item(), "grounding_loss": loss_g.item()}
        progress.record(step, losses, last=step == cfg.steps)
        if step % cfg.save_every == 0 or step == cfg.steps:
            save_train_state(out / "state", model, opt, sched, step, {"log": log})
            if cfg.save_latest:  # a loadable checkpoint of the run so far (the app can open it)
                model.eval()
                policy.save(out / "latest")
                model.train()
    bar.close()
    if cfg.head.steps > 0:
        log = [e for e in log if "head_step" not in e]
        log += train_head(policy, frames, normalizer, cfg.head, out, cfg.seed, cfg.resume)
    model.eval()
    policy.save(out / "final")
    (out / "log.json").write_text(json.dumps(log, indent=1))
    return out / "final"
