"""DDPM training schedule and DDIM sampling, written out (upstream uses guided-diffusion's code).

Upstream's ActionModel: 100 steps, `squaredcos_cap_v2` betas, epsilon prediction, MSE loss;
sampling with DDIM (eta = 0, no clipping) on a respaced schedule "ddim{N}". Upstream builds the DDIM
sampler once and keeps its step count for the model's lifetime (a bug); here it is chosen per call.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def cosine_betas(steps: int, max_beta: float = 0.999) -> torch.Tensor:
    """squaredcos_cap_v2 (Nichol & Dhariwal): alpha_bar(t) = cos((t + 0.008) / 1.008 * pi / 2)^2."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), max_beta) for i in range(steps)]
    return torch.tensor(betas, dtype=torch.float64)


def linear_betas(steps: int) -> torch.Tensor:
    scale = 1000 / steps
    return torch.linspace(scale * 0.0001, scale * 0.02, steps, dtype=torch.float64)


def ddim_timesteps(steps: int, num_ddim_steps: int) -> list[int]:
    """The kept timesteps of "ddim{N}" respacing: the stride whose range(0, steps, stride) has N entries.

    Where no stride gives exactly N (e.g. 30 of 100), fall back to N evenly spaced steps.
    """
    if not 1 <= num_ddim_steps <= steps:
        raise ValueError(f"num_ddim_steps must be in 1..{steps}, got {num_ddim_steps}.")
    for stride in range(1, steps):
        if len(range(0, steps, stride)) == num_ddim_steps:
            return list(range(0, steps, stride))
    if num_ddim_steps == steps:
        return list(range(steps))
    return sorted({round(x) for x in torch.linspace(0, steps - 1, num_ddim_steps).tolist()})


class GaussianDiffusion:
    """Noise schedule (float64 buffers, as upstream) with q_sample for training and a DDIM sampler."""

    def __init__(self, steps: int = 100, schedule: str = "squaredcos_cap_v2"):
        if schedule == "squaredcos_cap_v2":
            betas = cosine_betas(steps)
        elif schedule == "linear":
            betas = linear_betas(steps)
        else:
            raise ValueError(f"Unknown noise schedule {schedule!r}; use 'squaredcos_cap_v2' or 'linear'.")
        self.num_timesteps = steps
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)  # [steps]

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps;  x0, noise [B, T, D], t [B]."""
        abar = self.alphas_cumprod.to(x0.device)[t].float().view(-1, 1, 1)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    @torch.no_grad()
    def ddim_sample(
        self,
        eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        noise: torch.Tensor,
        num_ddim_steps: int,
        on_step: Callable[[int, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """DDIM, eta = 0. eps_fn(x_t [B,T,D], t [B] original timesteps) -> predicted noise [B,T,D]."""
        kept = ddim_timesteps(self.num_timesteps, num_ddim_steps)
        abar = self.alphas_cumprod[kept]  # the respaced schedule's alphas_cumprod
        x = noise
        for i in reversed(range(len(kept))):
            t = torch.full((x.shape[0],), kept[i], dtype=torch.long, device=x.device)
            eps = eps_fn(x, t).double()
            a, a_prev = abar[i], (abar[i - 1] if i > 0 else torch.tensor(1.0, dtype=torch.float64))
            x64 = x.double()
            x0 = (x64 - (1 - a).sqrt() * eps) / a.sqrt()  # predicted clean actions (no clipping)
            x = (a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps).to(noise.dtype)
            if on_step is not None:
                on_step(len(kept) - 1 - i, x)
        return x
