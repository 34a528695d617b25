"""A loadable checkpoint from a run's training state (`<out>/state`, or a copy taken mid-run).

Training saves a resumable state every few hundred steps but a checkpoint only at the end; to compare
two runs at the same step (grounding_breakdown.py, name_probe.py), copy each run's state when it
reaches that step and turn the copies into checkpoints:

    python scripts/experiments/state_to_checkpoint.py --state runs/v6/snap_stage1_3k_2250 \
        --tokenizer runs/v6/stage1_3k/tokenizer --out runs/v6/ckpt_stage1_3k_2250
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from workbench.policy.policy import ST4VLAPolicy
from workbench.train.common import model_size
from workbench.train.state import load_model_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--state", required=True, help="a training state directory (state.json, model.safetensors)"
    )
    ap.add_argument("--tokenizer", required=True, help="the run's tokenizer directory")
    ap.add_argument("--size", default="demo")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    policy = ST4VLAPolicy.from_config(model_size(args.size).config(), tokenizer_dir=args.tokenizer)
    load_model_weights(args.state, policy.model)
    step = json.loads((Path(args.state) / "state.json").read_text())["step"]
    policy.save(args.out, card=f"# {args.state} at step {step}\n\nConverted by state_to_checkpoint.py.\n")
    print(f"checkpoint of step {step}: {args.out}")


if __name__ == "__main__":
    main()
