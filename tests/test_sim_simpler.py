"""The SimplerEnv adapter, against a fake `simpler_env` package that copies SimplerEnv's documented
interface (shared/reference/simplerenv.md): make(task) -> TimeLimit-wrapped env, the ManiSkill2 obs
dict, Box(7) actions, the per-task info keys, terminated = success, truncation at the limit.

SimplerEnv itself cannot run here (it needs Vulkan and numpy<2); the fake is the only stand-in, and it
runs in a real subprocess through the real server script and pipe.
"""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from workbench.sim import make, to_observation
from workbench.sim.base import Env, SimEnv
from workbench.sim.simpler import PYTHON_ENV_VAR, SimplerEnvAdapter, SimplerUnavailable, probe

FAKE_SIMPLER_ENV = '''
"""A fake of SimplerEnv's public interface, for adapter tests only."""
import numpy as np

LIMITS = {"widowx_carrot_on_plate": 60, "widowx_put_eggplant_in_basket": 120, "google_robot_pick_coke_can": 80}
INSTRUCTIONS = {"widowx_carrot_on_plate": "put carrot on plate", "widowx_put_eggplant_in_basket": "put eggplant into yellow basket",
                "google_robot_pick_coke_can": "pick coke can"}


class Box:
    def __init__(self, low, high):
        self.low, self.high, self.shape = np.asarray(low, np.float32), np.asarray(high, np.float32), (7,)


class _Env:
    def __init__(self, task):
        self.task = task
        self.robot_uid = "google_robot_static" if task.startswith("google_robot") else "widowx"
        self.cam = "overhead_camera" if task.startswith("google_robot") else "3rd_view_camera"
        self.h = 512 if task.startswith("google_robot") else 480
        self.action_space = Box(-np.ones(7), np.ones(7))

    def _obs(self):
        rng = np.random.default_rng(int(self.tcp[:3].sum() * 1000) % 1000)
        w2c = np.eye(4, dtype=np.float32)
        w2c[:3, 3] = [0.0, 0.0, 1.0]
        return {
            "agent": {"qpos": np.zeros(11 if self.robot_uid != "widowx" else 8, np.float32), "qvel": np.zeros(8, np.float32),
                      "controller": {"gripper": {"target_qpos": np.zeros(2, np.float32)}}, "base_pose": np.array([0, 0, 0, 1, 0, 0, 0], np.float32)},
            "extra": {"tcp_pose": self.tcp.astype(np.float32)},
            "camera_param": {self.cam: {"extrinsic_cv": w2c, "cam2world_gl": np.linalg.inv(np.diag([1, -1, -1, 1]) @ w2c).astype(np.float32),
                                        "intrinsic_cv": np.array([[300, 0, 320], [0, 300, self.h / 2], [0, 0, 1]], np.float32)}},
            "image": {self.cam: {"rgb": rng.integers(0, 255, (self.h, 640, 3), dtype=np.uint8),
                                 "depth": np.ones((self.h, 640, 1), np.float32),
                                 "Segmentation": np.zeros((self.h, 640, 4), np.uint32)}},
        }

    def reset(self, seed=None, options=None):
        self.tcp = np.array([0.3, 0.0, 0.2, 1, 0, 0, 0], np.float64)
        self.gripper, self.moved = 1.0, 0.0
        return self._obs(), {"scene_name": "fake", "episode_id": 0 if seed is None else seed}

    def step(self, action):
        action = np.asarray(action)
        assert action.shape == (7,)
        self.tcp[:3] += action[:3]
        self.moved += action[0]
        self.gripper = action[6]
        success = bool(self.moved > 0.1)
        if self.task.startswith("google_robot"):
            info = {"is_grasped": success, "consecutive_grasp": success, "lifted_object": success,
                    "lifted_object_significantly": False, "success": success}
        else:
            info = {"moved_correct_obj": self.moved > 0, "moved_wrong_obj": False, "is_src_obj_grasped": self.gripper < 0,
                    "consecutive_grasp": False, "src_on_target": success, "success": success,
                    "episode_stats": {"moved_correct_obj": self.moved > 0, "src_on_target": success}}
        return self._obs(), float(success), success, False, info

    def get_language_instruction(self):
        return INSTRUCTIONS[self.task]

    def is_final_subtask(self):
        return True

    def advance_to_next_subtask(self):
        pass

    def close(self):
        pass


class TimeLimit:
    def __init__(self, env, max_episode_steps):
        self.env, self.unwrapped, self._max_episode_steps, self._t = env, env, max_episode_steps, 0
        self.action_space = env.action_space

    def reset(self, **kw):
        self._t = 0
        return self.env.reset(**kw)

    def step(self, action):
        self._t += 1
        obs, r, term, trunc, info = self.env.step(action)
        return obs, r, term, trunc or self._t >= self._max_episode_steps, info

    def __getattr__(self, name):
        return getattr(self.env, name)


def make(task_name, **kw):
    if task_name not in LIMITS:
        raise ValueError(f"Unknown task {task_name}")
    return TimeLimit(_Env(task_name), LIMITS[task_name])
'''

