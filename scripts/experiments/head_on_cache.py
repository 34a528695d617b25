"""Is the action expert short of steps? Train only the DiT head on frozen, cached conditions.

Stage 2 trains the VLM, query former and DiT jointly; on this CPU that is ~2,000 steps. Here the
checkpoint's VLM and query former are frozen, their output (the query tokens) is computed once per
frame, and the DiT head alone continues training on those cached conditions for many cheap steps.
Every `--eval-every` steps it reports, on frames of held-out episodes, the direction agreement of
the first predicted translation with the expert's (cosine, moving frames only) against the constant
mean direction, and the gripper agreement.

    python scripts/experiments/head_on_cache.py --checkpoint assets/checkpoints/vanilla-tiny --steps 6000
"""

from __future__ import annotations

import argparse
import copy
import json

import numpy as np
import torch
from tqdm import tqdm

from workbench.policy.normalization import ActionNormalizer
from workbench.policy.policy import ST4VLAPolicy
from workbench.train.data import gripper_to_model, load_frames


@torch.no_grad()
def cache_conditions(policy: ST4VLAPolicy, frames, batch: int = 32) -> torch.Tensor:
    model, vlm = policy.model.eval(), policy.model.qwen_vl_interface
    out = []
    for s in tqdm(range(0, len(frames), batch), desc="caching query tokens", unit="batch"):
        part = frames[s : s + batch]
        images = [[f.image] for f in part]
        cond, _ = model.condition(
            vlm.build_inputs(images, [policy.prompt(f.instruction) for f in part]), images
        )
        out.append(cond)
    return torch.cat(out)  # [N, Q, W]


def direction_report(policy, head, cond, states, first_actions, mean_dir) -> dict[str, float]:
    """Sample the first action of each held-out frame with DDIM (10 steps, CFG 1.5) and score it."""
    model = policy.model
    saved, model.action_model = model.action_model, head
    try:
        g = torch.Generator().manual_seed(0)
        noise = torch.randn((len(cond), policy.chunk_length, policy.action_dim), generator=g)
        sample = model.sample_actions(cond, noise, 10, 1.5, state=states)[:, 0].numpy()  # [N, 7]
    finally:
        model.action_model = saved
    pred = policy._normalizer.unnormalize(sample)
    e = first_actions
    moving = np.linalg.norm(e[:, :3], axis=1) >= 0.01

    def cos(a, b):
        return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-9)

    return {
        "direction_cos": float(cos(pred[moving, :3], e[moving, :3]).mean()),
        "mean_direction_cos": float(cos(mean_dir[None], e[moving, :3]).mean()),
        "gripper_agreement": float(np.mean((pred[:, 6] >= 0.5) == (e[:, 6] > 0))),
        "abs_error": float(np.abs(pred[:, :6] - e[:, :6]).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", nargs="+", default=["runs/v2/demos", "runs/v2/demos2"])
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--heldout", type=float, default=0.1, help="share of episodes held out")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    policy = ST4VLAPolicy.load(args.checkpoint)
    frames = load_frames(tuple(args.data), policy.config.image_size, policy.chunk_length)
    episodes = sorted({f.episode for f in frames})
    test_eps = set(
        np.random.default_rng(0).choice(episodes, int(len(episodes) * args.heldout), replace=False)
    )
    cond = cache_conditions(policy, frames)
    norm = ActionNormalizer(policy.statistics, policy.unnorm_key)
    chunks = torch.as_tensor(
        norm.normalize(gripper_to_model(np.stack([f.chunk for f in frames]))), dtype=torch.float32
    )
    states = torch.cat([policy.state_tensor(f.state) for f in frames]) if policy.reads_state else None
    test = np.array([f.episode in test_eps for f in frames])
    tr, te = np.flatnonzero(~test), np.flatnonzero(test)
    first = np.stack([f.chunk[0] for f in frames])[te]  # raw simulator actions (+1/-1 gripper)
    moving_train = np.stack([f.chunk[0] for f in frames])[tr]
    moving_train = moving_train[np.linalg.norm(moving_train[:, :3], axis=1) >= 0.01][:, :3]
    mean_dir = moving_train.mean(0)
    head = copy.deepcopy(policy.model.action_model).train()
    opt = torch.optim.AdamW(head.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)

    def report(step):
        head.eval()
        r = direction_report(policy, head, cond[te], None if states is None else states[te], first, mean_dir)
        head.train()
        print(json.dumps({"step": step, **{k: round(v, 4) for k, v in r.items()}}), flush=True)

    report(0)
    rng = np.random.default_rng(0)
    r = policy.config.action.repeated_diffusion_steps
    for step in tqdm(range(1, args.steps + 1), desc="head only", unit="step", mininterval=10):
        idx = torch.as_tensor(rng.choice(tr, args.batch_size))
        s = None if states is None else states[idx].repeat(r, 1)
        loss = head.loss(chunks[idx].repeat(r, 1, 1), cond[idx].repeat(r, 1, 1), s)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % args.eval_every == 0:
            report(step)


if __name__ == "__main__":
    main()
