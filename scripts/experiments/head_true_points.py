"""Does an answer-points DiT act better when its head phase reads the true points, not its own?

The bundled st4vla-tiny's head phase read the model's own answers on the training frames. Closed loop,
feeding it the *true* points instead of its own lifted success only from 28 to 32 of 100 seen-object
validation episodes (NOTES, seventeenth session): trained on answers that are sometimes wrong, the DiT
learnt to lean on them little. This continues the checkpoint's head phase on the true answers of every
frame (HeadPhaseConfig.answers = "true"), for a DiT that trusts its points; it still acts on its own
answers at control time.

    python scripts/experiments/head_true_points.py --checkpoint assets/checkpoints/st4vla-tiny \
        --head-steps 6000 --out runs/v17/head_true
    workbench evaluate --checkpoint runs/v17/head_true/final --episodes 10 --seed 40000 --max-steps 50 \
        --cells seen/seen seen/unseen --workers 2 --out runs/v17/val/head_true
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from workbench.policy.normalization import ActionNormalizer
from workbench.policy.policy import ST4VLAPolicy
from workbench.train.data import load_frames
from workbench.train.head import HeadPhaseConfig, train_head
from workbench.train.stage2 import UNNORM_KEY


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", nargs="+", default=["runs/v2/demos", "runs/v2/demos2"])
    ap.add_argument("--head-steps", type=int, default=6000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    policy = ST4VLAPolicy.load(args.checkpoint)
    if not policy.config.answer_points:
        raise SystemExit(f"{args.checkpoint} does not read its answer's points (config.answer_points)")
    frames = load_frames(tuple(args.data), policy.config.image_size, policy.chunk_length)
    normalizer = ActionNormalizer(policy.statistics, UNNORM_KEY)
    cfg = HeadPhaseConfig(steps=args.head_steps, answers="true")
    log = train_head(policy, frames, normalizer, cfg, out, seed=0)
    policy.model.eval()
    policy.save(out / "final")
    (out / "log.json").write_text(json.dumps(log, indent=1))


if __name__ == "__main__":
    main()
