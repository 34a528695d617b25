"""Built-in simulator figures: rendered and physics-only steps per second, reset / snapshot / restore
time, and the scripted expert's success rate per task over a fixed seed set.

    python benchmarks/bench_sim.py              # 20 seeds per task and split
    python benchmarks/bench_sim.py --seeds 5    # quicker

Prints a table and writes benchmarks/results/bench_sim.json. Single-threaded by construction
(pybullet DIRECT mode with its CPU TinyRenderer).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from workbench.sim import list_tasks, make

RESULTS = Path(__file__).with_name("results") / "bench_sim.json"


def steps_per_second(task: str, steps: int, **kw) -> dict[str, float]:
    """Expert-driven control steps per second (each step: IK, 48 physics substeps, render if on).

    Both wall-clock and CPU-time rates: on a shared machine the wall rate drops with the load, the
    CPU rate is what one free core gives."""
    env = make(task, **kw)
    obs, _ = env.reset(seed=0)
    done, n = False, 0
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        if done:
            obs, _ = env.reset()
        obs, _, term, trunc, _ = env.step(env.expert().act(obs))
        done, n = term or trunc, n + 1
    rates = {"wall": n / (time.perf_counter() - t0), "cpu": n / (time.process_time() - c0)}
    env.close()
    return rates


def timings(task: str, repeats: int) -> dict[str, float]:
    env = make(task, width=224, height=224)
    t0 = time.perf_counter()
    for seed in range(repeats):
        obs, _ = env.reset(seed=seed)
    reset_s = (time.perf_counter() - t0) / repeats
    for _ in range(5):
        obs, *_ = env.step(env.expert().act(obs))
    t0 = time.perf_counter()
    snaps = [env.snapshot() for _ in range(repeats)]
    snap_s = (time.perf_counter() - t0) / repeats
    t0 = time.perf_counter()
    for s in snaps:
        env.restore(s)
    restore_s = (time.perf_counter() - t0) / repeats
    env.close()
    return {
        "reset_s": reset_s,
        "snapshot_s": snap_s,
        "restore_s": restore_s,
        "snapshot_bytes": len(snaps[0]["bullet"]),
    }


def expert_success(task: str, seeds: int, split: str) -> dict:
    env = make(task, render=False)
    wins, lengths = 0, []
    for seed in range(seeds):
        obs, _ = env.reset(seed=seed, options={"split": split})
        for _ in range(env.max_episode_steps):
            obs, _, term, trunc, info = env.step(env.expert().act(obs))
            if term or trunc:
                break
        wins += int(info["success"])
        lengths.append(info["elapsed_steps"])
    env.close()
    return {"success": wins / seeds, "wins": wins, "episodes": seeds, "mean_steps": float(np.mean(lengths))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20, help="episodes per task and split for the expert")
    ap.add_argument("--steps", type=int, default=60, help="control steps per speed measurement")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    speed = {}
    for name, kw in tqdm(
        [
            ("rendered 224x224", {"width": 224, "height": 224}),
            ("rendered 640x480", {}),
            ("physics only", {"render": False}),
        ],
        desc="speed",
    ):
        speed[name] = steps_per_second("tabletop_put_on", args.steps, **kw)
    try:  # pybullet's EGL plugin (GPU, or Mesa llvmpipe on a CPU-only machine)
        speed["rendered 224x224 egl"] = steps_per_second(
            "tabletop_put_on", args.steps, width=224, height=224, renderer="egl"
        )
        speed["rendered 640x480 egl"] = steps_per_second("tabletop_put_on", args.steps, renderer="egl")
    except RuntimeError as e:
        print(f"EGL renderer unavailable: {e}")
    times = timings("tabletop_put_on", 10)

    success = {}
    jobs = [(t, s) for t in list_tasks() for s in ("seen", "unseen")]
    for task, split in tqdm(jobs, desc="expert"):
        success[f"{task}/{split}"] = expert_success(task, args.seeds, split)

    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("\n| measure | value |\n|---|---|")
    for k, v in speed.items():
        print(f"| {k} | {v['wall']:.1f} steps/s wall, {v['cpu']:.1f} steps/s per CPU-second |")
    for k in ("reset_s", "snapshot_s", "restore_s"):
        print(f"| {k.replace('_s', '')} | {times[k] * 1000:.0f} ms |")
    print(f"| snapshot size | {times['snapshot_bytes'] / 1024:.0f} KiB |")
    print(f"\n| expert, seeds 0..{args.seeds - 1} | success | mean steps |\n|---|---|---|")
    for k, v in success.items():
        print(f"| {k} | {v['wins']}/{v['episodes']} ({100 * v['success']:.0f}%) | {v['mean_steps']:.1f} |")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "load_average": os.getloadavg(),
        "steps_per_second": speed,
        "timings": times,
        "expert": success,
        "args": vars(args),
    }
    RESULTS.write_text(json.dumps(record, indent=2))
    print(f"\nsaved {RESULTS}")


if __name__ == "__main__":
    main()
