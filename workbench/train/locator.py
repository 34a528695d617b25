"""A plain localisation head: the ablation's learned control (docs/ablation.md).

A small convolutional network, not a VLM, trained on the same true boxes as stage 1's grounding: given
the model-size image and the instruction, it predicts the four numbers an answer-points model reads
(the centres of the object to move's and the target's boxes, [-1, 1] of the image; workbench/train/
control.py). At evaluation its predictions replace the true points of the control arm (whose DiT was
trained on true points, as st4vla_points' was on true answers), so that arm acts on coordinates from a
plain detector, where st4vla_points acts on its spatially guided VLM's.

    workbench train locator --data runs/ablation/data/demos runs/ablation/data/scenes --out runs/locator

Architecture: three strided convolutions (plus two coordinate channels) give a [C, S/8, S/8] map; the
instruction, as a bag of words hashed into `buckets` (crc32: the same ids in every process), scales and
shifts it (FiLM); a 1x1 convolution gives one heat map per point, whose soft-argmax is the point, and a
pooled logit per point says whether it exists (a task without a target: (-1, -1), as answer points
write a missing box). Loss: L1 on the points that exist, binary cross-entropy on existence.
Invariants: predictions are [4] float32 in [-1, 1]; an absent point is exactly (-1, -1).
"""

from __future__ import annotations

import json
import re
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from workbench.train.common import seed_everything
from workbench.train.control import true_points
from workbench.train.data import FrameItem, load_frames, resize_to_model
from workbench.train.optim import OptimConfig, build_optimizer, build_scheduler, optimizer_step, smoothed


@dataclass
class LocatorConfig:
    """`workbench train locator`: a plain localisation head on the true boxes (each field is a flag)."""

    data: tuple[str, ...]  # datasets with ground truth (LeRobot layout): demonstrations and/or scenes
    out: str  # run folder: config.json, log.json, final/ (locator.safetensors, locator.json)
    image_size: int = 112  # the model's input size (the demo model's 112)
    steps: int = 7000  # training steps
    batch_size: int = 16  # frames per step
    lr: float = 1e-3  # peak rate (warm-up then cosine)
    warmup_steps: int = 200
    width: int = 64  # channels of the feature map
    buckets: int = 2048  # hashed instruction words
    log_every: int = 250  # steps between log rows
    heldout_episodes: int = 20  # last episodes of the last dataset: the logged error is measured there
    seed: int = 0
    threads: int = 1  # torch CPU threads

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(
                f"--steps and --batch-size must be at least 1, got {self.steps}, {self.batch_size}"
            )


def word_ids(instruction: str, buckets: int) -> list[int]:
    """The instruction's lower-cased words, hashed into [0, buckets) (crc32: stable across processes)."""
    words = re.findall(r"[a-z0-9]+", instruction.lower()) or [""]
    return [zlib.crc32(w.encode()) % buckets for w in words]


