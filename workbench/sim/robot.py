"""The Franka Panda of the built-in simulator: delta end-effector control through inverse kinematics.

The controller keeps a target pose (like SimplerEnv's `*_target_delta_pose` controllers): each action
moves the target, IK turns it into joint targets, and joint position control tracks them during the
physics substeps. The gripper is absolute: +1 open, -1 closed (WidowX's convention in SimplerEnv).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile

import numpy as np
import pybullet as pb
import pybullet_data
from pybullet_utils.bullet_client import BulletClient

ARM_JOINTS = list(range(7))
FINGER_JOINTS = [9, 10]
TCP_LINK = 11  # panda_grasptarget: between the finger tips
FINGER_OPEN = 0.04  # metres per finger
HOME_QPOS = [0.0, -0.25, 0.0, -2.3, 0.0, 2.05, 0.785]
ARM_FORCE = 240.0
FINGER_FORCE = 60.0

# The TCP target is kept inside this box (metres, base frame; the world frame for the default base at
# the origin facing +x) so IK never chases the unreachable.
WORKSPACE_LOW = np.array([0.25, -0.40, 0.008])
WORKSPACE_HIGH = np.array([0.80, 0.40, 0.45])
# A turned base (base_yaw != 0) turns about this point of the table, so the arm still reaches the
# objects and the camera still sees the gripper (the workspace's centre at table height).
BASE_PIVOT = np.array([0.525, 0.0, 0.0])
# obs["agent"]["qpos"] of this robot, in order (its joint names in the URDF)
STATE_NAMES = tuple(f"panda_joint{i}" for i in range(1, 8)) + ("panda_finger_joint1", "panda_finger_joint2")


def quat_xyzw_to_wxyz(q) -> np.ndarray:
    return np.array([q[3], q[0], q[1], q[2]])


def axis_angle_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rodrigues: axis-angle [3] -> rotation matrix [3, 3]."""
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    k = rotvec / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def matrix_to_quat_xyzw(m: np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] -> quaternion (x, y, z, w), numerically stable branch."""
    t = np.trace(m)
    if t > 0:
        s = 2.0 * np.sqrt(t + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
    q = np.asarray(q)
    return q / np.linalg.norm(q)


def lowpoly_urdf() -> str:
    """A copy of pybullet_data's panda.urdf that draws the collision meshes (~3k triangles instead of
    ~100k): the CPU renderer's cost is dominated by triangles, so this triples the rendered step rate."""
    root = os.path.join(pybullet_data.getDataPath(), "franka_panda")
    with open(os.path.join(root, "panda.urdf")) as f:
        text = f.read()

    def visual_block(m: re.Match) -> str:
        return m.group(0).replace("meshes/visual/", "meshes/collision/")

    text = re.sub(r"<visual>.*?</visual>", visual_block, text, flags=re.S)
    text = text.replace("package://meshes/", os.path.join(root, "meshes") + "/")
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    path = os.path.join(tempfile.gettempdir(), f"workbench_panda_lowpoly_{digest}.urdf")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)  # atomic: parallel processes never read a half-written file
    return path


