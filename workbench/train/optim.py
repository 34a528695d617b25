"""Optimiser and schedule shared by both training stages.

Upstream (InternVLA-M1) trains with AdamW(0.9, 0.95), per-module learning rates (base 5e-5, VLM 1e-5,
action 1e-4), linear warm-up then cosine decay, and gradient clipping at 1.0. The tiny models here
keep the ratios and the shape of the schedule but scale the magnitudes: trained from scratch on a
CPU, they need far larger steps (see research/training-notes.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from tqdm import tqdm


@dataclass
class OptimConfig:
    lr: float = 3e-4  # the "base" rate: every parameter not in a named group
    lr_vlm: float | None = None  # the VLM's rate (None: same as base)
    lr_action: float | None = None  # query former + DiT head (None: same as base)
    lr_vision: float | None = None  # the VLM's vision tower and merger, when grouped apart (None: lr_vlm)
    warmup_steps: int = 200  # linear warm-up to the peak rates (--warmup)
    min_lr_ratio: float = 0.05  # cosine decays to this fraction of the peak
    weight_decay: float = 0.01  # AdamW's
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW's
    clip_norm: float = 1.0  # gradients clipped to this global norm


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at `step` (0-based): linear warm-up, then cosine."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(groups: dict[str, Iterable[torch.nn.Parameter]], cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over named parameter groups ("base", "vlm", "vision", "action"), each with its own peak rate."""
    rates = {"base": cfg.lr, "vlm": cfg.lr_vlm or cfg.lr, "action": cfg.lr_action or cfg.lr}
    rates["vision"] = rates["vlm"] if cfg.lr_vision is None else cfg.lr_vision
    param_groups = []
    for name, params in groups.items():
        if name not in rates:
            raise ValueError(f"unknown parameter group {name!r}: use one of {sorted(rates)}")
        params = [p for p in params if p.requires_grad]
        if params:
            param_groups.append({"params": params, "lr": rates[name], "name": name})
    if not param_groups:
        raise ValueError("no trainable parameters were given to the optimiser")
    return torch.optim.AdamW(param_groups, betas=cfg.betas, weight_decay=cfg.weight_decay)


def build_scheduler(
    opt: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, cfg.warmup_steps, total_steps, cfg.min_lr_ratio)
    )


def optimizer_step(
    loss: torch.Tensor,
    params: Iterable[torch.nn.Parameter],
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    clip_norm: float,
) -> None:
    """One update as upstream does it: backward, clip the gradient norm, step, advance the schedule."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip_norm)
    opt.step()
    sched.step()


def smoothed(previous: float | None, value: float, keep: float = 0.95) -> float:
    """Exponential moving average for the progress bar and the log (the first value starts it)."""
    return value if previous is None else keep * previous + (1 - keep) * value


@dataclass
class LossProgress:
    """The bookkeeping of a training loop's losses (stage 2, the head phase, the answer phase): each
    loss's running average on the progress bar, and appended to `log` every `every` steps and at the
    last one. The bar shows a loss's log field without "_loss" ("action_loss" -> "action")."""

    bar: tqdm
    log: list[dict]
    step_key: str = "step"
    every: int = 50
    running: dict[str, float] = field(default_factory=dict)
    t0: float = field(default_factory=time.time)

    def record(self, step: int, losses: dict[str, float], last: bool) -> None:
        for key, value in losses.items():
            self.running[key] = smoothed(self.running.get(key), value)
        self.bar.update(1)
        self.bar.set_postfix({k.removesuffix("_loss"): f"{v:.3f}" for k, v in self.running.items()})
        if step % self.every == 0 or last:
            rounded = {k: round(v, 4) for k, v in self.running.items()}
            minutes = round((time.time() - self.t0) / 60, 2)
            self.log.append({self.step_key: step, **rounded, "minutes": minutes})
