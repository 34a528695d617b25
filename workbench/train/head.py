"""Stage 2, second phase: more steps for the action expert alone, on frozen and cached conditions.

Not upstream, a concession to the CPU budget. Upstream trains VLM, query former and DiT jointly
for ~100k steps; here the joint phase gets ~2,000, and the DiT is still far from fitted when it
ends (research/training-notes.md, note 3). A DiT step is cheap next to a VLM forward, so this
phase freezes the VLM and the query former, computes every frame's query tokens once (eval mode,
one frame at a time: exactly what the policy computes at control time) and trains only the action
model (the DiT, and the state token's embedder when there is one) for many steps on them.
Both bundled models get the same phase, so the comparison stays fair.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
import tyro
from tqdm import tqdm

from workbench.policy import checkpoint as ckpt
from workbench.policy.normalization import ActionNormalizer
from workbench.policy.policy import ST4VLAPolicy
from workbench.train.data import FrameItem, fill_tcp_poses, gripper_to_model, load_frames, task_answer
from workbench.train.optim import LossProgress, OptimConfig, build_optimizer, build_scheduler, optimizer_step
from workbench.train.state import resume_or_start, save_train_state


@dataclass
class HeadPhaseConfig:
    """The head phase: the DiT alone on cached conditions (stage 2's --head.*, `workbench train head`'s flags)."""

    steps: int = 0  # 0 = no head phase
    batch_size: int = 32  # cached frames per step
    lr: float = 1e-3  # the action model's peak rate
    warmup_steps: int = 100  # linear warm-up of the rate
    save_every: int = 500  # steps between training states
    log_every: int = 100  # steps between log rows
    # What the DiT reads as the spatial answer (answer-reading models): "own" = the model's greedy answers,
    # as at control time; "true" = the answer from the ground truth, so that the DiT learns to trust the
    # points exactly (research/training-notes.md, note 17: trained on its own, sometimes wrong, answers,
    # the DiT barely used even exact points).
    answers: Literal["own", "true"] = "own"

    def __post_init__(self) -> None:
        if self.answers not in ("own", "true"):
            raise ValueError(f"head-phase answers must be 'own' or 'true', got {self.answers!r}")


@dataclass
class CachedConditions:
    cond: torch.Tensor  # [N, Q, W] query tokens, one row per frame
    actions: torch.Tensor  # [N, T, 7] normalised chunks
    states: torch.Tensor | None  # [N, S] normalised robot states, when the model reads them


@torch.no_grad()
def cache_conditions(
    policy: ST4VLAPolicy, frames: list[FrameItem], normalizer: ActionNormalizer, answers: str = "own"
) -> CachedConditions:
    """Every frame's query tokens (and state), computed once; the answers read are the model's own or
    ("true") the ground truth's."""
    model = policy.model
    was_training = model.training
    model.eval()
    rows = []
    try:
        if not policy.config.reads_answer:
            answers = [None] * len(frames)
        elif answers == "true":
            answers = [true_answer(f) for f in frames]
        else:
            answers = own_answers(policy, frames)
        for f, answer in tqdm(
            zip(frames, answers, strict=True), total=len(frames), desc="caching query tokens", unit="frame",
            mininterval=5,
        ):  # fmt: skip
            inputs, _ = policy.condition_inputs([f.image], f.instruction, answer)
            rows.append(model.condition(inputs, [[f.image]])[0])  # [1, Q, W]
    finally:
        model.train(was_training)
    chunks = normalizer.normalize(gripper_to_model(np.stack([f.chunk for f in frames])))
    states = None
    if policy.reads_state:
        states = torch.cat(
            [
                policy.state_tensor(f.state, a, f.image.shape[:2], f.tcp_pose)
                for f, a in zip(frames, answers, strict=True)
            ]
        ).float()
    return CachedConditions(torch.cat(rows), torch.as_tensor(chunks, dtype=torch.float32), states)


def true_answer(item: FrameItem) -> str:
    """The spatial prompt's answer from the frame's ground truth (the key objects' boxes)."""
    if item.ground_truth is None:
        raise ValueError(f"episode {item.episode} has no ground truth: the true answer needs it")
    return task_answer(item.ground_truth, item.frame)


