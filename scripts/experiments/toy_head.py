"""Can the demo DiT action head learn a condition-dependent chunk at all, given an informative condition?

Eight fixed random "query former outputs", each paired with its own constant target chunk in [-1, 1];
the head (the demo size of workbench/train/common.py) is trained with the project's diffusion loss and
sampled with DDIM. If the sample error falls far below the marginal error (predicting the mean chunk),
the head and its conditioning work, and a policy that predicts the mean action is starved of
information upstream (VLM -> query former), not broken in the head.

    python scripts/experiments/toy_head.py
"""

from __future__ import annotations

import time

import torch

from workbench.policy.modeling import ActionModel
from workbench.train.common import model_size


def main(steps: int = 1500, conditions: int = 8, batch: int = 48) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = model_size("demo").config()
    head = ActionModel(cfg).train()
    q, w, t, d = cfg.qformer.num_queries, cfg.qformer.width, cfg.chunk_length, cfg.action_dim
    targets = torch.rand(conditions, t, d) * 2 - 1  # [K, T, D]
    codes = torch.randn(conditions, q, w)  # [K, Q, W]
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, betas=(0.9, 0.95))
    marginal = (targets.mean(0) - targets).abs().mean().item()
    t0 = time.time()
    for step in range(1, steps + 1):
        k = torch.randint(0, conditions, (batch,))
        loss = head.loss(targets[k], codes[k])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 300 == 0:
            head.eval()
            with torch.no_grad():
                sample = head.diffusion.ddim_sample(
                    lambda x, s: head.net(x, s, codes), torch.randn(conditions, t, d), 10, None
                )
            head.train()
            err = (sample - targets).abs().mean().item()
            print(
                f"step {step}: loss {loss.item():.3f}, sample error {err:.3f} (marginal {marginal:.3f}), {time.time() - t0:.0f} s"
            )


if __name__ == "__main__":
    main()
