"""Does the order of image and question matter? Run any workbench command, or a diagnostic script,
with the question BEFORE the image in every prompt, whatever the checkpoint's config says.

Training now has the option itself (`workbench train stage1 --text-first`, `VLMConfig.text_first`,
recorded in the checkpoint, which every tool then follows). This script remains for checkpoints
trained with it before that option existed (runs/v7/tf, runs/v10/tf_3k*), whose config does not say so.

Upstream (and the workbench) put the image first, so the visual tokens cannot see the question: the
answer position has to find the named object by itself, a two-step lookup. With the question first,
each visual token can compare its own object with the name. If a model learns "Is there a <name>?"
this way and not the other, the lookup in the language model is what stage 1 lacks
(workbench/train/NOTES.md, seventh session).

    python scripts/experiments/text_first.py workbench train stage1 --data ... --exists 0.95 --out runs/v7/tf
    python scripts/experiments/text_first.py breakdown --data runs/v5/scenes_test --checkpoint runs/v7/tf/final --exists
    python scripts/experiments/text_first.py scripts/experiments/answer_attention.py --checkpoint ... --data ...
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from workbench.policy.vlm import QwenVLInterface


def text_then_images(num_images: int, prompt: str) -> list[dict]:
    return [{"type": "text", "text": prompt}] + [{"type": "image"} for _ in range(num_images)]


def main() -> None:
    QwenVLInterface.user_content = staticmethod(text_then_images)
    command, args = sys.argv[1], sys.argv[2:]
    if command == "workbench":
        from workbench.cli import main as workbench_main

        raise SystemExit(workbench_main(args))
    if command == "breakdown":
        command = str(Path(__file__).parent / "grounding_breakdown.py")
    if command.endswith(".py"):  # any diagnostic script, e.g. answer_attention.py
        sys.path.insert(0, str(Path(command).parent))
        sys.argv = [command, *args]
        runpy.run_path(command, run_name="__main__")
        return
    raise SystemExit(f"usage: {sys.argv[0]} workbench <args> | breakdown <args> | <script.py> <args>")


if __name__ == "__main__":
    main()
