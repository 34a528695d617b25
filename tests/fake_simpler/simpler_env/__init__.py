"""A fake of SimplerEnv's public interface, for the adapter's tests only (tests/sim/test_sim_simpler.py).

Its numbers are the real SimplerEnv's, read from reset(seed=0) of each task with sapien 2.2.2
(shared/reference/simplerenv-real.md; docs/simplerenv.md): the robots' joint names and initial qpos, the
turned bases (a 180-degree turn about z), the tcp poses, the main cameras' sizes and parameters, the
control rates, the action box, the episode limits and the info keys. Actions move the tcp in the base
frame, so a world-frame rollout must turn them with the base, as on the real robots.
"""

import numpy as np
import sapien.core  # noqa: F401  as the real one: without the Vulkan loader, simpler_env does not import

LIMITS = {
    "widowx_carrot_on_plate": 60,
    "widowx_put_eggplant_in_basket": 120,
    "google_robot_pick_coke_can": 80,
}
INSTRUCTIONS = {
    "widowx_carrot_on_plate": "put carrot on plate",
    "widowx_put_eggplant_in_basket": "put eggplant into yellow basket",
    "google_robot_pick_coke_can": "pick coke can",
}
ROBOTS = {
    "widowx": {
        "joints": ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "left_finger", "right_finger"],
        "qpos": [-0.01841, 0.03988, 0.22243, -0.0046, 1.36524, 0.00153, 0.037, 0.037],
        "hz": 5,
        "base": [0.147, 0.028, 0.87, 0.0, 0.0, 0.0, 1.0],
        "tcp": [-0.14507, 0.03409, 1.00532, 0.00808, -0.72687, 0.00526, 0.68671],
        "camera": "3rd_view_camera",
        "size": (640, 480),
        "intrinsic": [[623.588, 0, 319.501], [0, 623.588, 239.545], [0, 0, 1]],
        "extrinsic": [
            [-0.48393, 0.87511, 0.0, -0.09338],
            [0.60256, 0.33321, -0.72518, 0.74076],
            [-0.63461, -0.35094, -0.68855, 1.00619],
            [0, 0, 0, 1],
        ],
    },
    "google_robot_static": {
        "joints": [
            "joint_torso", "joint_shoulder", "joint_bicep", "joint_elbow", "joint_forearm", "joint_wrist",
            "joint_gripper", "joint_finger_right", "joint_finger_left", "joint_head_pan", "joint_head_tilt",
        ],
        "qpos": [-0.26395, 0.08319, 0.50176, 1.15686, 0.02858, 1.5926, -1.08065, 0.0, 0.0, -0.00286, 0.78514],
        "hz": 3,
        "base": [0.35, 0.2, 0.07905, 0.0, 0.0, 0.0, 1.0],
        "tcp": [-0.08938, 0.41842, 1.04092, 0.0325, -0.78017, -0.60385, 0.16012],
        "camera": "overhead_camera",
        "size": (640, 512),
        "intrinsic": [[425.0, 0, 320.0], [0, 425.0, 256.0], [0, 0, 1]],
        "extrinsic": [
            [0.00286, 1.0, 0.0, -0.201],
            [0.70692, -0.00202, -0.70729, 0.7703],
            [-0.70729, 0.00202, -0.70692, 1.05752],
            [0, 0, 0, 1],
        ],
    },
}  # fmt: skip
RESET_INFO = {
    "widowx": ["episode_id", "episode_model_ids", "episode_model_scales", "episode_source_obj_name",
               "episode_target_obj_name", "scene_name", "scene_offset", "scene_table_height", "urdf_version"],
    "google_robot_static": ["model_id", "model_scale", "orientation", "scene_name", "scene_offset",
                            "scene_table_height", "urdf_version"],
}  # fmt: skip


class Box:
    def __init__(self, low, high):
        self.low, self.high, self.shape = np.asarray(low, np.float32), np.asarray(high, np.float32), (7,)


class _Joint:
    def __init__(self, name):
        self.name = name

    def get_name(self):
        return self.name


class _Pose:
    def __init__(self, xyz_wxyz):
        self.p, self.q = np.asarray(xyz_wxyz[:3], np.float32), np.asarray(xyz_wxyz[3:], np.float32)