NO_VULKAN_SAPIEN = """
class SapienRenderer:
    def __init__(self, *a, **kw):
        raise RuntimeError("Cannot find a suitable rendering device")
"""


@pytest.fixture(scope="module")
def fake_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake_simpler")
    pkg = root / "simpler_env"
    (pkg / "utils" / "env").mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(FAKE_SIMPLER_ENV))
    (pkg / "utils" / "__init__.py").write_text("")
    (pkg / "utils" / "env" / "__init__.py").write_text("")
    (pkg / "utils" / "env" / "observation_utils.py").write_text(
        "def get_image_from_maniskill2_obs_dict(env, obs, camera_name=None):\n"
        "    cam = camera_name or ('overhead_camera' if 'google_robot' in env.unwrapped.robot_uid else '3rd_view_camera')\n"
        "    return obs['image'][cam]['rgb']\n"
    )
    return str(root)


@pytest.fixture(scope="module")
def widowx(fake_path):
    env = make("widowx_carrot_on_plate", python=sys.executable, env_vars={"PYTHONPATH": fake_path})
    yield env
    env.close()


def test_no_interpreter_configured_gives_a_clear_error(monkeypatch):
    monkeypatch.delenv(PYTHON_ENV_VAR, raising=False)
    with pytest.raises(SimplerUnavailable, match=PYTHON_ENV_VAR):
        make("widowx_carrot_on_plate")
    with pytest.raises(SimplerUnavailable, match="not an executable"):
        SimplerEnvAdapter("widowx_carrot_on_plate", python="/nonexistent/python")


def test_interpreter_without_simpler_env_is_detected_up_front():
    report = probe(sys.executable)  # this venv really has no simpler_env
    assert report["simpler_env"] is False and "simpler_env" in report["simpler_error"]
    with pytest.raises(SimplerUnavailable, match="simpler_env is not importable"):
        SimplerEnvAdapter("widowx_carrot_on_plate", python=sys.executable)


def test_missing_vulkan_is_detected_up_front(fake_path, tmp_path):
    (tmp_path / "sapien").mkdir()
    (tmp_path / "sapien" / "__init__.py").write_text("")
    (tmp_path / "sapien" / "core.py").write_text(NO_VULKAN_SAPIEN)
    env_vars = {"PYTHONPATH": f"{fake_path}:{tmp_path}"}
    report = probe(sys.executable, env_vars)
    assert report["simpler_env"] is True and report["vulkan"] is False
    with pytest.raises(SimplerUnavailable, match="Vulkan"):
        SimplerEnvAdapter("widowx_carrot_on_plate", python=sys.executable, env_vars=env_vars)


