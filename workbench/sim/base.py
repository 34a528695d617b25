"""The environment protocol shared by the built-in simulator and the SimplerEnv adapter.

Both speak SimplerEnv's interface (see shared/reference/simplerenv.md), so one runner drives both:

    obs, info = env.reset(seed=0, options=None)
    obs, reward, terminated, truncated, info = env.step(action)   # action: [7]
    env.get_language_instruction() -> str

Observation layout (SimplerEnv's ManiSkill2 dict):
    obs["image"][camera]["rgb"]            uint8   [H, W, 3]
    obs["image"][camera]["depth"]          float32 [H, W, 1] metres (when rendered)
    obs["image"][camera]["Segmentation"]   int32   [H, W, 1] body ids, -1 background (when asked)
    obs["camera_param"][camera]            {"intrinsic_cv" [3,3], "extrinsic_cv" [4,4] world->camera
                                            (OpenCV axes), "cam2world_gl" [4,4] (OpenGL axes)}
    obs["agent"]["qpos"]                   float32 [n_joints]
    obs["agent"]["base_pose"]              float32 [7] = x, y, z, qw, qx, qy, qz: the robot base in the world
    obs["extra"]["tcp_pose"]               float32 [7] = x, y, z, qw, qx, qy, qz (world frame)

Action: [dx, dy, dz, rx, ry, rz, gripper]; translation in metres and rotation as an axis-angle
vector, both in the robot base frame and applied to the end-effector target pose. The base frame is
rotated against the world in SimplerEnv (a 180-degree turn about z for both robots): world motion =
R(base_pose) @ action[:3]. The gripper
convention is per robot and stated by `env.gripper_convention`:
    "absolute_open_positive": +1 open, -1 close (WidowX in SimplerEnv; our Panda)
    "relative_close_positive": +1 close, -1 open, relative (Google Robot in SimplerEnv)
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from workbench.records import Camera, GroundTruth, Observation

ACTION_DIM = 7
GRIPPER_ABSOLUTE = "absolute_open_positive"
GRIPPER_RELATIVE = "relative_close_positive"

# Per-step limits of the built-in simulator's action box (SimplerEnv's Box(7) for WidowX is wider,
# [-1, 1]; a 5 Hz controller never needs more than these). Out-of-range values are clipped into the
# box and reported as info["action_clipped"]; with strict actions they raise instead.
ACTION_LOW = np.array([-0.05, -0.05, -0.05, -0.25, -0.25, -0.25, -1.0])
ACTION_HIGH = -ACTION_LOW


@runtime_checkable
class Env(Protocol):
    """What every environment source gives the runner."""

    task_name: str
    gripper_convention: str
    control_hz: float
    max_episode_steps: int

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]: ...

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]: ...

    def get_language_instruction(self) -> str: ...

    def close(self) -> None: ...


@runtime_checkable
class SimEnv(Env, Protocol):
    """What the built-in simulator adds: branching, ground truth, cameras, a scripted expert."""

    def snapshot(self) -> dict: ...

    def restore(self, state: dict) -> dict: ...

    def ground_truth(self) -> GroundTruth: ...

    def camera(self, name: str | None = None) -> Camera: ...

    def expert(self) -> Any: ...

    def set_language_instruction(self, text: str) -> None: ...


def check_action(
    action: Any, low: np.ndarray = ACTION_LOW, high: np.ndarray = ACTION_HIGH, strict: bool = False
):
    """Validate a 7-D action; return (action as float64 [7], clipped?).

    Raises ValueError for a wrong shape or non-finite values (never silently corrupts the state) and,
    when `strict`, for values outside [low, high]; otherwise clips into the box.
    """
    try:
        a = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"action must be a numeric array of shape ({ACTION_DIM},): {e}") from None
    if a.shape != (ACTION_DIM,):
        raise ValueError(
            f"action must have shape ({ACTION_DIM},) = [dx, dy, dz, rx, ry, rz, gripper], got {a.shape}; "
            "for an action chunk [T, 7] step one row at a time"
        )
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action contains NaN or inf: {a.tolist()}; the environment state was not changed")
    outside = (a < low) | (a > high)
    if outside.any():
        if strict:
            raise ValueError(
                f"action {a.tolist()} is outside the action box low={low.tolist()} high={high.tolist()} "
                f"in dims {np.flatnonzero(outside).tolist()}; scale it or create the env with strict_actions=False to clip"
            )
        a = np.clip(a, low, high)
    return a, bool(outside.any())


def camera_from_params(params: dict, width: int, height: int) -> Camera:
    """SimplerEnv's camera_param entry -> records.Camera."""
    return Camera(
        intrinsic=np.asarray(params["intrinsic_cv"], dtype=np.float64).reshape(3, 3),
        extrinsic=np.asarray(params["extrinsic_cv"], dtype=np.float64).reshape(4, 4),
        width=int(width),
        height=int(height),
    )


def robot_state(obs: dict) -> np.ndarray | None:
    """The robot's joint positions in a SimplerEnv-shaped observation (obs["agent"]["qpos"]), if any."""
    agent = obs.get("agent", {})
    return np.asarray(agent["qpos"], dtype=np.float64) if "qpos" in agent else None


def base_pose(obs: dict) -> np.ndarray | None:
    """The robot base's pose in the world (obs["agent"]["base_pose"], xyz + wxyz), if the env gives it."""
    agent = obs.get("agent", {})
    return np.asarray(agent["base_pose"], dtype=np.float64).reshape(7) if "base_pose" in agent else None


def to_observation(env: Env, obs: dict) -> Observation:
    """A SimplerEnv-layout obs dict (+ the env) -> workbench.records.Observation.

    Images and cameras come from the dict; ground truth from env.ground_truth() when the env has one
    (the built-in simulator does, SimplerEnv does not).
    """
    if "image" not in obs or not obs["image"]:
        raise ValueError("obs has no images: was the env created with render=False?")
    images: dict[str, np.ndarray] = {}
    cameras: dict[str, Camera] = {}
    for name, views in obs["image"].items():
        rgb = np.asarray(views["rgb"])
        images[name] = rgb
        if name in obs.get("camera_param", {}):
            cameras[name] = camera_from_params(obs["camera_param"][name], rgb.shape[1], rgb.shape[0])
    ground_truth: GroundTruth | None = None
    if callable(getattr(env, "ground_truth", None)):
        ground_truth = env.ground_truth()
    extra = obs.get("extra", {})
    return Observation(
        images=images,
        instruction=env.get_language_instruction(),
        cameras=cameras,
        tcp_pose=np.asarray(extra["tcp_pose"], dtype=np.float64) if "tcp_pose" in extra else None,
        state=robot_state(obs),
        base_pose=base_pose(obs),
        ground_truth=ground_truth,
    )