class _Robot:
    def __init__(self, names, base):
        self.joints = [_Joint(n) for n in names]
        self.pose = _Pose(base)  # placed by make(), as the real one

    def get_active_joints(self):
        return self.joints


class _Agent:
    def __init__(self, names, base):
        self.robot = _Robot(names, base)


class _Space:
    def __init__(self, shape):
        self.shape = shape


def _turn(q):
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


class _Env:
    def __init__(self, task):
        self.task = task
        self.robot_uid = "google_robot_static" if task.startswith("google_robot") else "widowx"
        self.r = ROBOTS[self.robot_uid]
        self.cam = self.r["camera"]
        self.w, self.h = self.r["size"]
        self.control_freq = self.r["hz"]
        self.agent = _Agent(self.r["joints"], self.r["base"])
        high = [1, 1, 1, 1.5708, 1.5708, 1.5708, 1]
        self.action_space = Box([-v for v in high], high)
        self.observation_space = {
            "image": {
                self.cam: {"rgb": _Space((self.h, self.w, 3))},
                "base_camera": {"rgb": _Space((128, 128, 3))},
            }
        }
        self.base = np.array(self.r["base"], np.float64)

    def _obs(self):
        rng = np.random.default_rng(int(abs(self.tcp[:3]).sum() * 1000) % 1000)
        w2c = np.array(self.r["extrinsic"], np.float32)
        n = len(self.r["qpos"])
        return {
            "agent": {
                "qpos": np.array(self.r["qpos"], np.float32),
                "qvel": np.zeros(n, np.float32),
                "controller": {"gripper": {"target_qpos": np.zeros(2, np.float32)}},
                "base_pose": self.base.astype(np.float32),
            },
            "extra": {"tcp_pose": self.tcp.astype(np.float32)},
            "camera_param": {
                self.cam: {
                    "extrinsic_cv": w2c,
                    "cam2world_gl": np.linalg.inv(np.diag([1, -1, -1, 1]) @ w2c).astype(np.float32),
                    "intrinsic_cv": np.array(self.r["intrinsic"], np.float32),
                }
            },
            "image": {
                self.cam: {
                    "rgb": rng.integers(0, 255, (self.h, self.w, 3), dtype=np.uint8),
                    "depth": np.ones((self.h, self.w, 1), np.float32),
                    "Segmentation": np.zeros((self.h, self.w, 4), np.uint32),
                }
            },
        }

    def reset(self, seed=None, options=None):
        self.tcp = np.array(self.r["tcp"], np.float64)
        self.gripper, self.moved = 1.0, 0.0
        info = dict.fromkeys(RESET_INFO[self.robot_uid], 0)
        if "episode_id" in info:
            info["episode_id"] = 0 if seed is None else seed
        return self._obs(), info

    def step(self, action):
        action = np.asarray(action)
        assert action.shape == (7,)
        self.tcp[:3] += _turn(self.base[3:]) @ action[:3]  # actions are in the (turned) base frame
        self.moved += action[0]
        self.gripper = action[6]
        success = bool(self.moved > 0.1)
        if self.task.startswith("google_robot"):
            info = {
                "is_grasped": success,
                "consecutive_grasp": success,
                "lifted_object": success,
                "lifted_object_significantly": False,
                "success": success,
                "episode_stats": {"n_lift_significant": 0, "consec_grasp": success, "grasped": success},
            }
        else:
            info = {
                "moved_correct_obj": self.moved > 0,
                "moved_wrong_obj": False,
                "is_src_obj_grasped": self.gripper < 0,
                "consecutive_grasp": False,
                "src_on_target": success,
                "success": success,
                "episode_stats": {"moved_correct_obj": self.moved > 0, "src_on_target": success},
            }
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
        self.observation_space = env.observation_space

    def reset(self, **kw):
        self._t = 0
        return self.env.reset(**kw)

    def step(self, action):
        self._t += 1
        obs, r, term, trunc, info = self.env.step(action)
        info["elapsed_steps"] = self._t
        return obs, r, term, trunc or self._t >= self._max_episode_steps, info

    def __getattr__(self, name):
        return getattr(self.env, name)


def make(task_name, **kw):
    if task_name not in LIMITS:
        raise ValueError(f"Unknown task {task_name}")
    return TimeLimit(_Env(task_name), LIMITS[task_name])
