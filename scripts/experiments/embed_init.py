"""Run a workbench command with the language model's token embeddings initialised larger (a diagnostic).

After stage 1 the visual tokens enter the language model about 25 times louder than the text tokens
(RMS norm of the layer-0 hidden states: ~12-15 against ~0.5 for the 3,000- and 9,000-step stage 1; 1.4
against 0.3 at initialisation, std 0.02). The name in a question is then a small part of every text
position's residual stream after the first layer. This reinitialises the (tied) embedding matrix with
std `EMBED_STD` (default 1/sqrt(hidden): norm ~1) before training, nothing else.

    EMBED_STD=0.072 python scripts/experiments/embed_init.py train stage1 --data ... --out runs/v7/embed
"""

from __future__ import annotations

import os
import sys

import torch

from workbench.policy.policy import ST4VLAPolicy


def main() -> None:
    original = ST4VLAPolicy.from_config.__func__

    def from_config(cls, config, *args, **kwargs):
        policy = original(cls, config, *args, **kwargs)
        emb = policy.model.qwen_vl_interface.model.get_input_embeddings()
        std = float(os.environ.get("EMBED_STD", emb.weight.shape[1] ** -0.5))
        gen = torch.Generator().manual_seed(kwargs.get("seed", 0) or 0)
        with torch.no_grad():
            emb.weight.copy_(torch.randn(emb.weight.shape, generator=gen) * std)
        print(f"token embeddings reinitialised with std {std:.4f}")
        return policy

    ST4VLAPolicy.from_config = classmethod(from_config)
    from workbench.cli import main as workbench_main

    raise SystemExit(workbench_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