def yaw_matrix(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class Panda:
    def __init__(self, client: BulletClient, lowpoly: bool = True, base_yaw: float = 0.0):
        """base_yaw (radians): turn the base about z around BASE_PIVOT; actions stay in the base frame."""
        self.client = client
        self.base_rot = yaw_matrix(base_yaw)  # [3, 3] base -> world
        self.base_pos = BASE_PIVOT - self.base_rot @ BASE_PIVOT
        urdf = lowpoly_urdf() if lowpoly else "franka_panda/panda.urdf"
        orn = [0.0, 0.0, np.sin(base_yaw / 2), np.cos(base_yaw / 2)]  # xyzw
        self.body = client.loadURDF(urdf, self.base_pos.tolist(), orn, useFixedBase=True)
        info = [client.getJointInfo(self.body, j) for j in ARM_JOINTS]
        self.lower = [i[8] for i in info]
        self.upper = [i[9] for i in info]
        for link in (9, 10):  # grippy finger pads
            client.changeDynamics(self.body, link, lateralFriction=1.5, spinningFriction=0.003)
        self.home()

    def home(self) -> None:
        for j, q in zip(ARM_JOINTS, HOME_QPOS, strict=True):
            self.client.resetJointState(self.body, j, q)
        for j in FINGER_JOINTS:
            self.client.resetJointState(self.body, j, FINGER_OPEN)
        self.joint_targets = np.array(HOME_QPOS)
        self.finger_target = FINGER_OPEN
        pos, rot = self.tcp_pose_matrix()
        self.target_pos, self.target_rot = pos, rot

    # --- state --------------------------------------------------------------------------------

    def tcp_pose_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        state = self.client.getLinkState(self.body, TCP_LINK, computeForwardKinematics=True)
        rot = np.asarray(self.client.getMatrixFromQuaternion(state[5])).reshape(3, 3)
        return np.asarray(state[4]), rot

    def tcp_pose(self) -> np.ndarray:
        """[7] x, y, z, qw, qx, qy, qz (SimplerEnv's extra.tcp_pose layout)."""
        state = self.client.getLinkState(self.body, TCP_LINK, computeForwardKinematics=True)
        return np.concatenate([state[4], quat_xyzw_to_wxyz(state[5])])

    def base_pose(self) -> np.ndarray:
        """[7] the base in the world: x, y, z, qw, qx, qy, qz (SimplerEnv's agent.base_pose layout)."""
        pos, orn = self.client.getBasePositionAndOrientation(self.body)
        return np.concatenate([pos, quat_xyzw_to_wxyz(orn)])

    def qpos(self) -> np.ndarray:
        """[9] seven arm joints and two finger joints."""
        states = self.client.getJointStates(self.body, ARM_JOINTS + FINGER_JOINTS)
        return np.array([s[0] for s in states])

    def finger_width(self) -> float:
        return float(sum(s[0] for s in self.client.getJointStates(self.body, FINGER_JOINTS)))

    # --- control ------------------------------------------------------------------------------

    def apply_action(self, delta_pos: np.ndarray, delta_rotvec: np.ndarray, gripper: float) -> None:
        """Move the TCP target by the delta (base frame) and set the gripper (+1 open, -1 closed)."""
        r = self.base_rot
        local = r.T @ (self.target_pos - self.base_pos) + np.asarray(delta_pos)  # base frame
        self.target_pos = self.base_pos + r @ np.clip(local, WORKSPACE_LOW, WORKSPACE_HIGH)  # world
        self.target_rot = r @ axis_angle_to_matrix(delta_rotvec) @ r.T @ self.target_rot
        self.finger_target = FINGER_OPEN * (np.clip(gripper, -1.0, 1.0) + 1.0) / 2.0
        self.joint_targets = self._ik(self.target_pos, self.target_rot)

    def _ik(self, pos: np.ndarray, rot: np.ndarray) -> np.ndarray:
        c = self.client
        ranges = [u - lo for lo, u in zip(self.lower, self.upper, strict=True)]
        sol = c.calculateInverseKinematics(
            self.body,
            TCP_LINK,
            pos.tolist(),
            matrix_to_quat_xyzw(rot).tolist(),
            lowerLimits=self.lower + [0, 0],
            upperLimits=self.upper + [FINGER_OPEN] * 2,
            jointRanges=ranges + [FINGER_OPEN] * 2,
            restPoses=HOME_QPOS + [FINGER_OPEN] * 2,
            maxNumIterations=100,
            residualThreshold=1e-5,
        )
        return np.clip(np.asarray(sol[:7]), self.lower, self.upper)

    def drive(self) -> None:
        """Send the joint and finger targets to the motors (call before each physics substep batch)."""
        c = self.client
        c.setJointMotorControlArray(
            self.body,
            ARM_JOINTS,
            pb.POSITION_CONTROL,
            targetPositions=self.joint_targets.tolist(),
            forces=[ARM_FORCE] * 7,
            positionGains=[0.1] * 7,
        )
        c.setJointMotorControlArray(
            self.body,
            FINGER_JOINTS,
            pb.POSITION_CONTROL,
            targetPositions=[self.finger_target] * 2,
            forces=[FINGER_FORCE] * 2,
        )

    # --- python-side state for snapshot/restore ------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "target_pos": self.target_pos.copy(),
            "target_rot": self.target_rot.copy(),
            "joint_targets": self.joint_targets.copy(),
            "finger_target": float(self.finger_target),
        }

    def load_state_dict(self, state: dict) -> None:
        self.target_pos = state["target_pos"].copy()
        self.target_rot = state["target_rot"].copy()
        self.joint_targets = state["joint_targets"].copy()
        self.finger_target = state["finger_target"]


def tcp_poses(qpos: np.ndarray) -> np.ndarray:
    """[N, 9] joint positions of this Panda -> [N, 7] TCP poses (SimplerEnv's extra.tcp_pose layout).

    Forward kinematics in a physics-free pybullet client: it fills in the TCP for demonstrations
    recorded before datasets stored observation.tcp_pose (workbench/train/data.py).
    """
    qpos = np.asarray(qpos, dtype=np.float64)
    if qpos.ndim != 2 or qpos.shape[1] != len(ARM_JOINTS) + len(FINGER_JOINTS):
        raise ValueError(f"need [N, 9] Panda joint positions (7 arm, 2 fingers), got shape {qpos.shape}")
    client = BulletClient(connection_mode=pb.DIRECT)
    try:
        robot = Panda(client)
        out = np.empty((len(qpos), 7))
        for i, q in enumerate(qpos):
            for joint, value in zip(ARM_JOINTS + FINGER_JOINTS, q, strict=True):
                client.resetJointState(robot.body, joint, float(value))
            out[i] = robot.tcp_pose()
        return out
    finally:
        client.disconnect()