def test_adapter_speaks_the_protocol(widowx):
    assert isinstance(widowx, Env) and not isinstance(widowx, SimEnv)  # no ground truth in SimplerEnv
    assert widowx.gripper_convention == "absolute_open_positive" and widowx.control_hz == 5
    assert widowx.max_episode_steps == 60 and widowx.main_camera == "3rd_view_camera"
    obs, info = widowx.reset(seed=3)
    assert info["episode_id"] == 3
    rgb = obs["image"]["3rd_view_camera"]["rgb"]
    assert rgb.dtype == np.uint8 and rgb.shape == (480, 640, 3)
    assert set(obs["camera_param"]["3rd_view_camera"]) == {"intrinsic_cv", "extrinsic_cv", "cam2world_gl"}
    assert obs["extra"]["tcp_pose"].shape == (7,) and obs["agent"]["qpos"].shape == (8,)
    assert widowx.get_language_instruction() == "put carrot on plate"
    obs, reward, terminated, truncated, info = widowx.step(np.array([0.05, 0, 0, 0, 0, 0, -1.0]))
    assert {
        "moved_correct_obj",
        "moved_wrong_obj",
        "is_src_obj_grasped",
        "consecutive_grasp",
        "src_on_target",
        "success",
    } <= set(info)
    assert info["is_src_obj_grasped"] is True and info["episode_stats"]["moved_correct_obj"] is True
    np.testing.assert_allclose(obs["extra"]["tcp_pose"][:3], [0.35, 0.0, 0.2], atol=1e-6)
    for _ in range(2):
        obs, reward, terminated, truncated, info = widowx.step(np.array([0.05, 0, 0, 0, 0, 0, 1.0]))
    assert terminated is True and info["success"] is True and reward == 1.0
    o = to_observation(widowx, obs)
    assert o.images["3rd_view_camera"].shape == (480, 640, 3) and o.ground_truth is None
    assert o.cameras["3rd_view_camera"].width == 640 and o.instruction == "put carrot on plate"


def test_truncation_at_the_time_limit(widowx):
    widowx.reset()
    truncated = False
    for t in range(60):
        _, _, terminated, truncated, _ = widowx.step(np.zeros(7))
        assert not terminated and truncated == (t == 59)
    assert truncated


def test_bad_actions_never_reach_simplerenv(widowx):
    widowx.reset()
    for bad in ([np.nan] * 7, [0.0] * 8, np.zeros((1, 7))):
        with pytest.raises(ValueError):
            widowx.step(bad)
    obs, *_, info = widowx.step(np.array([5.0, 0, 0, 0, 0, 0, 1]))  # out of Box(7): clipped to 1
    assert info["action_clipped"] is True
    np.testing.assert_allclose(obs["extra"]["tcp_pose"][0], 1.3, atol=1e-6)


def test_google_robot_task_keys_and_convention(fake_path):
    env = make(
        "google_robot_pick_coke_can",
        python=sys.executable,
        env_vars={"PYTHONPATH": fake_path},
        images=("rgb", "depth"),
    )
    try:
        assert env.gripper_convention == "relative_close_positive" and env.control_hz == 3
        assert env.main_camera == "overhead_camera" and env.max_episode_steps == 80
        obs, _ = env.reset()
        assert obs["image"]["overhead_camera"]["rgb"].shape == (512, 640, 3)
        assert obs["image"]["overhead_camera"]["depth"].dtype == np.float32
        _, _, _, _, info = env.step(np.zeros(7))
        assert {
            "is_grasped",
            "consecutive_grasp",
            "lifted_object",
            "lifted_object_significantly",
            "success",
        } <= set(info)
    finally:
        env.close()


def test_server_errors_are_reported(fake_path):
    with pytest.raises(RuntimeError, match="Unknown task"):
        SimplerEnvAdapter("widowx_juggle", python=sys.executable, env_vars={"PYTHONPATH": fake_path})
