"""Evaluation episodes per minute: in this process (serial) against a local Ray with 1 and 2 workers.

    python benchmarks/bench_sweep.py [--episodes 8 --max-steps 20 --checkpoint assets/checkpoints/st4vla-tiny]

The same sweep (tabletop_pick, the seen/seen and unseen/unseen cells, --episodes per cell, --max-steps
each) runs through workbench.evaluate.evaluate three ways: serially here, on a local Ray with one
worker, and with two. Ray is started once before the timed runs (its start is reported apart); every
run's wall time includes loading the checkpoint (in each actor on Ray). Per run:
    episodes/min   episodes x 60 / wall time
    episode s      mean time inside an episode (the Runner's loop: policy and physics)
    overhead s/ep  what Ray adds per episode against the serial run: (wall x workers / episodes)
                   - serial wall / episodes (the actor start and checkpoint load are part of it)
and the speed-up of 2 workers over 1. The three runs must give the same outcomes (checked). Apart from
the model: the sweep's own cost per episode on Ray (submit, ray.wait, fetch), from 200 episodes of a
worker that does nothing, on one actor. And a control for the machine: a fixed pure-Python loop per
episode on 1 and 2 workers (with two free cores, two at once take as long each as one alone; if each
takes twice as long, the machine gave the sweep one core). The load average before and after is
recorded: on a shared machine every figure moves with it.
Prints a table and writes benchmarks/results/bench_sweep.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
RESULTS = Path(__file__).parent / "results" / "bench_sweep.json"
ROOT = Path(__file__).resolve().parents[1]


def timed(cfg) -> dict:
    from workbench.evaluate import evaluate

    t0 = time.perf_counter()
    report = evaluate(cfg)
    wall = time.perf_counter() - t0
    n = len(report.episodes)
    return {
        "workers": cfg.workers if cfg.ray else 0,
        "episodes": n,
        "wall_s": round(wall, 2),
        "episodes_per_min": round(60 * n / wall, 2),
        "episode_s": round(sum(e.seconds for e in report.episodes) / n, 3),
        "errors": len(report.errors()),
        "outcomes": [(e.seed, e.success, e.steps, e.triage) for e in report.episodes],
    }


def _nothing():
    return _echo


def _echo(spec):
    return spec


def _spin():
    return _spin_once


def _spin_once(_spec) -> float:
    t0, x = time.perf_counter(), 0
    for i in range(3_000_000):
        x += i * i
    return time.perf_counter() - t0


def cpu_control() -> dict[int, float]:
    """Mean seconds of the same pure-Python work per episode, with 1 and with 2 workers at once."""
    from workbench import sweep

    return {w: round(sum(o.result for o in sweep.run(range(6), _spin, ray=sweep.LOCAL, workers=w)) / 6, 3)
            for w in (1, 2)}  # fmt: skip


def ray_cost_per_episode(n: int = 200) -> float:
    """Seconds per episode that the sweep on Ray costs by itself (one actor, a worker doing nothing)."""
    from workbench import sweep

    list(sweep.run([0], _nothing, ray=sweep.LOCAL))  # the actor start is not part of it
    t0 = time.perf_counter()
    assert len(list(sweep.run(range(n), _nothing, ray=sweep.LOCAL))) == n
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(ROOT / "assets" / "checkpoints" / "st4vla-tiny"))
    ap.add_argument("--episodes", type=int, default=4, help="per cell (two cells)")
    ap.add_argument("--max-steps", type=int, default=20)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from workbench import sweep
    from workbench.evaluate import EvalConfig

    cfg = EvalConfig(checkpoint=args.checkpoint, tasks=("tabletop_pick",), episodes=args.episodes,
                     max_steps=args.max_steps, cells=(("seen", "seen"), ("unseen", "unseen")))  # fmt: skip
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    sweep.connect(sweep.LOCAL, workers=2)
    ray_start = time.perf_counter() - t0
    serial = timed(cfg)
    runs = [serial] + [timed(replace(cfg, ray=sweep.LOCAL, workers=w)) for w in (1, 2)]
    per_episode = serial["wall_s"] / serial["episodes"]
    for r in runs[1:]:
        r["overhead_s_per_episode"] = round(r["wall_s"] * r["workers"] / r["episodes"] - per_episode, 3)
    same = all(r["outcomes"] == serial["outcomes"] for r in runs)
    speedup = runs[2]["episodes_per_min"] / runs[1]["episodes_per_min"]
    print(f"{'run':<14}{'episodes/min':>14}{'wall s':>9}{'episode s':>11}{'overhead s/ep':>15}")
    for name, r in zip(("serial", "ray 1 worker", "ray 2 workers"), runs, strict=True):
        print(f"{name:<14}{r['episodes_per_min']:>14.1f}{r['wall_s']:>9.1f}{r['episode_s']:>11.2f}"
              f"{r.get('overhead_s_per_episode', 0.0):>15.2f}")  # fmt: skip
    bare, control = ray_cost_per_episode(), cpu_control()
    print(f"Ray start {ray_start:.1f} s; 2 workers / 1 worker = {speedup:.2f}x; same outcomes: {same}")
    print(f"the sweep's own cost on Ray: {1000 * bare:.1f} ms per episode (a worker that does nothing)")
    print(
        f"control, the same pure-Python work per episode: {control[1]:.2f} s alone, {control[2]:.2f} s two at once"
    )
    load = os.getloadavg()
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "config": {**asdict(cfg), "cells": [list(c) for c in cfg.cells]},
        "ray_start_s": round(ray_start, 2), "runs": runs, "speedup_2_over_1": round(speedup, 2),
        "same_outcomes": same, "ray_cost_per_episode_ms": round(1000 * bare, 2),
        "cpu_control_s_per_episode": {"1 worker": control[1], "2 workers": control[2]}, "cpus": os.cpu_count(),
        "load_average_before": [round(x, 1) for x in load_before], "load_average_after": [round(x, 1) for x in load],
        "python": platform.python_version(),
    }, indent=1))  # fmt: skip
    print("wrote", RESULTS)
    if not same:
        raise SystemExit("the runs gave different outcomes")


if __name__ == "__main__":
    main()
