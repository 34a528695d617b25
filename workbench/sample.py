"""The sample session: the built-in simulator stepped by a policy through the Runner, saved with its
recording so the app replays something with no model at all.

    python -m workbench.sample --root sessions --id sample --steps 12   # [--checkpoint DIR]

writes sessions/<id>/ (workbench/sessions.py's layout: session.json, steps.jsonl, images/, recording.rrd).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.policy import ST4VLAPolicy, tiny_config
from workbench.runner import PolicySlot, Runner, run_episode
from workbench.sessions import SessionStore
from workbench.sources import SimSource
from workbench.viz.rerun_log import RerunLogger


def write_sample_session(
    root: str | Path, session_id: str = "sample", *, task: str = "tabletop_put_on", steps: int = 12,
    checkpoint: str | Path | None = None, seed: int = 0,
) -> Path:  # fmt: skip
    """Run the built-in simulator with a policy (a bundled checkpoint, or the tiny random one) and save
    it as a session with its recording.rrd. Returns the session's folder."""
    import torch  # heavy: only the writer needs it, not `import workbench.sample`

    torch.set_num_threads(1)
    policy = ST4VLAPolicy.load(checkpoint) if checkpoint else ST4VLAPolicy.from_config(tiny_config())
    name = Path(checkpoint).name if checkpoint else "tiny-random"
    meta = {
        "source": {"kind": "sim", "task": task, "seed": seed},
        "slots": [name],
        "checkpoint": str(checkpoint),
    }
    writer = SessionStore(root).create(session_id, meta)
    logger = RerunLogger(rrd_path=writer.rrd_path, stream=False)
    source = SimSource.from_task(task, width=224, height=224)
    runner = Runner(source, [PolicySlot(name, policy)], sinks=[writer, logger])
    run_episode(runner, seed, max_steps=steps)  # the one episode loop; act seeds act_seed(seed, k)
    runner.close()
    return writer.path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Run the sim with a policy and save sessions/<id>/.")
    ap.add_argument("--root", default="sessions")
    ap.add_argument("--id", default="sample")
    ap.add_argument("--task", default="tabletop_put_on")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--checkpoint", default=None)
    args = ap.parse_args(argv)
    print(
        write_sample_session(args.root, args.id, task=args.task, steps=args.steps, checkpoint=args.checkpoint)
    )


if __name__ == "__main__":
    main()
