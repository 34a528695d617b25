"""Record one scripted-expert episode of the built-in simulator as a LeRobot v2.1 dataset.

    python scripts/make_sample_episode.py                       # -> assets/episodes/sample
    python scripts/make_sample_episode.py --task tabletop_pick --seed 3 --out /tmp/ep --episodes 2

Each frame holds the 224x224 camera image (PNG), the robot state (joint positions), the TCP pose,
the expert's action, and the simulator's ground truth (object boxes, key points, expert trace) and
camera, so a replay can score a policy's spatial answers without the simulator.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without `pip install -e .`

from workbench.episodes import LeRobotDataset, LeRobotDatasetWriter, default_features  # noqa: E402
from workbench.sim import make, to_observation  # noqa: E402


def record(task: str, seeds: list[int], out: Path, size: int = 224) -> Path:
    env = make(task, width=size, height=size)
    writer = None
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            first = to_observation(env, obs)
            if writer is None:
                cameras = {name: img.shape[:2] for name, img in first.images.items()}
                features = default_features(cameras, state_dim=len(first.state), tcp_pose=True)
                writer = LeRobotDatasetWriter(out, fps=env.control_hz, features=features, robot_type="panda")
            expert = env.expert()
            info: dict = {}
            for _ in tqdm(range(env.max_episode_steps), desc=f"{task} seed {seed}", unit="step"):
                observation = to_observation(env, obs)
                action = expert.act(obs)
                writer.add_observation(observation, action)
                obs, _, terminated, truncated, info = env.step(action)
                if terminated or truncated:
                    break
            writer.save_episode(
                task=first.instruction, success=bool(info.get("success", False)), seed=seed, env=task
            )
        return writer.finalize()
    finally:
        env.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="tabletop_put_on")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--size", type=int, default=224, help="camera width and height in pixels")
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "episodes" / "sample")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)
    if args.out.exists():
        if not args.overwrite:
            print(f"{args.out} exists; pass --overwrite to replace it", file=sys.stderr)
            return 1
        shutil.rmtree(args.out)
    root = record(args.task, list(range(args.seed, args.seed + args.episodes)), args.out, args.size)
    ds = LeRobotDataset(root)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    for ep in ds:
        print(f"episode {ep.index}: {len(ep)} frames, {ep.task!r}, success={ep.meta.get('success')}")
    print(f"wrote {root} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