class Locator(nn.Module):
    def __init__(self, width: int = 64, buckets: int = 2048):
        super().__init__()
        self.buckets = buckets
        self.convs = nn.Sequential(
            nn.Conv2d(5, 32, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(32, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.words = nn.EmbeddingBag(buckets, width, mode="mean")
        self.film = nn.Linear(width, 2 * width)
        self.mix = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.heat = nn.Conv2d(width, 2, 1)  # one heat map per point (object to move, target)
        self.exists = nn.Linear(width, 2)

    def forward(self, images: torch.Tensor, words: torch.Tensor, offsets: torch.Tensor):
        """images [B, 3, S, S] in [0, 1] -> (points [B, 4] in [-1, 1], existence logits [B, 2])."""
        b, _, s, _ = images.shape
        ramp = torch.linspace(-1.0, 1.0, s, device=images.device)
        grid = torch.stack(torch.meshgrid(ramp, ramp, indexing="xy")).expand(b, 2, s, s)  # x, y channels
        x = self.convs(torch.cat([images, grid], dim=1))  # [B, C, h, w]
        gamma, beta = self.film(self.words(words, offsets)).chunk(2, dim=1)  # [B, C] each
        x = self.mix(x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None])
        h, w = x.shape[-2:]
        heat = self.heat(x).flatten(2).softmax(-1).view(b, 2, h, w)  # [B, 2, h, w]
        xs = torch.linspace(-1.0, 1.0, w, device=x.device) * (1 - 1 / w)  # cell centres
        ys = torch.linspace(-1.0, 1.0, h, device=x.device) * (1 - 1 / h)
        px, py = (heat.sum(2) * xs).sum(-1), (heat.sum(3) * ys).sum(-1)  # [B, 2] each
        points = torch.stack([px[:, 0], py[:, 0], px[:, 1], py[:, 1]], dim=1)  # [B, 4]
        return points, self.exists(x.mean((2, 3)))


def batch_inputs(images: list[np.ndarray], instructions: list[str], buckets: int):
    """([B, 3, S, S] float in [0, 1], word ids, offsets) for Locator.forward."""
    x = torch.as_tensor(np.stack(images), dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    ids = [word_ids(t, buckets) for t in instructions]
    offsets = torch.as_tensor(np.cumsum([0] + [len(i) for i in ids[:-1]]), dtype=torch.long)
    return x, torch.as_tensor([w for i in ids for w in i], dtype=torch.long), offsets


def targets(frames: list[FrameItem]) -> tuple[torch.Tensor, torch.Tensor]:
    """([B, 4] true points, [B, 2] 1 where the point exists)."""
    points = torch.as_tensor(
        np.stack([true_points(f.ground_truth, f.frame) for f in frames]), dtype=torch.float32
    )
    present = (points.view(-1, 2, 2) > -1).any(-1).float()
    return points, present


def loss_of(model: Locator, frames: list[FrameItem]) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1 on existing points + BCE on existence, the per-axis absolute error of existing points)."""
    points, present = targets(frames)
    pred, logits = model(
        *batch_inputs([f.image for f in frames], [f.instruction for f in frames], model.buckets)
    )
    mask = present.repeat_interleave(2, dim=1)  # [B, 4]
    error = ((pred - points).abs() * mask).sum() / mask.sum().clamp(min=1)
    return error + nn.functional.binary_cross_entropy_with_logits(logits, present), error.detach()


def train_locator(cfg: LocatorConfig) -> Path:
    seed_everything(cfg.seed, cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    frames = [f for f in load_frames(cfg.data, cfg.image_size, 1) if f.ground_truth is not None]
    last = max(f.episode for f in frames)
    held = [f for f in frames if f.episode > last - cfg.heldout_episodes]
    train = [f for f in frames if f.episode <= last - cfg.heldout_episodes] or frames
    model = Locator(cfg.width, cfg.buckets)
    optim = OptimConfig(lr=cfg.lr, warmup_steps=cfg.warmup_steps)
    opt = build_optimizer({"base": list(model.parameters())}, optim)
    sched = build_scheduler(opt, optim, cfg.steps)
    rng = np.random.default_rng(cfg.seed)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    log, running, t0 = [], None, time.time()
    for step in tqdm(range(1, cfg.steps + 1), desc="locator", unit="step"):
        loss, _ = loss_of(model, [train[int(i)] for i in rng.integers(len(train), size=cfg.batch_size)])
        optimizer_step(loss, model.parameters(), opt, sched, optim.clip_norm)
        running = smoothed(running, loss.item())
        if step % cfg.log_every == 0 or step == cfg.steps:
            log.append({"step": step, "loss": round(running, 4), "minutes": round((time.time() - t0) / 60, 2),
                        "heldout_point_error": round(heldout_error(model, held), 4)})  # fmt: skip
            tqdm.write(json.dumps(log[-1]))
    (out / "log.json").write_text(json.dumps(log, indent=1))
    save_locator(model, out / "final", cfg)
    return out / "final"


@torch.no_grad()
def heldout_error(model: Locator, frames: list[FrameItem], batch: int = 64) -> float:
    """Mean absolute error per axis of the existing points ([-1, 1] units: half of it is a fraction of the
    image) on held-out frames; nan without any."""
    if not frames:
        return float("nan")
    was = model.training
    model.eval()
    errors = [loss_of(model, frames[i : i + batch])[1].item() for i in range(0, len(frames), batch)]
    model.train(was)
    return float(np.mean(errors))


def save_locator(model: Locator, folder: Path, cfg: LocatorConfig) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(folder / "locator.safetensors"))
    (folder / "locator.json").write_text(
        json.dumps({"width": cfg.width, "buckets": cfg.buckets, "image_size": cfg.image_size}, indent=1)
    )


def load_locator(folder: str | Path) -> tuple[Locator, int]:
    """(the locator in eval mode, its image size) from a `final` folder that train_locator wrote."""
    folder = Path(folder)
    if not (folder / "locator.json").exists():
        raise FileNotFoundError(
            f"{folder} holds no locator.json: pass the final/ folder of `workbench train locator`"
        )
    meta = json.loads((folder / "locator.json").read_text())
    model = Locator(meta["width"], meta["buckets"])
    model.load_state_dict(load_file(str(folder / "locator.safetensors")))
    return model.eval(), int(meta["image_size"])


@torch.no_grad()
def locate(model: Locator, image: np.ndarray, instruction: str, image_size: int) -> np.ndarray:
    """[4] the predicted points of one camera image (any size; resized as the policy resizes it)."""
    points, logits = model(*batch_inputs([resize_to_model(image, image_size)], [instruction], model.buckets))
    out = points[0].clamp(-1.0, 1.0).numpy().astype(np.float32)
    for k in range(2):
        if logits[0, k] < 0:
            out[2 * k : 2 * k + 2] = -1.0  # the point does not exist: as answer points write a missing box
    return out


def located_points_input(folder: str | Path):
    """An input transform (workbench.policy_input): the observation's joints, then the locator's points."""
    from dataclasses import replace

    model, size = load_locator(folder)

    def transform(inputs, step: int):
        obs = inputs.observation
        if obs is None or obs.state is None:
            raise ValueError(
                "the learned control appends points to the robot state: the observation has none"
            )
        points = locate(model, obs.images[obs.main_camera], inputs.instruction, size)
        return replace(inputs, state=np.concatenate([obs.state, points]))

    return transform
