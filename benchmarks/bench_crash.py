"""Crash safety of a recording session: SIGKILL a writer at random steps, then load what it left.

    python benchmarks/bench_crash.py [--kills 10] [--seed 0]

Each run starts a subprocess that writes StepRecords to a session (steps.jsonl, images) and its Rerun
recording (recording.rrd) and prints each step it finished; it is SIGKILLed after a random number of
steps (1..30). Then `load_session` reads the session (repairing the footer-less .rrd) and Rerun's own
`rerun rrd verify` checks the recording. Counts: sessions holding every finished step, .rrd files
refused before the load, and accepted after it. Saves benchmarks/results/bench_crash.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workbench.sessions import load_session  # noqa: E402
from workbench.viz.rerun_log import rrd_entities_by_step  # noqa: E402

WRITER = """
import sys
sys.path.insert(0, {tests!r})
from helpers import make_record
from workbench.sessions import SessionStore
from workbench.viz.rerun_log import RerunLogger
w = SessionStore({root!r}).create("crash")
log = RerunLogger(rrd_path=w.rrd_path, stream=False)
for s in range(10_000):
    r = make_record(s, policies=("A",))
    w.write(r)
    log.write(r)
    print(s, flush=True)
"""


def verify(path: Path) -> bool:
    cli = [sys.executable, "-c", "from rerun_cli.__main__ import main; main()", "rrd", "verify", str(path)]
    out = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    return out.returncode == 0 and "verified without error" in out.stdout + out.stderr


def one_kill(root: Path, after: int) -> dict:
    script = textwrap.dedent(WRITER.format(tests=str(ROOT / "tests"), root=str(root)))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    done: list[int] = []
    deadline = time.time() + 120
    while len(done) < after and time.time() < deadline:
        done.append(int(proc.stdout.readline()))
    time.sleep(random.uniform(0.0, 0.05))  # land anywhere in the next step
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rrd = root / "crash" / "recording.rrd"
    before = verify(rrd)
    session = load_session(root / "crash")
    steps = [r.step for r in session.records]
    rrd_steps = set(rrd_entities_by_step(rrd))
    return {
        "finished": len(done),
        "session_steps": len(steps),
        "every_finished_step_kept": steps[: len(done)] == done,
        "rrd_verified_before_load": before,
        "rrd_verified_after_load": verify(rrd),
        "rrd_holds_every_finished_step": set(done) <= rrd_steps,
        "notes": session.notes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    random.seed(args.seed)
    runs = []
    for k in range(args.kills):
        with tempfile.TemporaryDirectory() as tmp:
            run = one_kill(Path(tmp), random.randint(1, 30))
        runs.append(run)
        print(
            f"kill {k}: after {run['finished']} steps, session {run['session_steps']}, "
            f"kept {run['every_finished_step_kept']}, rrd verify before {run['rrd_verified_before_load']} "
            f"after {run['rrd_verified_after_load']}, rrd has every step {run['rrd_holds_every_finished_step']}",
            flush=True,
        )
    summary = {
        "kills": len(runs),
        "sessions_with_every_finished_step": sum(r["every_finished_step_kept"] for r in runs),
        "rrd_verified_before_load": sum(r["rrd_verified_before_load"] for r in runs),
        "rrd_verified_after_load": sum(r["rrd_verified_after_load"] for r in runs),
        "rrd_with_every_finished_step": sum(r["rrd_holds_every_finished_step"] for r in runs),
    }
    print(json.dumps(summary, indent=2))
    out = ROOT / "benchmarks" / "results" / "bench_crash.json"
    out.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
