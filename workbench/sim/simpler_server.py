"""SimplerEnv, served over a pipe. Runs INSIDE SimplerEnv's own interpreter (numpy<2, sapien 2.2.2),
so it imports nothing from the workbench: only the standard library, numpy and simpler_env.

    python simpler_server.py --probe            print one JSON line: can simpler_env import, is Vulkan there
    python simpler_server.py --task NAME        serve requests: one JSON line in (stdin), one JSON line out

Requests: {"cmd": "reset", "seed": int|null, "options": {...}|null} | {"cmd": "step", "action": [7]}
| {"cmd": "instruction"} | {"cmd": "advance"} | {"cmd": "close"}. Replies: {"ok": true, ...} or
{"ok": false, "error": "..."}. numpy arrays travel as {"__ndarray__": base64, "dtype", "shape"}.
The protocol owns the real stdout; anything SimplerEnv prints goes to stderr.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import traceback

import numpy as np


def encode(x):
    if isinstance(x, np.ndarray):
        a = np.ascontiguousarray(x)
        return {
            "__ndarray__": base64.b64encode(a.tobytes()).decode(),
            "dtype": a.dtype.str,
            "shape": list(a.shape),
        }
    if isinstance(x, dict):
        return {str(k): encode(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [encode(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return str(x)


def decode(x):
    if isinstance(x, dict):
        if "__ndarray__" in x:
            buf = base64.b64decode(x["__ndarray__"])
            return np.frombuffer(buf, dtype=np.dtype(x["dtype"])).reshape(x["shape"]).copy()
        return {k: decode(v) for k, v in x.items()}
    if isinstance(x, list):
        return [decode(v) for v in x]
    return x


def probe() -> dict:
    out = {
        "python": sys.version.split()[0],
        "simpler_env": False,
        "simpler_error": "",
        "vulkan": None,
        "vulkan_error": "",
    }
    try:
        import simpler_env  # noqa: F401

        out["simpler_env"] = True
    except Exception as e:  # any import failure is reported, not raised
        out["simpler_error"] = f"{type(e).__name__}: {e}"
    try:
        import sapien.core as sapien
    except Exception as e:
        out["vulkan_error"] = f"sapien not importable ({type(e).__name__}: {e}); Vulkan not checked"
        return out
    try:
        sapien.SapienRenderer(offscreen_only=True)
        out["vulkan"] = True
    except Exception as e:
        out["vulkan"] = False
        out["vulkan_error"] = f"{type(e).__name__}: {e}"
    return out


def main_camera(env, task: str) -> str:
    """The camera SimplerEnv's get_image_from_maniskill2_obs_dict reads for this robot."""
    uid = getattr(getattr(env, "unwrapped", env), "robot_uid", "") or task
    return "overhead_camera" if "google_robot" in uid else "3rd_view_camera"


class Server:
    def __init__(self, task: str, images: list[str]):
        import simpler_env

        self.env = simpler_env.make(task)
        self.task = task
        self.images = images  # which of rgb / depth / Segmentation to send
        self.camera = main_camera(self.env, task)

    def _obs(self, obs: dict) -> dict:
        cam = self.camera
        return {
            "agent": {k: obs["agent"][k] for k in ("qpos", "qvel") if k in obs["agent"]},
            "extra": {"tcp_pose": obs["extra"]["tcp_pose"]},
            "camera_param": {cam: obs["camera_param"][cam]},
            "image": {cam: {k: obs["image"][cam][k] for k in self.images if k in obs["image"][cam]}},
        }

    def hello(self) -> dict:
        space = self.env.action_space
        limit = getattr(self.env, "_max_episode_steps", None) or getattr(
            getattr(self.env, "spec", None), "max_episode_steps", None
        )
        return {
            "camera": self.camera,
            "action_low": np.asarray(space.low, dtype=np.float64),
            "action_high": np.asarray(space.high, dtype=np.float64),
            "max_episode_steps": limit,
            "robot_uid": getattr(getattr(self.env, "unwrapped", self.env), "robot_uid", ""),
        }

    def handle(self, req: dict) -> dict:
        cmd = req.get("cmd")
        env = self.env
        if cmd == "reset":
            obs, info = env.reset(seed=req.get("seed"), options=req.get("options"))
            return {"obs": self._obs(obs), "info": info, "instruction": env.get_language_instruction()}
        if cmd == "step":
            obs, reward, terminated, truncated, info = env.step(np.asarray(req["action"], dtype=np.float64))
            return {
                "obs": self._obs(obs),
                "reward": float(reward),
                "terminated": bool(terminated),
                "truncated": bool(truncated),
                "info": info,
                "instruction": env.get_language_instruction(),
                "final_subtask": bool(env.is_final_subtask()),
            }
        if cmd == "instruction":
            return {"instruction": env.get_language_instruction()}
        if cmd == "advance":
            env.advance_to_next_subtask()
            return {"instruction": env.get_language_instruction()}
        raise ValueError(f"unknown command {cmd!r}")


def serve(task: str, images: list[str]) -> None:
    proto = os.fdopen(os.dup(1), "w")  # the protocol keeps the real stdout ...
    os.dup2(2, 1)  # ... and everything else printed (Python or C) goes to stderr
    sys.stdout = sys.stderr

    def send(msg: dict) -> None:
        proto.write(json.dumps(encode(msg)) + "\n")
        proto.flush()

    try:
        server = Server(task, images)
        send({"ok": True, **server.hello()})
    except Exception:
        send({"ok": False, "error": traceback.format_exc()})
        return
    for line in sys.stdin:
        req = decode(json.loads(line))
        if req.get("cmd") == "close":
            send({"ok": True})
            break
        try:
            send({"ok": True, **server.handle(req)})
        except Exception:
            send({"ok": False, "error": traceback.format_exc()})
    server.env.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probe", action="store_true")
    ap.add_argument("--task")
    ap.add_argument("--images", default="rgb", help="comma-separated: rgb,depth,Segmentation")
    args = ap.parse_args()
    if args.probe:
        print(json.dumps(probe()))
        return
    if not args.task:
        ap.error("--task is required unless --probe")
    serve(args.task, args.images.split(","))


if __name__ == "__main__":
    main()
