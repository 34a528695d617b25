"""The answer phase: a finished checkpoint's VLM taught its spatial prompt's answer on fresh scenes.

Not upstream; a measured fix for this project's small models. With the true answer at every control
step the bundled action expert succeeds on 80 of the 100 seen-object validation episodes, with its
own answers on 43 (research/training-notes.md, note 20): the spatial answer is what fails. On
the frames it was trained on the VLM answers almost perfectly (median source-centre error 0.4% of the
image on first frames); on new scenes it is three times worse and boxes another object in about one
first frame in ten. That is overfitting to the few hundred demonstration scenes, and the cure is
scenes: the simulator makes new ones for free.

So this phase trains the VLM alone on the spatial prompt (the question the DiT's points come from),
answered with the ground truth's boxes, over every frame of fresh demonstrations, each seen about
once. The query former and DiT stay as they are; the query tokens they read move with the VLM, so
follow this phase with `workbench train head` (which recomputes them). Resumable, with a progress bar.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from workbench.policy import checkpoint as ckpt
from workbench.policy.policy import ST4VLAPolicy
from workbench.train.data import FrameItem, load_frames
from workbench.train.head import true_answer
from workbench.train.optim import LossProgress, OptimConfig, build_optimizer, build_scheduler, optimizer_step
from workbench.train.state import resume_or_start, save_train_state


@dataclass
class AnswerPhaseConfig:
    """`workbench train answers`: the answer phase on a finished checkpoint (each field is a flag)."""

    checkpoint: str  # a workbench ST4VLA checkpoint whose config reads a spatial answer
    data: tuple[str, ...]  # demonstrations with ground truth (workbench train data)
    out: str  # run folder: state/, log.json, final/
    steps: int = 1500  # training steps
    batch_size: int = 16  # frames per step
    lr: float = 1e-4  # stage 2's VLM rate
    warmup_steps: int = 50  # warm-up steps of the rate
    save_every: int = 250  # steps between training states (out/state)
    log_every: int = 50  # steps between log rows
    seed: int = 0  # seeds the frame order
    threads: int = 1  # torch CPU threads
    resume: bool = True  # continue from out/state when a training state is there (--no-resume: start over)


def answer_batch(policy: ST4VLAPolicy, items: list[FrameItem]) -> dict[str, torch.Tensor]:
    """The spatial prompt on each frame, with the frame's true answer supervised."""
    answers = [true_answer(f) for f in items]
    vlm = policy.model.qwen_vl_interface
    return vlm.build_inputs(
        [[f.image] for f in items], [policy.prompt(f.instruction) for f in items], answers
    )


def tune_answers(cfg: AnswerPhaseConfig) -> Path:
    """Train the checkpoint's VLM on its spatial prompt's true answers; returns out/"final"."""
    out = Path(cfg.out)
    if Path(cfg.checkpoint).exists() and not ckpt.is_workbench_dir(Path(cfg.checkpoint)):
        raise ValueError(f"{cfg.checkpoint} is not a workbench checkpoint: tune one that stage 2 wrote")
    policy = ST4VLAPolicy.load(cfg.checkpoint)
    if not policy.config.use_spatial_prompt:
        raise ValueError(f"{cfg.checkpoint} has no spatial prompt (a vanilla model): nothing to tune")
    frames = load_frames(cfg.data, policy.config.image_size, policy.chunk_length)
    model, vlm = policy.model, policy.model.qwen_vl_interface
    optim = OptimConfig(lr=cfg.lr, warmup_steps=cfg.warmup_steps)
    opt = build_optimizer({"vlm": list(vlm.parameters())}, optim)
    sched = build_scheduler(opt, optim, cfg.steps)
    state_dir = out / "state"
    step, log = resume_or_start(state_dir, model, opt, sched, "the answer phase", cfg.resume)
    out.mkdir(parents=True, exist_ok=True)
    # A fixed permutation per pass, so each frame is seen once per pass and a resume picks up in place.
    order = np.random.default_rng(cfg.seed).permutation(len(frames))
    model.eval()  # dropout off in the query former; the VLM has none
    vlm.train()
    bar = tqdm(total=cfg.steps, initial=step, desc="answer phase", unit="step")
    progress = LossProgress(bar, log, every=cfg.log_every)
    while step < cfg.steps:
        start = (step * cfg.batch_size) % len(frames)
        idx = order[start : start + cfg.batch_size]
        loss = model.grounding_loss(answer_batch(policy, [frames[i] for i in idx]))
        optimizer_step(loss, vlm.parameters(), opt, sched, optim.clip_norm)
        step += 1
        progress.record(step, {"answer_loss": loss.item()}, last=step == cfg.steps)
        if step % cfg.save_every == 0 or step == cfg.steps:
            save_train_state(state_dir, model, opt, sched, step, {"log": log})
    bar.close()
    model.eval()
    policy.save(out / "final")
    (out / "log.json").write_text(
        json.dumps({"config": asdict(cfg), "frames": len(frames), "log": log}, indent=1)
    )
    return out / "final"
