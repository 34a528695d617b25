"""The built-in tabletop simulator: a Panda at a table in pybullet, speaking SimplerEnv's interface.

    env = make("tabletop_put_on", width=224, height=224)
    obs, info = env.reset(seed=0, options={"object": "red cube", "instruction": "put the red cube away"})
    obs, reward, terminated, truncated, info = env.step(env.expert().act(obs))

Control runs at 5 Hz (WidowX's rate in SimplerEnv) with 48 physics substeps of 1/240 s. The whole
state (pybullet's and ours) can be snapshotted and restored, so episodes branch and replay exactly.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, fields

import numpy as np

from workbench.records import Camera, GroundTruth
from workbench.sim import catalog, instructions
from workbench.sim.base import ACTION_HIGH, ACTION_LOW, GRIPPER_ABSOLUTE, check_action
from workbench.sim.catalog import ObjectSpec
from workbench.sim.robot import STATE_NAMES, Panda
from workbench.sim.scene import CameraConfig, CameraRig, Placed, build_world, connect, spawn, world_points
from workbench.sim.tasks import NEAR_GAP, Evaluator, TaskSpec, get_task, sample_layout
from workbench.spatial import Box, Point, Trace

RESET_OPTIONS = ("object", "target", "instruction", "split", "paraphrase", "distractors")
SETTLE_STEPS = 60  # physics substeps after dropping the objects (0.25 s)


@dataclass
class SimConfig:
    camera: CameraConfig = field(default_factory=CameraConfig)
    control_hz: int = 5
    physics_hz: int = 240
    renderer: str = "tiny"  # "tiny" (CPU) | "egl"
    render: bool = True  # False: no images in obs (physics-only, e.g. fast expert evaluation)
    depth: bool = True
    segmentation: bool = False
    lowpoly_robot: bool = True  # draw the Panda with its collision meshes (3x faster CPU rendering)
    strict_actions: bool = False  # True: out-of-range actions raise instead of being clipped
    max_episode_steps: int | None = None  # None: the task's own limit
    split: str = "seen"  # default object / paraphrase split for reset()
    base_yaw_deg: float = 0.0  # turn the robot base about z (around robot.BASE_PIVOT), as SimplerEnv's are


@dataclass
class _Recipe:
    """How the current scene was built, so restore() can rebuild it exactly."""

    specs: list[ObjectSpec]  # spawn order: target (if any), the object to move, distractors
    poses: list[tuple[float, float, float]]  # x, y, yaw
    object_index: int
    target_index: int | None


class TabletopEnv:
    gripper_convention = GRIPPER_ABSOLUTE
    state_names = STATE_NAMES  # what obs["agent"]["qpos"] holds
    action_low = ACTION_LOW
    action_high = ACTION_HIGH

    def __init__(self, task: str | TaskSpec, config: SimConfig | None = None):
        self.task = task if isinstance(task, TaskSpec) else get_task(task)
        self.config = config or SimConfig()
        if self.config.physics_hz % self.config.control_hz:
            raise ValueError("physics_hz must be a multiple of control_hz")
        self.task_name = self.task.name
        self.control_hz = float(self.config.control_hz)
        self.max_episode_steps = self.config.max_episode_steps or self.task.max_episode_steps
        self.substeps = self.config.physics_hz // self.config.control_hz
        self.rig = CameraRig(self.config.camera)  # validates the camera before a client exists
        self.client = connect(self.config.renderer)
        self._rng = np.random.default_rng()
        self._recipe: _Recipe | None = None
        self._expert = None
        self.elapsed_steps = 0
        self.instruction = ""

    # --- the SimplerEnv interface -------------------------------------------------------------

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Build a new scene. options: object (the object to move) and target (each a catalog name,
        URDF path or ObjectSpec), instruction (any text), split ("seen"/"unseen"/"novel",
        catalog.OBJECT_SPLITS; a novel scene moves a novel object among seen ones, catalog.scene_split),
        paraphrase (True: a paraphrase of the object split drawn with the scene's generator instead of
        the canonical phrasing; "seen"/"unseen": one of that split drawn per seed, instructions.for_scene,
        as evaluation phrases an episode), distractors (int or list of objects)."""
        options = dict(options or {})
        unknown = set(options) - set(RESET_OPTIONS)
        if unknown:
            hint = "; the object to move is options['object']" if "source" in unknown else ""
            raise ValueError(f"unknown reset options {sorted(unknown)}; known: {list(RESET_OPTIONS)}{hint}")
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._recipe = self._sample_recipe(options)
        self._build(self._recipe)
        self._expert = None  # a new episode gets a new expert
        self.instruction = self._pick_instruction(options, seed)
        obs = self._obs()
        info = {"episode_seed": seed, "instruction": self.instruction, **self.evaluator.stats}
        return obs, {**info, **self.evaluator.distances(self.client, self.robot.tcp_pose()[:3])}

    def step(self, action) -> tuple[dict, float, bool, bool, dict]:
        if self._recipe is None:
            raise RuntimeError("call reset() before step()")
        a, clipped = check_action(action, ACTION_LOW, ACTION_HIGH, strict=self.config.strict_actions)
        self.robot.apply_action(a[:3], a[3:6], a[6])
        self.robot.drive()
        for _ in range(self.substeps):
            self.client.stepSimulation()
        self.elapsed_steps += 1
        info = self.evaluator(self.client, self.robot.body)
        info["elapsed_steps"] = self.elapsed_steps
        info["action_clipped"] = clipped
        info.update(self.evaluator.distances(self.client, self.robot.tcp_pose()[:3]))
        terminated = info["success"]
        truncated = self.elapsed_steps >= self.max_episode_steps and not terminated
        return self._obs(), float(terminated), terminated, truncated, info

    def get_language_instruction(self) -> str:
        return self.instruction

    def set_language_instruction(self, text: str) -> None:
        """Change the instruction mid-episode (e.g. a live paraphrase edit)."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("instruction must be a non-empty string")
        self.instruction = text

    def is_final_subtask(self) -> bool:
        return True

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client = None

    # --- scene building -----------------------------------------------------------------------

    def _choose(self, value, pool: list[ObjectSpec], what: str, exclude: set[str]) -> ObjectSpec:
        if value is not None:
            return catalog.resolve(value)
        pool = [s for s in pool if s.name not in exclude]
        if not pool:
            raise ValueError(f"no {what} left in the catalog for task {self.task_name}")
        return pool[int(self._rng.integers(len(pool)))]

    def _sample_recipe(self, options: dict) -> _Recipe:
        split = options.get("split", self.config.split)
        if split not in catalog.OBJECT_SPLITS:
            raise ValueError(f"split must be one of {catalog.OBJECT_SPLITS}, got {split!r}")
        if options.get("object") is None and not self.task.objects_to_move(split):
            raise ValueError(
                f"task {self.task_name} has no {split} object to move (the {split} split holds none of "
                f"its kind); evaluate it on another split, or pass options['object']"
            )
        obj = self._choose(options.get("object"), self.task.objects_to_move(split), "object to move", set())
        target = None
        if self.task.has_target:
            target = self._choose(options.get("target"), self.task.targets(split), "target", {obj.name})
        wanted = options.get("distractors", self.task.n_distractors)
        if isinstance(wanted, int):
            used = {obj.name} | ({target.name} if target else set())
            distractors = []
            for _ in range(wanted):
                pool = catalog.objects(catalog.scene_split(split), kind="object")
                d = self._choose(None, pool, "distractor", used)
                used.add(d.name)
                distractors.append(d)
        else:
            distractors = [catalog.resolve(d) for d in wanted]
        specs = ([target] if target else []) + [obj] + distractors
        radii = [_footprint(s, self.client) for s in specs]
        first_gap = None
        if self.task.kind == "move_near":  # start the object away from the target, others further still
            first_gap = [0.0, NEAR_GAP + 0.04] + [0.1] * len(distractors)
        xys = sample_layout(radii, self._rng, first_gap=first_gap)
        yaws = self._rng.uniform(-np.pi, np.pi, size=len(specs))
        poses = [(float(x), float(y), float(w)) for (x, y), w in zip(xys, yaws, strict=True)]
        return _Recipe(specs, poses, object_index=1 if target else 0, target_index=0 if target else None)

    def _build(self, recipe: _Recipe) -> None:
        build_world(self.client, self.config.physics_hz)
        base_yaw = np.deg2rad(self.config.base_yaw_deg)
        self.robot = Panda(self.client, lowpoly=self.config.lowpoly_robot, base_yaw=base_yaw)
        self.placed: list[Placed] = [
            spawn(self.client, spec, (x, y), yaw)
            for spec, (x, y, yaw) in zip(recipe.specs, recipe.poses, strict=True)
        ]
        self.robot.drive()
        for _ in range(SETTLE_STEPS):
            self.client.stepSimulation()
        for obj in self.placed:  # "moved" is measured from where objects settled
            obj.init_pos = np.asarray(self.client.getBasePositionAndOrientation(obj.body)[0])
        self.obj = self.placed[recipe.object_index]
        self.target = self.placed[recipe.target_index] if recipe.target_index is not None else None
        others = [o for o in self.placed if o is not self.obj and o is not self.target]
        self.evaluator = Evaluator(self.task, self.obj, self.target, others)
        self.elapsed_steps = 0

    def _pick_instruction(self, options: dict, seed: int | None) -> str:
        if options.get("instruction") is not None:
            text = options["instruction"]
            if not isinstance(text, str) or not text.strip():
                raise ValueError("options['instruction'] must be a non-empty string")
            return text
        tgt = self.target.spoken if self.target else ""
        paraphrase = options.get("paraphrase")
        if paraphrase in instructions.SPLITS:  # a split's paraphrase, drawn per seed (as evaluation does)
            return instructions.for_scene(self, paraphrase, seed)
        if paraphrase:
            split = options.get("split", self.config.split)
            if split not in instructions.SPLITS:
                raise ValueError(
                    f"paraphrase=True draws from the object split's paraphrases; the {split!r} split has "
                    f"none: pass paraphrase='seen' or 'unseen'"
                )
            return instructions.sample(self.task_name, self.obj.spoken, tgt, split, self._rng)
        return instructions.canonical(self.task_name, self.obj.spoken, tgt)

    # --- observations and ground truth --------------------------------------------------------

    def _obs(self) -> dict:
        name = self.rig.cfg.name
        obs = {
            "agent": {
                "qpos": self.robot.qpos().astype(np.float32),
                "base_pose": self.robot.base_pose().astype(np.float32),
            },
            "extra": {"tcp_pose": self.robot.tcp_pose().astype(np.float32)},
            "camera_param": {name: self.rig.params()},
            "image": {},
        }
        if self.config.render:
            cfg = self.config
            obs["image"][name] = self.rig.render(self.client, cfg.renderer, cfg.depth, cfg.segmentation)
        return obs

    def render_segmentation(self) -> np.ndarray:
        """[H, W] int32 body ids of the main camera (-1 background), rendered on demand."""
        return self.rig.render(self.client, self.config.renderer, False, True)["Segmentation"][..., 0]

    def camera(self, name: str | None = None) -> Camera:
        if name not in (None, self.rig.cfg.name):
            raise KeyError(f"no camera {name!r}; this env has {self.rig.cfg.name!r}")
        return self.rig.camera()

    @property
    def objects(self) -> list[Placed]:
        return list(self.placed)

    def object_box(self, obj: Placed) -> Box | None:
        """The object's tight 2-D box in the camera image (None if it is fully out of view)."""
        px = self.rig.camera().project(world_points(self.client, obj))
        px = px[np.all(np.isfinite(px), axis=1)]
        if len(px) == 0:
            return None
        w, h = self.rig.cfg.width, self.rig.cfg.height
        x1, y1 = np.clip(px.min(0), 0, [w, h])
        x2, y2 = np.clip(px.max(0), 0, [w, h])
        if x2 <= x1 or y2 <= y1:
            return None
        return Box(float(x1), float(y1), float(x2), float(y2), obj.name)

    def ground_truth(self) -> GroundTruth:
        """Boxes are amodal (an object's full projected extent, also where the gripper hides part of
        it), clipped to the image; key points are object centres; the target box is the target
        object's; the trace is the expert's remaining plan from the TCP, projected."""
        cam = self.rig.camera()
        boxes, points = [], []
        for obj in self.placed:
            box = self.object_box(obj)
            if box is not None:
                boxes.append(box)
            centre = world_points(self.client, obj).mean(0)
            x, y = cam.project(centre[None])[0]
            if np.isfinite(x):
                points.append(Point(float(x), float(y), obj.name))
        target_box = self.object_box(self.target) if self.target is not None else None
        path = self.expert().plan()  # [K, 3] remaining waypoints, starting at the TCP
        px = cam.project(path)
        trace = Trace(tuple((float(x), float(y)) for x, y in px if np.isfinite(x)), "gripper")
        return GroundTruth(
            objects=boxes,
            key_points=points,
            target=target_box,
            object_label=self.obj.name,
            target_label=self.target.name if self.target else "",
            expert_trace=trace,
        )

    # --- the scripted expert ------------------------------------------------------------------

    def expert(self):
        """This episode's scripted expert (one per episode; its phase is part of snapshots)."""
        if self._expert is None:
            from workbench.sim.expert import ScriptedExpert

            self._expert = ScriptedExpert(self)
        return self._expert

    # --- snapshot / restore -------------------------------------------------------------------

    def snapshot(self) -> dict:
        """The whole state: pybullet's (as .bullet bytes) plus ours, including the expert's phase.

        The env then re-anchors itself on the snapshot (restores it at once), so the branch that
        goes on from here and any later restore() of this snapshot are bit-identical. pybullet does
        not serialise every contact cache of mesh (convex hull) objects; without re-anchoring a
        restored branch with a held mesh drifts by about a millimetre from the live one. Scenes of
        primitives are unaffected either way."""
        if self._recipe is None:
            raise RuntimeError("call reset() before snapshot()")
        fd, path = tempfile.mkstemp(suffix=".bullet")
        os.close(fd)
        try:
            self.client.saveBullet(path)
            with open(path, "rb") as f:
                bullet = f.read()
        finally:
            os.remove(path)
        state = {
            "task": self.task_name,
            "bullet": bullet,
            "recipe": self._recipe,
            "init_pos": [o.init_pos.copy() for o in self.placed],
            "robot": self.robot.state_dict(),
            "evaluator": self.evaluator.state_dict(),
            "expert": self.expert().state_dict(),
            "elapsed_steps": self.elapsed_steps,
            "instruction": self.instruction,
            "rng": self._rng.bit_generator.state,
        }
        self._go_back(state)  # no observation: the caller has this step's already
        return state

    def restore(self, state: dict) -> dict:
        """Go back to a snapshot (of this or an earlier episode); returns the observation there."""
        self._go_back(state)
        return self._obs()

    def _go_back(self, state: dict) -> None:
        if state.get("task") != self.task_name:
            raise ValueError(f"snapshot is of task {state.get('task')!r}, this env runs {self.task_name!r}")
        self._recipe = state["recipe"]
        self._build(self._recipe)  # same spawn calls in the same order -> same body ids
        fd, path = tempfile.mkstemp(suffix=".bullet")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(state["bullet"])
            self.client.restoreState(fileName=path)
        finally:
            os.remove(path)
        for obj, pos in zip(self.placed, state["init_pos"], strict=True):
            obj.init_pos = pos.copy()
        self.robot.load_state_dict(state["robot"])
        self.evaluator.load_state_dict(state["evaluator"])
        self.elapsed_steps = state["elapsed_steps"]
        self.instruction = state["instruction"]
        self._rng = np.random.default_rng()
        self._rng.bit_generator.state = state["rng"]
        # the same expert object carries on (callers may hold it), with the snapshot's phase
        self.expert().load_state_dict(state["expert"])


