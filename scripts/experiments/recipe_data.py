"""Cache many single-frame simulator scenes (seen split) for grounding-recipe experiments.

Reset-only scenes cost ~0.15 s each, so thousands of layouts are cheap next to demonstrations.
Each scene is stored as the raw render plus its object boxes (render pixels) in one .npz:

    python scripts/experiments/recipe_data.py --n 3000 --out runs/recipe/scenes_default.npz

Camera keywords (--eye/--target/--fov) go straight to workbench.sim.make (CameraConfig fields).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from tqdm import tqdm

from workbench.sim import make, to_observation
from workbench.train.data import TASKS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000, help="scenes in total (split over the tasks)")
    ap.add_argument("--out", default="runs/recipe/scenes_default.npz")
    ap.add_argument("--seed", type=int, default=5_000)
    ap.add_argument("--width", type=int, default=224)
    ap.add_argument("--height", type=int, default=168)
    ap.add_argument("--eye", type=float, nargs=3, default=None)
    ap.add_argument("--target", type=float, nargs=3, default=None)
    ap.add_argument("--fov", type=float, default=None)
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), help="tasks to draw scenes from")
    ap.add_argument("--distractors", type=int, default=None, help="distractors per scene (task default)")
    args = ap.parse_args()
    if args.seed + args.n * 2 > 10_000:
        raise ValueError("scene seeds must stay below 10_000: evaluation seeds start there")
    torch.set_num_threads(1)
    cam = {k: v for k, v in (("eye", args.eye), ("target", args.target), ("fov_deg", args.fov)) if v}
    cam = {k: tuple(v) if isinstance(v, list) else v for k, v in cam.items()}
    images, boxes, labels, counts = [], [], [], []
    seed, per_task = args.seed, args.n // len(args.tasks)
    t0 = time.time()
    options = {"split": "seen", "paraphrase": True}
    if args.distractors is not None:
        options["distractors"] = args.distractors
    for task in args.tasks:
        env = make(task, width=args.width, height=args.height, depth=False, **cam)
        done = 0
        bar = tqdm(total=per_task, desc=task, unit="scene")
        while done < per_task:
            try:
                obs, _ = env.reset(seed=seed, options=options)
            except RuntimeError:  # a layout the simulator cannot place
                continue
            finally:
                seed += 1
            o = to_observation(env, obs)
            gt = o.ground_truth
            images.append(next(iter(o.images.values())))  # [H, W, 3] uint8
            boxes += [[b.x1, b.y1, b.x2, b.y2] for b in gt.objects]
            labels += [b.label for b in gt.objects]
            counts.append(len(gt.objects))
            done += 1
            bar.update(1)
        bar.close()
        env.close()
    np.savez_compressed(
        args.out,
        images=np.stack(images),  # [N, H, W, 3]
        boxes=np.asarray(boxes, np.float32),  # [sum objects, 4] render pixels
        labels=np.asarray(labels),
        counts=np.asarray(counts, np.int32),  # objects per scene
    )
    print(f"{len(images)} scenes, {len(boxes)} objects in {time.time() - t0:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
