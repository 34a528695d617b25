"""The runner's own overhead per step, and recording bytes per step, at 224x224.

    python benchmarks/bench_runner.py [--steps 20] [--task tabletop_move_near]

Drives the built-in simulator with the tiny random policy and every sink (Rerun .rrd + live
stream, the session store). Per step it splits the wall time into
    env       the physics step and render (source.step)
    policy    spatial() + act() of the model
    snapshot  the simulator saving its state for branching (pybullet saveBullet; physics-side)
    runner    everything else in the runner: controller, ensembling, rollout, metrics, record
    sinks     Rerun logging (JPEG encode) and the session write (PNG + fsync)
Overhead = step wall time - env - policy - snapshot (all but model and physics), as % of the step.
Three runs: with the explicit grounding decode (greedy decode of the untrained VLM), act() only, and
act() only with background sinks (Runner(background_sinks=True): sinks write on a worker thread).
Prints a table and writes benchmarks/results/bench_runner.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
RESULTS = Path(__file__).parent / "results" / "bench_runner.json"


def run(task: str, steps: int, spatial: bool, seed: int, background: bool = False) -> dict:
    import torch
    from tqdm import tqdm

    from workbench.policy import ST4VLAPolicy, tiny_config
    from workbench.runner import PolicySlot, Runner
    from workbench.sessions import SessionStore
    from workbench.sources import SimSource
    from workbench.viz.rerun_log import RerunLogger

    torch.manual_seed(0)
    policy = ST4VLAPolicy.from_config(tiny_config())
    root = Path(tempfile.mkdtemp(prefix="bench_runner_"))
    writer = SessionStore(root).create("bench")
    logger = RerunLogger(rrd_path=writer.rrd_path, stream=True)
    slot = PolicySlot("A", policy, num_ddim_steps=10, spatial_query="box" if spatial else None)
    source = SimSource.from_task(task, width=224, height=224)
    runner = Runner(source, [slot], sinks=[logger, writer], background_sinks=background)
    mode = ("spatial+act" if spatial else "act only") + (" (bg sinks)" if background else "")
    rows: list[dict] = []
    streamed = 0
    t0 = time.perf_counter()
    runner.reset(seed=seed)
    for _ in tqdm(range(steps), desc=f"runner ({mode})", file=sys.stderr):
        if runner.done:
            break
        t = time.perf_counter()
        record = runner.step()
        wall = time.perf_counter() - t
        if not background:
            runner.flush()
        streamed += len(logger.read())  # background: whatever the worker has logged so far

        tm = record.timings
        rows.append({**tm, "sinks": sum(runner.sink_seconds.values()), "wall": wall, **runner.sink_seconds})
    runner.flush()
    streamed += len(logger.read())
    total_s = time.perf_counter() - t0  # includes the sinks' backlog: the honest per-step throughput
    runner.close()
    n = len(rows)
    images = sum(p.stat().st_size for p in (writer.path / "images").rglob("*"))
    steps_bytes = (writer.path / "steps.jsonl").stat().st_size

    def med(key: str) -> float:
        return statistics.median(r.get(key, 0.0) for r in rows)

    # all but model and physics, as the step's caller sees it (with background sinks, what they
    # cost the loop through contention for the 2 cores shows up here too)
    overhead = [(r["wall"] - r["env"] - r["policy"] - r["snapshot"]) / r["wall"] for r in rows]
    return {
        "mode": mode,
        "steps": n,
        "median_ms": {k: 1000 * med(k) for k in ("wall", "env", "policy", "snapshot", "runner", "sinks")},
        "median_sink_ms": {k: 1000 * med(k) for k in runner.sink_seconds},
        "overhead_pct_median": 100 * statistics.median(overhead),
        "overhead_pct_max": 100 * max(overhead),
        "rrd_bytes_per_step": writer.rrd_path.stat().st_size / (n + 1),
        "stream_bytes_per_step": streamed / n,
        "session_bytes_per_step": (images + steps_bytes) / (n + 1),
        "total_s": total_s,
        "total_ms_per_step": 1000 * total_s / (n + 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--task", default="tabletop_move_near")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    configs = [(True, False), (False, False), (False, True)]  # (spatial, background sinks)
    results = [run(args.task, args.steps, spatial, args.seed, bg) for spatial, bg in configs]
    header = f"{'mode':<24} {'steps':>5} {'step ms':>8} {'env':>6} {'policy':>7} {'snap':>6} {'runner':>7} {'sinks':>6} {'ovh %':>6} {'rrd KB/step':>11} {'session KB/step':>15} {'total ms/step':>13}"
    print(header)
    print("-" * len(header))
    for r in results:
        m = r["median_ms"]
        print(
            f"{r['mode']:<24} {r['steps']:>5} {m['wall']:>8.1f} {m['env']:>6.1f} {m['policy']:>7.1f} {m['snapshot']:>6.1f} "
            f"{m['runner']:>7.2f} {m['sinks']:>6.1f} {r['overhead_pct_median']:>6.1f} "
            f"{r['rrd_bytes_per_step'] / 1000:>11.1f} {r['session_bytes_per_step'] / 1000:>15.1f} "
            f"{r['total_ms_per_step']:>13.1f}"
        )
    print(
        "sinks (median ms):",
        {r["mode"]: {k: round(v, 2) for k, v in r["median_sink_ms"].items()} for r in results},
    )
    print("aims: overhead < 10% of a step; < 60 KB of recording per step")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {"task": args.task, "image": "224x224", "torch_threads": 1, "machine": platform.platform()}
    RESULTS.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