_MESH_RADIUS: dict[tuple[str, float], float] = {}


def _footprint(spec: ObjectSpec, client) -> float:
    """Footprint radius before spawning (for the layout). Meshes are measured once, off to the side
    (build_world resets the simulation before the scene is built, so this leaves no trace)."""
    s = spec.size
    if spec.shape == "box":
        return float(np.hypot(s[0], s[1]))
    if spec.shape in ("cylinder", "sphere", "plate"):
        return float(s[0])
    if spec.shape == "basket":
        return float(np.hypot(s[0], s[0]) + 0.012)
    key = (spec.urdf, spec.scale)
    if key not in _MESH_RADIUS:
        body = client.loadURDF(spec.urdf, [0, 0, -5], globalScaling=spec.scale)
        pts = np.asarray(client.getMeshData(body, -1)[1], dtype=np.float64).reshape(-1, 3)
        if len(pts) == 0:
            lo, hi = (np.asarray(v) for v in client.getAABB(body))
            pts = np.stack([lo, hi]) - [0, 0, -5]
        client.removeBody(body)
        _MESH_RADIUS[key] = float(np.linalg.norm(pts[:, :2], axis=1).max())
    return _MESH_RADIUS[key]


def config_from_kwargs(**kw) -> SimConfig:
    """make()'s keyword arguments -> SimConfig; width/height/camera_* reach the camera."""
    cam_fields = {f.name for f in fields(CameraConfig)}
    sim_fields = {f.name for f in fields(SimConfig)}
    cam_kw = {k.removeprefix("camera_"): v for k, v in kw.items() if k.removeprefix("camera_") in cam_fields}
    sim_kw = {k: v for k, v in kw.items() if k in sim_fields}
    unknown = set(kw) - set(sim_kw) - {k for k in kw if k.removeprefix("camera_") in cam_fields}
    if unknown:
        raise TypeError(f"unknown simulator options {sorted(unknown)}; see SimConfig and CameraConfig")
    cfg = SimConfig(**sim_kw)
    if cam_kw:
        cfg.camera = CameraConfig(**{**cfg.camera.__dict__, **cam_kw})
    return cfg
