"""A recorded LeRobot v3.0 episode into a Rerun .rrd, as whole processes: the workbench against a floor.

    python benchmarks/bench_episodes.py [--frames 300] [--repeat 3] [--lerobot-python PATH]

The dataset: LeRobot v3.0, one 224x224 camera as AV1 video, 8-D state, 7-D action, two episodes in
one data file and one mp4 (60 frames, then `--frames`), so the measured episode (the second) starts
mid-file and must be found by its from_timestamp. With --lerobot-python (an interpreter where
lerobot >= 0.4 is installed) the real LeRobotDataset writes it; otherwise the workbench's own writer
does (its v3.0 layout, h264 video: the dataset is then not LeRobot-written, and the output says so).

Each contender runs as its own process, timed from outside (os.wait4: user + sys CPU, wall, peak RSS):
  * workbench: EpisodeSource.from_lerobot(root, 1) -> RerunLogger (JPEG image, state, recorded action
    per step) -> .rrd; what the app's replay of a recording costs, without a policy.
  * floor: the least a program can do for the same .rrd content: pyarrow reads the episode's rows,
    PyAV seeks and decodes its frames, rerun logs the same JPEG image and the two vectors per step.
  * lerobot-dataset-viz (with --lerobot-python, when that environment has it and rerun-sdk):
    `lerobot-dataset-viz --save 1` on the same episode.
Prints each contender's median over --repeat runs and the ratios; saves
benchmarks/results/bench_episodes.json. Roles (--role) are the pieces run as subprocesses.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAMERA = "observation.images.front"
SIZE = 224
FIRST = 60  # frames of episode 0, before the measured episode
JPEG_QUALITY = 75  # the workbench's RerunLogger default


def frames_for(episode: int, n: int):
    """Deterministic frames: a gradient, a moving square and a little noise ([n, 224, 224, 3] uint8)."""
    import numpy as np

    rng = np.random.default_rng(episode)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    base = np.stack([xx * 255 // SIZE, yy * 255 // SIZE, np.full_like(xx, 60 * episode)], -1)
    for t in range(n):
        img = base.copy()
        x0 = (3 * t) % (SIZE - 40)
        img[40:80, x0 : x0 + 40] = [240, 40, 40]
        img += rng.integers(0, 4, img.shape)
        yield (
            np.clip(img, 0, 255).astype(np.uint8),
            rng.normal(size=8).astype(np.float32),
            rng.normal(size=7).astype(np.float32),
        )


# -- roles: dataset makers -------------------------------------------------------------------------


def make_with_lerobot(root: Path, frames: int) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    features = {
        CAMERA: {"dtype": "video", "shape": (SIZE, SIZE, 3), "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": (8,), "names": [f"q{i}" for i in range(8)]},
        "action": {"dtype": "float32", "shape": (7,), "names": ["dx", "dy", "dz", "rx", "ry", "rz", "grip"]},
    }
    ds = LeRobotDataset.create("bench/episode", fps=10, features=features, root=root, use_videos=True)
    for ep, n in enumerate((FIRST, frames)):
        for img, state, action in frames_for(ep, n):
            ds.add_frame({CAMERA: img, "observation.state": state, "action": action, "task": f"task {ep}"})
        ds.save_episode()
    ds.finalize()


def make_with_workbench(root: Path, frames: int) -> None:
    sys.path.insert(0, str(ROOT))
    from workbench.episodes import LeRobotDatasetWriter, default_features

    features = default_features({"front": (SIZE, SIZE)}, video=True)
    w = LeRobotDatasetWriter(root, fps=10, features=features, version="v3.0")
    for ep, n in enumerate((FIRST, frames)):
        for img, state, action in frames_for(ep, n):
            w.add_frame({CAMERA: img, "observation.state": state, "action": action})
        w.save_episode(task=f"task {ep}")
    w.finalize()


# -- roles: the contenders ---------------------------------------------------------------------------


def run_workbench(root: Path, rrd: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from workbench.records import StepRecord
    from workbench.sources import EpisodeSource
    from workbench.viz.rerun_log import RerunLogger

    src = EpisodeSource.from_lerobot(root, episode=1)
    logger = RerunLogger(rrd_path=rrd, stream=False, state_names=src.state_names, jpeg_quality=JPEG_QUALITY)
    for t, (obs, action) in enumerate(zip(src.observations, src.actions, strict=True)):
        logger.write(StepRecord(step=t, observation=obs, recorded_action=action))
    logger.close()


def run_floor(root: Path, rrd: Path) -> None:
    import av
    import cv2
    import numpy as np
    import pyarrow.parquet as pq
    import rerun as rr

    info = json.loads((root / "meta/info.json").read_text())
    rows = pq.read_table(next((root / "meta/episodes").rglob("*.parquet"))).to_pylist()
    row = next(r for r in rows if r["episode_index"] == 1)
    data = root / info["data_path"].format(
        chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]
    )
    table = pq.read_table(data, filters=[("episode_index", "=", 1)])
    ts = table.column("timestamp").to_numpy()
    actions = np.stack(table.column("action").to_numpy(zero_copy_only=False))
    states = np.stack(table.column("observation.state").to_numpy(zero_copy_only=False))
    start = row[f"videos/{CAMERA}/from_timestamp"]
    video = root / info["video_path"].format(
        video_key=CAMERA,
        chunk_index=row[f"videos/{CAMERA}/chunk_index"],
        file_index=row[f"videos/{CAMERA}/file_index"],
    )
    rec = rr.RecordingStream("floor")
    rec.save(str(rrd))
    tol = 0.5 / info["fps"]
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        container.seek(int(max(0.0, start - tol) / stream.time_base), stream=stream, backward=True)
        t = 0
        for frame in container.decode(stream):
            if frame.time < start + ts[0] - tol:
                continue
            if t == len(ts):
                break
            rgb = frame.to_ndarray(format="rgb24")
            ok, buf = cv2.imencode(
                ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
            )
            rec.set_time("step", sequence=t)
            rec.log("image", rr.EncodedImage(contents=buf.tobytes(), media_type="image/jpeg"))
            rec.log("action", rr.Scalars(actions[t].astype(np.float64)))
            rec.log("state", rr.Scalars(states[t].astype(np.float64)))
            t += 1
    rec.flush()
    rr.disconnect(recording=rec)
    if t != len(ts):
        raise SystemExit(f"floor decoded {t} frames, the episode has {len(ts)}")


# -- the driver ----------------------------------------------------------------------------------------


def measure(cmd: list[str], env: dict | None = None) -> dict:
    """Run cmd as a child; its CPU (user + sys, its reaped children included), wall and peak RSS."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def median_of(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--lerobot-python", help="an interpreter with lerobot >= 0.4 (writes the dataset, runs its viz)"
    )
    ap.add_argument("--keep", help="keep the dataset and .rrd files in this folder")
    ap.add_argument(
        "--role", choices=["make-lerobot", "make-workbench", "workbench", "floor"], help=argparse.SUPPRESS
    )
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--rrd", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    roles = {
        "make-lerobot": lambda: make_with_lerobot(args.root, args.frames),
        "make-workbench": lambda: make_with_workbench(args.root, args.frames),
        "workbench": lambda: run_workbench(args.root, args.rrd),
        "floor": lambda: run_floor(args.root, args.rrd),
    }
    if args.role:
        return roles[args.role]()

    work = Path(args.keep or tempfile.mkdtemp(prefix="bench_episodes_"))
    root = work / "dataset"
    shutil.rmtree(root, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    me = [str(Path(__file__).resolve()), "--frames", str(args.frames), "--root", str(root)]
    writer = "workbench (v3.0, h264)"
    if args.lerobot_python:
        measure([args.lerobot_python, *me, "--role", "make-lerobot"], env)
        version = subprocess.run(
            [args.lerobot_python, "-c", "from importlib.metadata import version; print(version('lerobot'))"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        writer = f"lerobot {version} (v3.0, AV1)"
    else:
        measure([sys.executable, *me, "--role", "make-workbench"], env)
    # name -> (command of run i, what run i writes: an .rrd or a folder holding one)
    contenders = {
        "workbench": lambda i: ([sys.executable, *me, "--role", "workbench", "--rrd", str(work / f"wb{i}.rrd")],
                                work / f"wb{i}.rrd"),
        "floor": lambda i: ([sys.executable, *me, "--role", "floor", "--rrd", str(work / f"floor{i}.rrd")],
                            work / f"floor{i}.rrd"),
    }  # fmt: skip
    viz = Path(args.lerobot_python).parent / "lerobot-dataset-viz" if args.lerobot_python else None
    if viz is not None and viz.is_file():
        contenders["lerobot-dataset-viz"] = lambda i: ([
            str(viz), "--repo-id", "bench/episode", "--root", str(root), "--episode-index", "1",
            "--save", "1", "--output-dir", str(work / f"viz{i}"),
        ], work / f"viz{i}")  # fmt: skip
    results: dict[str, dict] = {}
    for name, run in contenders.items():
        try:
            runs = [measure(run(i)[0], env) for i in range(args.repeat)]
        except RuntimeError as e:
            print(f"{name}: skipped ({str(e).splitlines()[0]})")
            continue
        results[name] = median_of(runs)
        written = run(0)[1]
        rrds = [written] if written.is_file() else list(written.rglob("*.rrd"))
        results[name]["rrd_mb"] = sum(p.stat().st_size for p in rrds) / 1e6
    print(f"\n{args.frames}-frame episode (the second of two in one v3.0 file), written by {writer}")
    print(f"median of {args.repeat} runs, each a whole process; {platform.processor() or platform.machine()}")
    print(f"{'':22}{'CPU s':>8}{'wall s':>8}{'peak RSS MB':>13}{'.rrd MB':>9}")
    for name, r in results.items():
        print(f"{name:22}{r['cpu_s']:8.2f}{r['wall_s']:8.2f}{r['peak_rss_mb']:13.0f}{r['rrd_mb']:9.2f}")
    ratios = {}
    if "floor" in results and "workbench" in results:
        ratios["workbench_cpu_over_floor"] = results["workbench"]["cpu_s"] / results["floor"]["cpu_s"]
        print(f"workbench CPU / floor CPU: {ratios['workbench_cpu_over_floor']:.2f}x")
    if "lerobot-dataset-viz" in results and "workbench" in results:
        ratios["viz_cpu_over_workbench"] = (
            results["lerobot-dataset-viz"]["cpu_s"] / results["workbench"]["cpu_s"]
        )
        ratios["viz_wall_over_workbench"] = (
            results["lerobot-dataset-viz"]["wall_s"] / results["workbench"]["wall_s"]
        )
        print(f"lerobot-dataset-viz / workbench: CPU {ratios['viz_cpu_over_workbench']:.1f}x, "
              f"wall {ratios['viz_wall_over_workbench']:.1f}x")  # fmt: skip
    out = ROOT / "benchmarks" / "results" / "bench_episodes.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "frames": args.frames,
        "repeat": args.repeat,
        "writer": writer,
        "results": results,
        "ratios": ratios,
    }
    out.write_text(json.dumps(report, indent=1) + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