@torch.no_grad()
def own_answers(policy: ST4VLAPolicy, frames: list[FrameItem], batch: int = 64) -> list[str]:
    """The model's greedy answers to its spatial prompt, as it writes them before acting (answer-conditioned
    or answer-points models), decoded in batches (nine times faster on the CPU than one frame at a time)."""
    out = []
    for start in tqdm(range(0, len(frames), batch), desc="answering the spatial prompt", unit="batch"):
        items = frames[start : start + batch]
        out += policy.answer_spatial_prompt([[f.image] for f in items], [f.instruction for f in items])
    return out


def train_head(
    policy: ST4VLAPolicy,
    frames: list[FrameItem],
    normalizer: ActionNormalizer,
    cfg: HeadPhaseConfig,
    out: Path,
    seed: int,
    resume: bool = True,
) -> list[dict]:
    """Run the head phase; returns its log. Resumable from out/"head_state" like the joint phase."""
    model = policy.model
    head = model.action_model
    optim = OptimConfig(lr=cfg.lr, warmup_steps=cfg.warmup_steps)
    opt = build_optimizer({"action": list(head.parameters())}, optim)
    sched = build_scheduler(opt, optim, cfg.steps)
    state_dir = out / "head_state"
    step, log = resume_or_start(state_dir, model, opt, sched, "the head phase", resume)
    if step >= cfg.steps:
        return log
    cached = cache_conditions(policy, frames, normalizer, cfg.answers)
    rng = np.random.default_rng(seed + 1_000_003 + step)
    r = policy.config.action.repeated_diffusion_steps
    head.train()
    bar = tqdm(total=cfg.steps, initial=step, desc="stage 2 head phase", unit="step")
    progress = LossProgress(bar, log, step_key="head_step", every=cfg.log_every)
    while step < cfg.steps:
        idx = torch.as_tensor(rng.integers(len(frames), size=cfg.batch_size))
        states = None if cached.states is None else cached.states[idx].repeat(r, 1)
        loss = head.loss(cached.actions[idx].repeat(r, 1, 1), cached.cond[idx].repeat(r, 1, 1), states)
        optimizer_step(loss, head.parameters(), opt, sched, optim.clip_norm)
        step += 1
        progress.record(step, {"action_loss": loss.item()}, last=step == cfg.steps)
        if step % cfg.save_every == 0 or step == cfg.steps:
            save_train_state(state_dir, model, opt, sched, step, {"log": log})
    bar.close()
    return log


@dataclass
class HeadContinueConfig:
    """`workbench train head`: more head-phase steps for a finished checkpoint, on (new) demonstrations.

    The VLM, query former and the checkpoint's normalisation statistics stay as they are, so the result
    reads observations exactly as the checkpoint did; only the action model learns."""

    checkpoint: str  # a stage-2 checkpoint (workbench format)
    data: tuple[str, ...]  # demonstrations (LeRobot layout)
    out: str  # run folder: state/, log.json, final/
    head: Annotated[HeadPhaseConfig, tyro.conf.OmitArgPrefixes]  # --steps, --batch-size, --lr, --answers, ...
    seed: int = 0  # seeds batches and noise
    threads: int = 1  # torch CPU threads
    resume: bool = True  # continue from out/state when a training state is there (--no-resume: start over)

    def __post_init__(self) -> None:
        if self.head.steps < 1:
            raise ValueError(
                f"--steps: give the number of head steps to train (at least 1), got {self.head.steps}"
            )


def continue_head(cfg: HeadContinueConfig) -> Path:
    """Train the checkpoint's action model for cfg.head.steps more steps; returns out/"final"."""
    out = Path(cfg.out)
    if Path(cfg.checkpoint).exists() and not ckpt.is_workbench_dir(Path(cfg.checkpoint)):
        raise ValueError(f"{cfg.checkpoint} is not a workbench checkpoint: continue one that stage 2 wrote")
    policy = ST4VLAPolicy.load(cfg.checkpoint)
    frames = load_frames(cfg.data, policy.config.image_size, policy.chunk_length)
    if policy.config.state_tcp:
        fill_tcp_poses(frames)
    normalizer = ActionNormalizer(policy.statistics, policy.unnorm_key)
    out.mkdir(parents=True, exist_ok=True)
    log = train_head(policy, frames, normalizer, cfg.head, out, cfg.seed, cfg.resume)
    policy.model.eval()
    policy.save(out / "final")
    (out / "log.json").write_text(
        json.dumps({"checkpoint": cfg.checkpoint, "data": cfg.data, "log": log}, indent=1)
    )
    return out / "final"
