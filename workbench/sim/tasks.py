"""Tasks of the built-in simulator: which objects a scene holds and when an episode succeeds.

Each task mirrors a SimplerEnv task and reports SimplerEnv's info keys:

    name                 mirrors                       limit  info keys
    tabletop_put_on      widowx_carrot_on_plate          60   moved_correct_obj, moved_wrong_obj,
    tabletop_put_in      widowx_put_eggplant_in_basket  120   is_src_obj_grasped, consecutive_grasp,
    tabletop_stack       widowx_stack_cube               60   src_on_target, success
    tabletop_pick        google_robot_pick_coke_can      80   is_grasped, consecutive_grasp, lifted_object,
                                                              lifted_object_significantly, success
    tabletop_move_near   google_robot_move_near          80   moved_correct_obj, moved_wrong_obj,
                                                              is_src_obj_grasped, near_tgt_obj,
                                                              is_closest_to_tgt, success

Every task also reports two distances (metres, floats; failure triage reads them, workbench/triage.py):
    tcp_to_object   from the TCP to the centre of the surface points of the object to move
    object_to_goal  how far that object still is from done: the horizontal distance from its centre to
                    the target's (tasks with a target), or the lift still missing to 2 cm (pick)

Success rules (documented choices where SimplerEnv's differ in detail):
    put on / stack: the object rests on the target (inside its footprint, bottom at its top, touching
        it) and the gripper has let go.
    put in: the object is inside the container's walls, below the rim, touching it, released.
    pick: grasped for `CONSECUTIVE_GRASP` control steps and lifted more than 2 cm.
    move near: released within 6 cm (edge to edge) of the target, closer to it than any other
        object, and no other object moved more than 3 cm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pybullet_utils.bullet_client import BulletClient

from workbench.sim import catalog
from workbench.sim.catalog import ObjectSpec
from workbench.sim.scene import Placed, world_points

CONSECUTIVE_GRASP = 5  # control steps (1 s at 5 Hz)
MOVED = 0.03  # metres: an object counts as moved beyond this
LIFTED, LIFTED_SIGNIFICANTLY = 0.02, 0.05
NEAR_GAP = 0.06
FINGER_LINKS = (9, 10)

# The region objects are dropped in: reachable from above by the Panda, in view of the camera.
LAYOUT_LOW = np.array([0.34, -0.22])
LAYOUT_HIGH = np.array([0.64, 0.22])


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str  # "put_on" | "put_in" | "stack" | "pick" | "move_near"
    max_episode_steps: int
    mirrors: str  # the SimplerEnv task it mirrors
    n_distractors: int = 1

    def objects_to_move(self, split: str) -> list[ObjectSpec]:
        """The objects to move in a scene of `split` objects ([] for stack on the novel split: it holds
        no blocks)."""
        tag = "block" if self.kind == "stack" else None
        pool = catalog.objects(split, kind="object", tag=tag)
        if self.kind in ("put_on", "stack"):  # balls roll off flat targets
            pool = [s for s in pool if "round" not in s.tags]
        return pool

    def targets(self, split: str) -> list[ObjectSpec]:
        """The targets of a scene of `split` objects (seen ones in a novel scene: catalog.scene_split)."""
        split = catalog.scene_split(split)
        if self.kind == "put_on":
            return [s for s in catalog.objects(split, kind="target") if s.shape == "plate"]
        if self.kind == "put_in":
            return [s for s in catalog.objects(split, kind="target") if s.shape == "basket"]
        if self.kind == "stack":
            return catalog.objects(split, kind="object", tag="block")
        if self.kind == "move_near":
            return [s for s in catalog.objects(split, kind="object") if "round" not in s.tags]
        return []  # pick has no target

    @property
    def has_target(self) -> bool:
        return self.kind != "pick"


TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec("tabletop_put_on", "put_on", 60, "widowx_carrot_on_plate"),
        TaskSpec("tabletop_put_in", "put_in", 120, "widowx_put_eggplant_in_basket"),
        TaskSpec("tabletop_stack", "stack", 60, "widowx_stack_cube"),
        TaskSpec("tabletop_pick", "pick", 80, "google_robot_pick_coke_can", n_distractors=2),
        TaskSpec("tabletop_move_near", "move_near", 80, "google_robot_move_near"),
    ]
}


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; available: {sorted(TASKS)}") from None


def sample_layout(
    radii: list[float], rng: np.random.Generator, gap: float = 0.03, first_gap: list[float] | None = None
) -> list[np.ndarray]:
    """Non-overlapping (x, y) positions for objects of the given footprint radii, in order.

    first_gap[i] is extra clearance object i keeps from object 0 (move-near keeps the others clear of
    the target so "nearest to the target" is unambiguous once the object is put next to it)."""
    placed: list[tuple[np.ndarray, float]] = []
    for i, r in enumerate(radii):
        for _ in range(1000):
            margin = min(r, 0.08)  # big targets may overhang the region a little
            xy = rng.uniform(LAYOUT_LOW + margin * 0.5, LAYOUT_HIGH - margin * 0.5)
            extra = [first_gap[i] if (first_gap and j == 0) else 0.0 for j in range(len(placed))]
            if all(
                np.linalg.norm(xy - q) > r + rq + gap + e for (q, rq), e in zip(placed, extra, strict=True)
            ):
                placed.append((xy, r))
                break
        else:
            raise RuntimeError(
                f"could not place {len(radii)} objects of radii {radii} on the table; use fewer distractors"
            )
    return [xy for xy, _ in placed]


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def touching(client: BulletClient, a: int, b: int, link_a: int | None = None) -> bool:
    if link_a is None:
        return len(client.getContactPoints(bodyA=a, bodyB=b)) > 0
    return len(client.getContactPoints(bodyA=a, bodyB=b, linkIndexA=link_a)) > 0


def is_grasped(client: BulletClient, robot: int, obj: Placed) -> bool:
    """Both finger pads touch the object."""
    return all(touching(client, robot, obj.body, link) for link in FINGER_LINKS)


def _pos(client: BulletClient, obj: Placed) -> np.ndarray:
    return np.asarray(client.getBasePositionAndOrientation(obj.body)[0])


def _moved(client: BulletClient, obj: Placed) -> bool:
    return float(np.linalg.norm(_pos(client, obj) - obj.init_pos)) > MOVED


class Evaluator:
    """Computes a task's info dict each step; keeps the grasp bookkeeping (snapshotted with the env)."""

    def __init__(self, task: TaskSpec, obj: Placed, target: Placed | None, others: list[Placed]):
        self.task, self.obj, self.target, self.others = task, obj, target, others
        self.consecutive = 0
        self.stats: dict[str, bool] = {}

    def state_dict(self) -> dict:
        return {"consecutive": self.consecutive, "stats": dict(self.stats)}

    def load_state_dict(self, state: dict) -> None:
        self.consecutive = state["consecutive"]
        self.stats = dict(state["stats"])

    def __call__(self, client: BulletClient, robot: int) -> dict:
        grasped = is_grasped(client, robot, self.obj)
        self.consecutive = self.consecutive + 1 if grasped else 0
        consecutive = self.consecutive >= CONSECUTIVE_GRASP
        kind = self.task.kind
        if kind == "pick":
            lift = _pos(client, self.obj)[2] - self.obj.init_pos[2]
            info = {
                "is_grasped": grasped,
                "consecutive_grasp": consecutive,
                "lifted_object": consecutive and lift > LIFTED,
                "lifted_object_significantly": consecutive and lift > LIFTED_SIGNIFICANTLY,
            }
            info["success"] = info["lifted_object"]
        elif kind == "move_near":
            info = self._move_near(client, grasped)
        else:
            on = self._on_target(client) if kind != "put_in" else self._in_container(client)
            info = {
                "moved_correct_obj": _moved(client, self.obj),
                "moved_wrong_obj": any(_moved(client, o) for o in self.others),
                "is_src_obj_grasped": grasped,
                "consecutive_grasp": consecutive,
                "src_on_target": on and not grasped,
            }
            info["success"] = info["src_on_target"]
        info = {k: bool(v) for k, v in info.items()}
        for k, v in info.items():
            self.stats[k] = self.stats.get(k, False) or v
        info["episode_stats"] = dict(self.stats)
        return info

    def distances(self, client: BulletClient, tcp_xyz: np.ndarray) -> dict[str, float]:
        """tcp_to_object and object_to_goal in metres (see the module docstring)."""
        centre = world_points(client, self.obj).mean(0)
        if self.target is not None:
            goal = float(np.linalg.norm(_pos(client, self.obj)[:2] - _pos(client, self.target)[:2]))
        else:
            goal = max(0.0, LIFTED - float(_pos(client, self.obj)[2] - self.obj.init_pos[2]))
        return {
            "tcp_to_object": float(np.linalg.norm(np.asarray(tcp_xyz)[:3] - centre)),
            "object_to_goal": goal,
        }

    def _on_target(self, client: BulletClient) -> bool:
        src, tgt = world_points(client, self.obj), world_points(client, self.target)
        offset = np.linalg.norm(src[:, :2].mean(0) - _pos(client, self.target)[:2])
        inside = offset < (self.target.radius * (0.8 if self.task.kind == "put_on" else 0.9))
        resting = tgt[:, 2].max() - 0.01 < src[:, 2].min() < tgt[:, 2].max() + 0.02
        return bool(inside and resting and touching(client, self.obj.body, self.target.body))

    def _in_container(self, client: BulletClient) -> bool:
        pos, orn = client.getBasePositionAndOrientation(self.target.body)
        rot = np.asarray(client.getMatrixFromQuaternion(orn)).reshape(3, 3)
        local = (_pos(client, self.obj) - np.asarray(pos)) @ rot  # the object's centre in the basket frame
        half, wall_h = self.target.spec.size
        inside = abs(local[0]) < half and abs(local[1]) < half and local[2] < wall_h
        return bool(inside and touching(client, self.obj.body, self.target.body))

    def _move_near(self, client: BulletClient, grasped: bool) -> dict:
        tgt = _pos(client, self.target)[:2]
        dist = np.linalg.norm(_pos(client, self.obj)[:2] - tgt)
        near = dist < self.obj.radius + self.target.radius + NEAR_GAP
        closest = all(dist < np.linalg.norm(_pos(client, o)[:2] - tgt) for o in self.others)
        wrong = _moved(client, self.target) or any(_moved(client, o) for o in self.others)
        return {
            "moved_correct_obj": _moved(client, self.obj),
            "moved_wrong_obj": wrong,
            "is_src_obj_grasped": grasped,
            "near_tgt_obj": near,
            "is_closest_to_tgt": closest,
            "success": near and closest and not wrong and not grasped,
        }
