"""The scripted expert: a privileged pick-and-place state machine that solves every tabletop task.

It reads the simulator's true state and emits actions in exactly the env's action convention
([dx, dy, dz, rx, ry, rz, gripper], gripper +1 open / -1 closed), so recording (image, instruction,
expert action) gives demonstrations a policy can imitate.

Phases: approach (above the object, yaw aligned) -> descend -> close -> lift -> carry (above the place
point) -> lower -> release -> retreat -> done. Pick stops after lift and holds. If the object slips
out while lifting or carrying, it goes back to approach (at most MAX_RETRIES times).
"""

from __future__ import annotations

import math

import numpy as np

from workbench.sim.scene import world_points
from workbench.sim.tasks import FINGER_LINKS, LAYOUT_HIGH, LAYOUT_LOW, is_grasped

HOVER_Z = 0.17  # TCP height for moving around
MAX_STEP = 0.045  # metres per control step (under the 0.05 action limit)
MAX_TURN = 0.2  # rad per control step
TOLERANCE = 0.012  # metres: a goal counts as reached
PHASE_TIMEOUT = 25  # control steps before a phase gives up waiting and moves on
CLOSE_STEPS, RELEASE_STEPS = 4, 3
MAX_RETRIES = 2
HAND_HALF_LENGTH = 0.11  # metres: the Panda hand's half length along the closing direction

PHASES = ("approach", "descend", "close", "lift", "carry", "lower", "release", "retreat", "done")


def _wrap_half_pi(a: float) -> float:
    """Wrap an angle to [-pi/2, pi/2): a parallel gripper is symmetric under a half turn."""
    return (a + math.pi / 2) % math.pi - math.pi / 2


