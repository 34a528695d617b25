"""Training data from the built-in simulator: expert demonstrations and grounding questions.

`generate(cfg)` rolls out the scripted expert on the SEEN split (objects and paraphrases) and writes
one LeRobot dataset (layout v3.0 by default, v2.1 with lerobot_version="v2.1"; both are read back)
with, per frame, the camera image as the
policy receives it (the raw render; the policy resizes it to its input frame with cv2.INTER_AREA),
the 7-D action, the robot state and the simulator's ground truth (boxes, key points, expert trace).

The training sets read it back:
  * `ActionSamples`: (image, instruction, normalised action chunk [T, 7]) for stage 2;
  * `grounding_pairs`: (question, answer) in the Qwen2.5-VL JSON style of workbench/spatial.py, built
    from the ground truth of a frame: object boxes and points, the task's boxes (the answer to the
    spatial prompt) and the expert's gripper trace. Coordinates are pixels of the model input frame.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from workbench import spatial, spatial_metrics
from workbench.episodes.lerobot import LeRobotDataset, LeRobotDatasetWriter, default_features
from workbench.policy.prompts import DETECT_QUESTION, exists_question, grounding_question, object_question
from workbench.records import GroundTruth, Observation
from workbench.sim import catalog, instructions, make, to_observation
from workbench.sim.catalog import SPLITS, objects
from workbench.spatial import Box, Frame, Point, Trace

TASKS = ("tabletop_put_on", "tabletop_put_in", "tabletop_stack", "tabletop_pick", "tabletop_move_near")
CAMERA = "3rd_view_camera"
MESHES = "meshes"  # the scene split of the corpus meshes (SceneConfig.split)
SCENE_SPLITS = (*SPLITS, MESHES)


@dataclass
class DataConfig:
    """Expert demonstrations from the built-in simulator, seen split (`workbench train data`'s flags)."""

    out: str = "runs/data/demos"  # dataset folder (LeRobot layout)
    tasks: tuple[str, ...] = TASKS  # the built-in sim's tasks
    episodes_per_task: int = 30  # successful episodes kept per task
    seed: int = 0  # episode seeds are seed, seed+1, ...; evaluation uses seeds from 10_000 on
    render_width: int = 224  # the camera image as rendered (4:3 like SimplerEnv's 640x480)
    render_height: int = 168  # (pixels)
    paraphrase: bool = True  # draw seen paraphrases instead of the canonical instruction
    max_attempts_factor: int = 3  # give up on a task after this many times episodes_per_task resets
    lerobot_version: str = "v3.0"  # the LeRobot layout written ("v2.1" for LeRobot 0.3.x); both are read
    # DART (Laskey et al., 2017): the arm executes the expert's motion plus Gaussian noise of this standard
    # deviation (metres per step, on dx, dy, dz) while the dataset records the expert's own action. The
    # closed-loop expert corrects the drift, so the demonstrations show states off the expert's path with
    # corrective labels: what a policy needs once its own errors put it there (research/training-notes.md,
    # note 17).
    action_noise: float = 0.0
    # The expert phases the noise is added in (workbench.sim.expert.PHASES); empty: all of them. Noise
    # while placing makes the expert fail most placing tasks (note 17); the misses a policy
    # must learn to recover from happen while approaching and descending.
    noise_phases: tuple[str, ...] = ()
    # The share of those steps that are perturbed. Noise at every step never lets the expert reach a goal
    # (its target must come within 1 mm), so each phase times out; occasional pushes, each corrected in the
    # next step or two, keep the demonstrations successful.
    noise_probability: float = 1.0
    # Recovery demonstrations (0: off). The expert's first grasp is aimed this many metres beside the
    # source, in a random horizontal direction, so it closes on nothing; it notices, opens, and grasps
    # again. Only the frames from that retry on are recorded (the aimed miss would teach missing), and
    # episodes whose first grasp holds anyway are dropped. The failures of the bundled policy are such
    # misses, which clean demonstrations never show a way out of (research/training-notes.md, notes 17
    # and 19).
    miss_offset: float = 0.0

    def __post_init__(self) -> None:
        if self.seed + self.max_attempts_factor * self.episodes_per_task * len(self.tasks) > 10_000:
            raise ValueError("training seeds must stay below 10_000: evaluation seeds start there")
        if not 0.0 <= self.action_noise <= 0.05:
            raise ValueError(f"action noise is metres per step in [0, 0.05], got {self.action_noise}")
        if not 0.0 < self.noise_probability <= 1.0:
            raise ValueError(f"noise probability must be in (0, 1], got {self.noise_probability}")
        if not 0.0 <= self.miss_offset <= 0.1:
            raise ValueError(f"miss offset is metres in [0, 0.1], got {self.miss_offset}")
        from workbench.sim.expert import PHASES

        unknown = sorted(set(self.noise_phases) - set(PHASES))
        if unknown:
            raise ValueError(f"unknown expert phases {unknown}: choose from {', '.join(PHASES)}")


def resize_to_model(image: np.ndarray, size: int) -> np.ndarray:
    """What the policy does to a camera image (ST4VLAPolicy.prepare_images): INTER_AREA to size x size."""
    if image.shape[:2] == (size, size):
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def perturbed(cfg: DataConfig, phase: str, rng: np.random.Generator) -> bool:
    """Whether DART noise is added to this step's executed action (the expert being in `phase`)."""
    if not cfg.action_noise or (cfg.noise_phases and phase not in cfg.noise_phases):
        return False
    # No draw when every step is perturbed: the noise stream stays the one datasets made before
    # noise_probability existed were recorded with.
    return cfg.noise_probability == 1.0 or bool(rng.random() < cfg.noise_probability)


def aim_miss(expert, offset: float, seed: int) -> None:
    """Aim the expert's first grasp `offset` metres off in a direction drawn from `seed`."""
    angle = np.random.default_rng([seed, 1]).uniform(0.0, 2 * np.pi)  # apart from the noise stream
    expert.aim_offset = [offset * float(np.cos(angle)), offset * float(np.sin(angle))]


def generate(cfg: DataConfig) -> Path:
    """Roll out the expert on the seen split and write successful episodes; returns the dataset root.

    Episode seeds run on from cfg.seed across the tasks, one per reset tried (kept or not)."""
    root = Path(cfg.out)
    writer, seed = None, cfg.seed
    for task in cfg.tasks:
        writer, seed = task_demonstrations(cfg, task, root, writer, seed)
    if writer is None:
        raise RuntimeError("the expert produced no successful demonstration: check the simulator")
    writer.finalize()
    (root / "meta" / "generation.json").write_text(json.dumps(asdict(cfg), indent=1))
    return root


def task_demonstrations(
    cfg: DataConfig, task: str, root: Path, writer: LeRobotDatasetWriter | None, seed: int
) -> tuple[LeRobotDatasetWriter | None, int]:
    """Reset `task` from episode seed `seed` on until cfg.episodes_per_task demonstrations are kept (or
    the resets run out) and write them; returns the writer (opened at the first one kept, None while
    none was) and the next seed."""
    env = make(task, width=cfg.render_width, height=cfg.render_height, depth=False)
    kept = 0
    bar = tqdm(total=cfg.episodes_per_task, desc=f"demos {task}", unit="ep")
    for _ in range(cfg.max_attempts_factor * cfg.episodes_per_task):
        if kept == cfg.episodes_per_task:
            break
        try:
            obs, _ = env.reset(seed=seed, options={"split": "seen", "paraphrase": cfg.paraphrase})
        except RuntimeError as e:  # a layout the simulator cannot place: skip this seed
            tqdm.write(f"{task} seed {seed}: {e}")
            continue
        finally:
            seed += 1
        frames = demonstration(cfg, env, obs, seed - 1)
        if frames is None:
            continue
        if writer is None:
            writer = demo_writer(cfg, root, env, state_dim=len(frames[0][0].state))
        for o, a in frames:
            writer.add_observation(o, a)
        writer.save_episode(env.get_language_instruction(), task_name=task, seed=seed - 1, success=True)
        kept += 1
        bar.update(1)
    bar.close()
    env.close()
    if kept < cfg.episodes_per_task:
        print(f"warning: {task}: only {kept}/{cfg.episodes_per_task} successful demonstrations")
    return writer, seed


def demonstration(cfg: DataConfig, env, obs, seed: int) -> list[tuple[Observation, np.ndarray]] | None:
    """The expert's rollout from a reset of episode seed `seed`: its (observation, expert action) frames
    to keep, or None when it is no training data (a failure; with miss_offset, a grasp that held)."""
    frames, success = [], False
    noise = np.random.default_rng(seed)  # per episode: reproducible, independent of order
    if cfg.miss_offset:
        aim_miss(env.expert(), cfg.miss_offset, seed)
    retry_start = None  # the index of the second attempt's first frame
    for _step in range(env.max_episode_steps):
        o = to_observation(env, obs)
        expert = env.expert()
        action = expert.act(obs)  # expert.phase is now the phase this action belongs to
        if retry_start is None and expert.retries > 0:
            retry_start = len(frames)  # this action is the first of the second attempt
        frames.append((o, action))  # the label is the expert's action, never the noisy one
        executed = np.array(action, dtype=np.float64)
        if perturbed(cfg, expert.phase, noise):
            executed[:3] += noise.normal(0.0, cfg.action_noise, 3)
        obs, _, terminated, truncated, info = env.step(executed)
        if terminated or truncated:
            success = bool(info["success"])
            break
    if not success:
        return None  # only successful demonstrations are training data
    if cfg.miss_offset:
        if retry_start is None:
            return None  # the aimed-off grasp held: no recovery to show
        frames = frames[retry_start:]
    return frames


def demo_writer(cfg: DataConfig, root: Path, env, state_dim: int) -> LeRobotDatasetWriter:
    """The demonstrations' dataset: the camera as rendered, the robot state, the TCP pose."""
    features = default_features(
        {CAMERA: (cfg.render_height, cfg.render_width)}, state_dim=state_dim, tcp_pose=True
    )
    return LeRobotDatasetWriter(
        root, fps=env.control_hz, features=features, robot_type="panda", version=cfg.lerobot_version
    )


# ---------------------------------------------------------------------------------------------
# Grounding questions from ground truth
# ---------------------------------------------------------------------------------------------


# Question kinds added after the bundled checkpoints were trained: their words stay out of the
# tokenizer's corpus, so the bundled recipe's tokenizer stays byte-identical.
LATER_KINDS = frozenset({"all_boxes", "exists_yes", "exists_no"})


@dataclass
class QA:
    # "object_box" | "object_point" | "task_box" | "task_point" | "trace" | "all_boxes" | "exists_yes" |
    # "exists_no"
    kind: str
    question: str
    answer: str


def _find(boxes: list[Box], label: str) -> Box | None:
    return next((b for b in boxes if b.label == label), None)


def seen_object_names() -> list[str]:
    """The names an existence question may deny. Only the seen objects: a corpus widened with
    `SceneConfig(split="unseen")` still asks about absent objects among those alone."""
    return [spec.name for spec in objects("seen")]


def task_boxes(gt: GroundTruth) -> list[Box]:
    """The spatial prompt's answer: the boxes of the task's key objects (source, then target)."""
    out = [b for b in (_find(gt.objects, gt.object_label), _find(gt.objects, gt.target_label)) if b]
    return out


def task_answer(gt: GroundTruth, frame: Frame) -> str:
    """The spatial prompt's true answer: the key objects' boxes in the model frame's pixels."""
    return spatial.format(task_boxes(gt), frame)


def grounding_pairs(gt: GroundTruth, instruction: str, frame: Frame, trace_points: int = 6) -> list[QA]:
    """Every question this frame's ground truth can answer; answers in the model frame's pixels."""
    pairs = []
    for box in gt.objects:
        pairs.append(QA("object_box", object_question("box", box.label), spatial.format([box], frame)))
    for point in gt.key_points:
        pairs.append(
            QA("object_point", object_question("point", point.label), spatial.format([point], frame))
        )
    if gt.objects:
        left_to_right = sorted(gt.objects, key=lambda b: (b.center[0], b.center[1]))
        pairs.append(QA("all_boxes", DETECT_QUESTION, spatial.format(left_to_right, frame)))
    present = {b.label for b in gt.objects}
    for name in sorted(present):
        pairs.append(QA("exists_yes", exists_question(name), "Yes"))
    for name in seen_object_names():
        if name not in present:
            pairs.append(QA("exists_no", exists_question(name), "No"))
    boxes = task_boxes(gt)
    if boxes:
        pairs.append(QA("task_box", grounding_question("box", instruction), task_answer(gt, frame)))
        points = [Point(*b.center, b.label) for b in boxes]
        pairs.append(
            QA("task_point", grounding_question("point", instruction), spatial.format(points, frame))
        )
    if gt.expert_trace is not None and len(gt.expert_trace.points) >= 2:
        pts = spatial_metrics.resample_trace(gt.expert_trace, trace_points)
        trace = Trace(tuple((float(x), float(y)) for x, y in pts), "gripper")
        pairs.append(QA("trace", grounding_question("trace", instruction), spatial.format([trace], frame)))
    return pairs


# ---------------------------------------------------------------------------------------------
# Reading the dataset back for training
# ---------------------------------------------------------------------------------------------


@dataclass
class FrameItem:
    image: np.ndarray  # [S, S, 3] uint8, already at the model's input size
    instruction: str
    chunk: np.ndarray  # [T, 7] raw actions from this frame on (padded past the episode's end)
    ground_truth: GroundTruth | None
    frame: Frame  # model frame vs the raw render
    episode: int
    state: np.ndarray | None = None  # [S] the robot's joint positions (observation.state)
    tcp_pose: np.ndarray | None = None  # [7] the TCP pose (observation.tcp_pose), where recorded


def action_chunk(actions: np.ndarray, t: int, length: int) -> np.ndarray:
    """actions[t : t + length], padded past the end with "stay" (no motion, the last gripper command)."""
    chunk = actions[t : t + length]
    if len(chunk) < length:
        pad = np.zeros((length - len(chunk), actions.shape[1]), dtype=actions.dtype)
        pad[:, 6] = actions[-1, 6]
        chunk = np.concatenate([chunk, pad])
    return chunk  # [length, 7]


def load_frames(
    roots: str | Path | tuple | list, image_size: int, chunk_length: int, offset: int = 0
) -> list[FrameItem]:
    """Every frame of the dataset(s) at the model's input size, with its action chunk and ground truth.

    Several roots are read one after the other; episode numbers continue across them.
    """
    if isinstance(roots, tuple | list):
        items: list[FrameItem] = []
        for root in roots:
            items += load_frames(
                root, image_size, chunk_length, offset=len({f.episode for f in items}) + offset
            )
        return items
    root = roots
    ds = LeRobotDataset(root)
    items = []
    for i in tqdm(range(ds.num_episodes), desc=f"loading {Path(root).name}", unit="ep"):
        ep = ds.episode(i)
        actions = ep.actions.astype(np.float32)  # [N, 7]
        for t, f in enumerate(ep.frames):
            raw = f.images[CAMERA]
            h, w = raw.shape[:2]
            items.append(
                FrameItem(
                    image=resize_to_model(raw, image_size),
                    instruction=ep.task,
                    chunk=action_chunk(actions, t, chunk_length),
                    ground_truth=f.ground_truth,
                    frame=Frame(image_size, image_size, w, h),
                    episode=offset + i,
                    state=None if f.state is None else np.asarray(f.state, dtype=np.float32),
                    tcp_pose=None if f.tcp_pose is None else np.asarray(f.tcp_pose, dtype=np.float64),
                )
            )
    if not items:
        raise ValueError(f"{root} holds no frames: generate demonstrations first (workbench train data)")
    return items


def fill_tcp_poses(frames: list[FrameItem]) -> None:
    """Give every frame its TCP pose: datasets recorded before observation.tcp_pose was stored have only
    the joints, and the built-in Panda's forward kinematics turns those into the pose it would have
    recorded (to float precision: test_demonstrations_record_the_tcp_and_forward_kinematics_recovers_it)."""
    missing = [f for f in frames if f.tcp_pose is None]
    if not missing:
        return
    if any(f.state is None or len(f.state) != 9 for f in missing):
        raise ValueError(
            "a state that includes the TCP position needs observation.tcp_pose, or the built-in Panda's "
            "9 joint positions to compute it from; some frames have neither"
        )
    from workbench.sim.robot import tcp_poses

    for f, pose in zip(missing, tcp_poses(np.stack([f.state for f in missing])), strict=True):
        f.tcp_pose = pose


def gripper_to_model(actions: np.ndarray) -> np.ndarray:
    """Simulator gripper (+1 open, -1 close) -> upstream's training convention (1 open, 0 close)."""
    out = np.array(actions, dtype=np.float32)
    out[..., 6] = (out[..., 6] > 0).astype(np.float32)
    return out


def gripper_to_env(actions: np.ndarray) -> np.ndarray:
    """Unnormalised policy actions (gripper 1 open / 0 close) -> the simulator's +1 / -1."""
    out = np.array(actions, dtype=np.float64)
    out[..., 6] = 2.0 * (out[..., 6] >= 0.5) - 1.0
    return out


@dataclass
class SceneConfig:
    """Extra single-frame scenes for grounding only (more layouts than the demonstrations have)."""

    out: str = "runs/data/scenes"  # dataset folder (LeRobot layout, one frame per episode)
    tasks: tuple[str, ...] = TASKS  # the built-in sim's tasks
    scenes_per_task: int = 80  # scenes per task
    seed: int = 5_000  # disjoint from demonstration seeds, below the evaluation seeds
    render_width: int = 224  # the camera image as rendered (pixels)
    render_height: int = 168  # (pixels)
    distractors: int | None = None  # None: the task's own count; 0 with "tabletop_pick": one object
    # The objects' split. "unseen" widens the grounding corpus beyond the demonstrations' objects, as
    # the paper's web-scale grounding data names objects its robot data never shows; "meshes" moves one
    # of the catalog's hundreds of corpus meshes (catalog.CORPUS_MESH_IDS, called "gadget") among seen
    # objects (the scene of seed s moves mesh CORPUS_MESH_IDS[s % 400]). The instruction stays a seen
    # paraphrase, so unseen phrasings never reach training.
    split: str = "seen"
    lerobot_version: str = "v3.0"  # the LeRobot layout written ("v2.1" for LeRobot 0.3.x); both are read

    def __post_init__(self) -> None:
        if self.split not in SCENE_SPLITS:
            raise ValueError(f"scene split must be one of {SCENE_SPLITS}, got {self.split!r}")
        if self.split == MESHES and "tabletop_stack" in self.tasks:
            raise ValueError(
                "scene split 'meshes' moves a mesh, which cannot be stacked: leave tabletop_stack out of "
                "the scene tasks (--scenes-tasks)"
            )


def scene_options(cfg: SceneConfig, seed: int) -> dict:
    """The reset options of the scene of `seed`."""
    if cfg.split == MESHES:
        ids = catalog.CORPUS_MESH_IDS
        options = {"split": "seen", "paraphrase": False, "object": catalog.corpus_mesh(ids[seed % len(ids)])}
    else:  # the seen split keeps its original draw (the bundled recipe's scenes regenerate byte for byte)
        options = {"split": cfg.split, "paraphrase": cfg.split == "seen"}
    if cfg.distractors is not None:
        options["distractors"] = cfg.distractors
    return options


def generate_scenes(cfg: SceneConfig) -> Path:
    """Reset-only scenes saved as one-frame LeRobot episodes with a zero action; objects from
    `cfg.split`, instructions always from the seen paraphrases."""
    if cfg.seed + cfg.scenes_per_task * len(cfg.tasks) > 10_000:
        raise ValueError("scene seeds must stay below 10_000: evaluation seeds start there")
    root, writer, seed = Path(cfg.out), None, cfg.seed
    for task in cfg.tasks:
        env = make(task, width=cfg.render_width, height=cfg.render_height, depth=False)
        for _ in tqdm(range(cfg.scenes_per_task), desc=f"scenes {task}", unit="scene"):
            try:
                obs, _ = env.reset(seed=seed, options=scene_options(cfg, seed))
            except RuntimeError as e:  # a layout the simulator cannot place: skip this seed
                tqdm.write(f"{task} seed {seed}: {e}")
                continue
            finally:
                seed += 1
            if cfg.split != "seen":
                env.set_language_instruction(instructions.for_scene(env, "seen", seed - 1))
            o = to_observation(env, obs)
            if writer is None:
                features = default_features(
                    {CAMERA: (cfg.render_height, cfg.render_width)}, state_dim=len(o.state)
                )
                writer = LeRobotDatasetWriter(
                    root,
                    fps=env.control_hz,
                    features=features,
                    robot_type="panda",
                    version=cfg.lerobot_version,
                )
            writer.add_observation(o, np.zeros(7))
            writer.save_episode(env.get_language_instruction(), task_name=task, seed=seed - 1)
        env.close()
    writer.finalize()
    return root
