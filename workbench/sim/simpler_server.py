"""SimplerEnv, served over a pipe. Runs INSIDE SimplerEnv's own interpreter (numpy<2, sapien 2.2.2),
so it imports nothing from the workbench: only the standard library, numpy and simpler_env.

    python simpler_server.py --diagnose         print one JSON line: does simpler_env import, is the Vulkan
                                                loader there, is there a Vulkan device, does a frame render
    python simpler_server.py --task NAME        serve requests: one JSON line in (stdin), one JSON line out

The first reply (hello) says what the task gives before any reset: the main camera and its image size,
the joint names of obs["agent"]["qpos"], the base pose, the control rate, the action box and the
episode limit.
Observations keep SimplerEnv's layout, with agent/base_pose (the robot base in the world: xyz + wxyz;
SimplerEnv turns both robots' bases, so base-frame actions move the gripper along the turned axes).

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


def diagnose(emit=None) -> dict:
    """Each stage that SimplerEnv needs, in order; a stage not reached stays None. Before each stage the
    report so far is emitted with that stage marked failed ("the diagnosis died during ..."), so a stage that
    kills the process (a driver's segfault) is still named by the last line printed."""
    out = {
        "python": sys.version.split()[0],
        "simpler_env": False,
        "simpler_error": "",
        "sapien": None,
        "sapien_error": "",
        "vulkan": None,
        "vulkan_error": "",
        "render": None,
        "render_error": "",
    }
    emit = emit or (lambda report: None)

    def attempt(stage: str, what: str, run) -> bool:
        error = "simpler_error" if stage == "simpler_env" else f"{stage}_error"
        emit({**out, stage: False, error: f"the diagnosis process died during {what}"})
        try:
            result = run()
        except Exception as e:  # any failure is reported, not raised
            out[stage], out[error] = False, f"{type(e).__name__}: {e}"
            return False
        out[stage] = True if result is None else result
        return True

    attempt("simpler_env", "import simpler_env", lambda: __import__("simpler_env") and None)
    if not attempt("sapien", "import sapien.core", lambda: __import__("sapien.core") and None):
        return out
    import sapien.core as sapien

    holder = {}
    if not attempt("vulkan", "creating the Vulkan renderer", lambda: holder.update(r=_renderer(sapien))):
        return out
    attempt("render", "rendering a frame", lambda: _render_one_frame(sapien, holder["r"]))
    return out


def _renderer(sapien):
    return sapien.SapienRenderer(offscreen_only=True)


def _render_one_frame(sapien, renderer) -> bool:
    """A 64x48 camera takes one picture of a lit box (what every SimplerEnv step does). The box and the
    light are needed: lavapipe crashes on a frame of an empty scene."""
    engine = sapien.Engine()
    engine.set_renderer(renderer)
    scene = engine.create_scene()
    scene.set_ambient_light([0.5, 0.5, 0.5])
    scene.add_directional_light([0, 1, -1], [0.5, 0.5, 0.5])
    builder = scene.create_actor_builder()
    builder.add_box_visual(half_size=[0.1, 0.1, 0.1])
    builder.build_static()
    camera = scene.add_camera("diagnosis", 64, 48, 1.0, 0.01, 10.0)
    scene.update_render()
    camera.take_picture()
    rgba = np.asarray(camera.get_float_texture("Color"))
    if rgba.shape[:2] != (48, 64):
        raise RuntimeError(f"the diagnosis camera returned an image of shape {rgba.shape}, not (48, 64, 4)")
    return True


def main_camera(env, task: str) -> str:
    """The camera SimplerEnv's get_image_from_maniskill2_obs_dict reads for this robot."""
    uid = getattr(getattr(env, "unwrapped", env), "robot_uid", "") or task
    return "overhead_camera" if "google_robot" in uid else "3rd_view_camera"


def _joint_names(env) -> list[str] | None:
    """The names of obs["agent"]["qpos"], in order (the agent's active joints), when the env tells."""
    try:
        return [j.get_name() for j in env.agent.robot.get_active_joints()]
    except Exception:  # an env without a ManiSkill2 agent: unknown, not fatal
        return None


def _base_pose(env) -> list[float] | None:
    """The robot base in the world (xyz + wxyz), already placed when make() returns."""
    try:
        pose = env.agent.robot.pose
        return [float(v) for v in (*pose.p, *pose.q)]
    except Exception:
        return None


def _image_size(env, camera: str) -> list[int] | None:
    """[width, height] of the camera's rgb image, from the observation space."""
    try:
        h, w = env.observation_space["image"][camera]["rgb"].shape[:2]
        return [int(w), int(h)]
    except Exception:
        return None


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
            "agent": {k: obs["agent"][k] for k in ("qpos", "qvel", "base_pose") if k in obs["agent"]},
            "extra": {"tcp_pose": obs["extra"]["tcp_pose"]},
            "camera_param": {cam: obs["camera_param"][cam]},
            "image": {cam: {k: obs["image"][cam][k] for k in self.images if k in obs["image"][cam]}},
        }

    def hello(self) -> dict:
        space = self.env.action_space
        limit = getattr(self.env, "_max_episode_steps", None) or getattr(
            getattr(self.env, "spec", None), "max_episode_steps", None
        )
        inner = getattr(self.env, "unwrapped", self.env)
        return {
            "camera": self.camera,
            "action_low": np.asarray(space.low, dtype=np.float64),
            "action_high": np.asarray(space.high, dtype=np.float64),
            "max_episode_steps": limit,
            "robot_uid": getattr(inner, "robot_uid", ""),
            "state_names": _joint_names(inner),
            "base_pose": _base_pose(inner),
            "image_size": _image_size(self.env, self.camera),
            "control_hz": getattr(inner, "control_freq", None),
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
    ap.add_argument("--diagnose", action="store_true")
    ap.add_argument("--task")
    ap.add_argument("--images", default="rgb", help="comma-separated: rgb,depth,Segmentation")
    args = ap.parse_args()
    if args.diagnose:

        def emit(report: dict) -> None:
            print(json.dumps(report), flush=True)

        emit(diagnose(emit))
        return
    if not args.task:
        ap.error("--task is required unless --diagnose")
    serve(args.task, args.images.split(","))


if __name__ == "__main__":
    main()