class ScriptedExpert:
    def __init__(self, env):
        self.env = env
        self.phase = "approach"
        self.phase_steps = 0
        self.retries = 0
        self.hold_offset = 0.03  # TCP height above the held object's lowest point, measured at lift
        self.place: list[float] | None = None  # the place point, frozen when carrying starts
        # Metres [dx, dy] added to the first grasp (retries == 0) only: a deliberate miss, so recovery
        # demonstrations (workbench.train.data, DataConfig.miss_offset) start where a policy's own miss
        # leaves the arm: closed on nothing beside the object.
        self.aim_offset: list[float] = [0.0, 0.0]

    # --- state --------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            k: getattr(self, k)
            for k in ("phase", "phase_steps", "retries", "hold_offset", "place", "aim_offset")
        }

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    # --- geometry from the true state -----------------------------------------------------------

    def _object_points(self) -> np.ndarray:
        return world_points(self.env.client, self.env.obj)

    def _grasp_point(self) -> np.ndarray:
        pts = self._object_points()
        lo, hi = pts[:, 2].min(), pts[:, 2].max()
        z = max((lo + hi) / 2, hi - 0.03, 0.012)
        xy = pts[:, :2].mean(0) + (np.asarray(self.aim_offset) if self.retries == 0 else 0.0)
        return np.array([*xy, z])

    def _closing_angle(self) -> float:
        """World yaw the fingers should close along.

        Candidates: the object's narrow side (and the other side too when its footprint is near
        square; any heading when it is round). Of those, the one whose hand footprint (about 22 cm
        long along the closing direction) stays clearest of the other objects wins, so the palm
        does not knock over a tall neighbour; ties go to the smallest turn."""
        env, client = self.env, self.env.client
        if env.obj.spec.shape in ("cylinder", "sphere"):
            candidates = list(np.linspace(0, np.pi, 8, endpoint=False))
        else:
            _, orn = client.getBasePositionAndOrientation(env.obj.body)
            rot = np.asarray(client.getMatrixFromQuaternion(orn)).reshape(3, 3)
            local = env.obj.points[:, :2] - env.obj.points[:, :2].mean(0)
            evals, evecs = np.linalg.eigh(np.cov(local.T))  # ascending: column 0 is the minor axis
            minor = rot @ np.array([evecs[0, 0], evecs[1, 0], 0.0])
            candidates = [math.atan2(minor[1], minor[0])]
            if evals[0] > 0.6 * evals[1]:
                candidates.append(candidates[0] + np.pi / 2)
        centre = self._object_points()[:, :2].mean(0)
        others = [o for o in env.placed if o is not env.obj]
        now = self._gripper_angle()

        def score(angle: float) -> float:
            d = np.array([math.cos(angle), math.sin(angle)])
            clear = 1.0
            for o in others:
                rel = np.asarray(client.getBasePositionAndOrientation(o.body)[0][:2]) - centre
                along = float(np.clip(rel @ d, -HAND_HALF_LENGTH, HAND_HALF_LENGTH))
                clear = min(clear, float(np.linalg.norm(rel - along * d)) - o.radius)
            return min(clear, 0.06) - 0.02 * abs(_wrap_half_pi(angle - now))

        return max(candidates, key=score)

    def _gripper_angle(self) -> float:
        y_axis = self.env.robot.target_rot[:, 1]  # the fingers close along the hand's y axis
        return math.atan2(y_axis[1], y_axis[0])

    def _place_point(self) -> np.ndarray | None:
        env, kind = self.env, self.env.task.kind
        if kind == "pick":
            return None
        if self.place is not None:
            return np.asarray(self.place)
        client = env.client
        tgt_pts = world_points(client, env.target)
        centre = np.asarray(client.getBasePositionAndOrientation(env.target.body)[0])
        if kind in ("put_on", "stack"):
            return np.array([centre[0], centre[1], tgt_pts[:, 2].max() + self.hold_offset + 0.012])
        if kind == "put_in":
            floor = 0.012
            return np.array([centre[0], centre[1], floor + self.hold_offset + 0.015])
        return np.array([*self._near_xy(centre[:2]), self.hold_offset + 0.01])  # move near

    def _near_xy(self, target_xy: np.ndarray) -> np.ndarray:
        """A free spot for the TCP next to the target, preferring the side facing the object's start.

        The distance is set from where the held object's points lie around the TCP, so a long object
        held across its middle is put down with its near end 2 cm from the target, not on it."""
        env = self.env
        tcp = env.robot.tcp_pose_matrix()[0]
        # [N, 2] what hangs around the TCP: the held object's points and the finger pads (with their
        # thickness), so neither the object nor a finger lands on the target.
        fingers = [np.asarray(env.client.getLinkState(env.robot.body, link)[4]) for link in FINGER_LINKS]
        pads = [
            f[:2] + 0.012 * (f[:2] - tcp[:2]) / max(np.linalg.norm(f[:2] - tcp[:2]), 1e-6) for f in fingers
        ]
        rel = np.concatenate([self._object_points()[:, :2], np.asarray(pads)]) - tcp[:2]
        start = env.obj.init_pos[:2] - target_xy
        base = math.atan2(start[1], start[0])
        others = [o for o in env.placed if o is not env.obj and o is not env.target]
        best, best_score = None, -np.inf
        for da in np.linspace(0, 2 * np.pi, 12, endpoint=False):
            d = np.array([math.cos(base + da), math.sin(base + da)])
            reach = max(0.0, float((-rel @ d).max()))  # how far the object sticks out towards the target
            xy = target_xy + d * (env.target.radius + 0.02 + reach)
            clearance = min((np.linalg.norm(xy - o.init_pos[:2]) - o.radius for o in others), default=1.0)
            inside = bool(np.all(xy > LAYOUT_LOW - 0.04) and np.all(xy < LAYOUT_HIGH + 0.04))
            score = (
                min(clearance, 0.08) - 0.01 * min(da, 2 * np.pi - da) - 0.5 * reach + (0 if inside else -1)
            )
            if score > best_score:
                best, best_score = xy, score
        return best

    def _goals(self) -> dict[str, np.ndarray]:
        tcp = self.env.robot.tcp_pose_matrix()[0]
        grasp = self._grasp_point()
        goals = {
            "approach": np.array([grasp[0], grasp[1], HOVER_Z]),
            "descend": grasp,
            # lift straight up from wherever the grasp closed
            "lift": np.array([*self.env.robot.target_pos[:2], HOVER_Z])
            if self.phase == "lift"
            else np.array([*grasp[:2], HOVER_Z]),
        }
        place = self._place_point()
        if place is not None:
            goals["carry"] = np.array([place[0], place[1], HOVER_Z])
            goals["lower"] = place
            goals["retreat"] = np.array([place[0], place[1], HOVER_Z])
        goals["close"] = goals["descend"] if self.phase != "close" else tcp
        goals["release"] = goals.get("lower", tcp) if self.phase != "release" else tcp
        return goals

    def plan(self) -> np.ndarray:
        """[K, 3] the end-effector path still ahead: the TCP now, then each remaining goal."""
        goals = self._goals()
        tcp = self.env.robot.tcp_pose_matrix()[0]
        path = [tcp]
        for phase in PHASES[PHASES.index(self.phase) :]:
            if phase in goals and not np.allclose(goals[phase], path[-1], atol=1e-4):
                path.append(goals[phase])
        return np.asarray(path)

    # --- acting -------------------------------------------------------------------------------

    def act(self, obs: dict | None = None) -> np.ndarray:
        """The next 7-D action (obs is accepted for interface symmetry; the expert is privileged)."""
        self._advance()
        goals = self._goals()
        robot = self.env.robot
        action = np.zeros(7)
        goal = goals.get(self.phase)
        if goal is not None and self.phase not in ("close", "release"):
            delta = robot.base_rot.T @ (goal - robot.target_pos)  # actions are in the base frame
            norm = np.linalg.norm(delta)
            action[:3] = delta * min(1.0, MAX_STEP / norm) if norm > 1e-9 else 0.0
        if self.phase == "approach":
            want = self._closing_angle()
            action[5] = np.clip(_wrap_half_pi(want - self._gripper_angle()), -MAX_TURN, MAX_TURN)
        closed = self.phase in ("close", "lift", "carry", "lower") or (
            self.phase == "done" and self.env.task.kind == "pick"
        )
        action[6] = -1.0 if closed else 1.0
        self.phase_steps += 1
        return action

    def _reached(self, goal: np.ndarray) -> bool:
        tcp = self.env.robot.tcp_pose_matrix()[0]
        return bool(
            np.linalg.norm(tcp - goal) < TOLERANCE and np.linalg.norm(self.env.robot.target_pos - goal) < 1e-3
        )

    def _go(self, phase: str) -> None:
        self.phase, self.phase_steps = phase, 0

    def _advance(self) -> None:
        """Move to the next phase when this one is done (checked before acting)."""
        env, goals = self.env, self._goals()
        timed_out = self.phase_steps >= PHASE_TIMEOUT
        grasped = is_grasped(env.client, env.robot.body, env.obj)
        p = self.phase
        slipped = p in ("lift", "carry", "lower") and not grasped and self.phase_steps > 1
        if slipped and self.retries < MAX_RETRIES:
            self.retries += 1
            self.place = None
            self._go("approach")
            return
        if p == "approach":
            want = self._closing_angle()
            aligned = abs(_wrap_half_pi(want - self._gripper_angle())) < 0.03
            if (self._reached(goals["approach"]) and aligned) or timed_out:
                self._go("descend")
        elif p == "descend" and (self._reached(goals["descend"]) or timed_out):
            self._go("close")
        elif p == "close" and self.phase_steps >= CLOSE_STEPS:
            self.hold_offset = float(env.robot.tcp_pose_matrix()[0][2] - self._object_points()[:, 2].min())
            self._go("lift")
        elif p == "lift" and (self._reached(goals["lift"]) or timed_out):
            if env.task.kind != "pick":
                self.place = self._place_point().tolist()  # freeze: never chase a nudged target
            self._go("done" if env.task.kind == "pick" else "carry")
        elif p == "carry" and (self._reached(goals["carry"]) or timed_out):
            self._go("lower")
        elif p == "lower" and (self._reached(goals["lower"]) or timed_out):
            self._go("release")
        elif p == "release" and self.phase_steps >= RELEASE_STEPS:
            self._go("retreat")
        elif p == "retreat" and (self._reached(goals["retreat"]) or timed_out):
            self._go("done")
