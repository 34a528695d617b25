"""What this project's checkpoints read besides upstream's prompt, as composed transforms around act().

Upstream InternVLA-M1 conditions its action expert on the prompt and the frames alone: that is
`ST4VLAPolicy.act` with no transforms. A checkpoint whose config asks for more gets these steps when it
is built (`transforms_for`, so `ST4VLAPolicy.load` of such a checkpoint needs nothing else):

    config option                  steps                      what the model reads besides upstream's
    condition_on_answer            WriteAnswer, ReadAnswer    the VLM reads the prompt AND its own answer
    answer_points                  WriteAnswer, AnswerPoints  the answer's box centres join the DiT's input
    action.state_dim (robot part)  RobotState                 the normalised joints (state_tcp: then TCP x, y, z)

Each step takes one sample's `Conditioning` and returns it completed (openpi's composed transforms);
`Transforms` runs them in that order (the answer first, then the VLM side, then the DiT side).

Invariants: `Conditioning.vlm_inputs` None means the prompt alone (upstream); `Conditioning.expert`
holds the DiT's inputs besides the query tokens, each 1-D, in order (robot state, then the answer's
points) and becomes one [1, S] tensor; an `answer` given to transforms that read none is refused. The
answer is written with the policy's decoding settings (`write_answers`: workbench.policy.decoding).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
import torch

from workbench.policy import consensus
from workbench.policy.configuration import ANSWER_POINTS, TCP_POSITION, ST4VLAConfig

if TYPE_CHECKING:  # the policy imports this module; steps only receive one
    from workbench.policy.policy import ST4VLAPolicy

# Longest spatial answer an answer-reading checkpoint writes before acting (two boxes take ~40).
ANSWER_TOKENS = 64


@dataclass
class Conditioning:
    """One sample's inputs to the model, as act() hands them through the transforms."""

    views: list[np.ndarray] | None  # model-sized views, each [S, S, 3] uint8 (None: the DiT side only)
    instruction: str | None
    state: np.ndarray | None = None  # the observation's joint positions
    tcp_pose: np.ndarray | None = None  # obs["extra"]["tcp_pose"]: x, y, z first
    answer: str | None = None  # the spatial answer acted on, in the model frame's pixels
    size: tuple[int, int] | None = None  # (height, width) of that model frame
    vlm_inputs: dict[str, torch.Tensor] | None = None  # None: the prompt alone
    expert: list[np.ndarray] = field(default_factory=list)  # the DiT's inputs besides the queries

    def expert_input(self, device: str, dtype: torch.dtype) -> torch.Tensor | None:
        """`expert` as the DiT reads it, [1, S], or None when it reads nothing besides the queries."""
        if not self.expert:
            return None
        x = torch.as_tensor(np.concatenate(self.expert), dtype=torch.float32)  # [S]
        return x.reshape(1, -1).to(device, dtype)


class Step(Protocol):
    name: ClassVar[str]  # the act() timing it is reported under
    stage: ClassVar[str]  # "answer", "vlm" or "expert"

    def __call__(self, policy: ST4VLAPolicy, x: Conditioning) -> Conditioning: ...


@dataclass(frozen=True)
class Transforms:
    """Steps run in order on one sample; no steps is upstream."""

    steps: tuple[Step, ...] = ()

    @property
    def reads_answer(self) -> bool:
        """Whether acting reads a spatial answer (the model's own unless one is given)."""
        return any(s.stage == "answer" for s in self.steps)

    def __call__(self, policy: ST4VLAPolicy, x: Conditioning, timer: Callable | None = None) -> Conditioning:
        """Every step, each timed under its name when `timer` is given (act's return_internals)."""
        if x.answer is not None and not self.reads_answer:
            raise ValueError(
                f"{policy.name} does not act on a spatial answer (config.condition_on_answer and "
                "config.answer_points are false): do not pass answer=."
            )
        return self.run(policy, x, timer=timer)

    def run(
        self, policy: ST4VLAPolicy, x: Conditioning, stage: str | None = None, timer: Callable | None = None
    ) -> Conditioning:
        """The steps of one `stage` (None: all of them), in order."""
        for step in self.steps:
            if stage is None or step.stage == stage:
                with timer(step.name) if timer is not None else nullcontext():
                    x = step(policy, x)
        return x


def transforms_for(config: ST4VLAConfig) -> Transforms:
    """The steps a checkpoint's config asks for; none for an upstream config."""
    steps: list[Step] = []
    if config.reads_answer:
        steps.append(WriteAnswer())
    if config.condition_on_answer:
        steps.append(ReadAnswer())
    if config.robot_state_dim:
        steps.append(RobotState(tcp=config.state_tcp))
    if config.answer_points:
        steps.append(AnswerPoints())
    return Transforms(tuple(steps))


# --- the steps ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteAnswer:
    """The model answers its spatial prompt (greedy) before acting, unless an answer was given."""

    name: ClassVar[str] = "spatial_answer"
    stage: ClassVar[str] = "answer"

    def __call__(self, policy: ST4VLAPolicy, x: Conditioning) -> Conditioning:
        if x.answer is not None:
            return x
        return replace(x, answer=write_answers(policy, [x.views], [x.instruction])[0])


@dataclass(frozen=True)
class ReadAnswer:
    """config.condition_on_answer: the VLM reads the prompt followed by the answer (the model's own,
    written here when none was given), so the box it wrote reaches the query former."""

    name: ClassVar[str] = "condition_inputs"
    stage: ClassVar[str] = "vlm"

    def __call__(self, policy: ST4VLAPolicy, x: Conditioning) -> Conditioning:
        x = WriteAnswer()(policy, x)
        vlm = policy.model.qwen_vl_interface
        inputs = vlm.build_inputs([x.views], [policy.prompt(x.instruction)], answers=[x.answer])
        inputs.pop("labels")  # the answer is read, not supervised
        return replace(x, vlm_inputs=inputs)


@dataclass(frozen=True)
class RobotState:
    """action.state_dim: the robot state normalised by the checkpoint's statistics; the joints, then with
    `tcp` (config.state_tcp) the TCP position."""

    tcp: bool = False
    name: ClassVar[str] = "robot_state"
    stage: ClassVar[str] = "expert"

    def __call__(self, policy: ST4VLAPolicy, x: Conditioning) -> Conditioning:
        robot = robot_state(policy, x.state, x.tcp_pose, self.tcp)
        return replace(x, expert=[*x.expert, policy._state_normalizer.normalize(robot)])


@dataclass(frozen=True)
class AnswerPoints:
    """config.answer_points: the centres of the answer's first two boxes (source, target) join the DiT's
    input as ANSWER_POINTS numbers in [-1, 1] of the model frame."""

    name: ClassVar[str] = "answer_points"
    stage: ClassVar[str] = "expert"

    def __call__(self, policy: ST4VLAPolicy, x: Conditioning) -> Conditioning:
        if x.answer is None or x.size is None:
            raise ValueError(f"{policy.name} reads the points of its spatial answer: pass answer= and size=.")
        points = points_from_answer(x.answer, width=x.size[1], height=x.size[0])
        return replace(x, expert=[*x.expert, points])


# --- helpers ----------------------------------------------------------------------------------------


def write_answers(policy: ST4VLAPolicy, views: list[list[np.ndarray]], instructions: list[str]) -> list[str]:
    """Greedy answers to the spatial prompt for a batch (views model-sized). Batched decoding gives the
    same tokens as one sample at a time. The policy's decoding settings apply: refine_radius > 0 writes
    each number as its local expectation (workbench.policy.refine); votes > 1 asks on that many
    shifted copies of the frame and keeps their median answer (workbench.policy.consensus)."""
    vlm = policy.model.qwen_vl_interface

    def greedy(batch: list[list[np.ndarray]], texts: list[str]) -> list[str]:
        inputs = vlm.build_inputs(batch, [policy.prompt(t) for t in texts])
        return vlm.generate(inputs, max_new_tokens=ANSWER_TOKENS, refine_radius=policy.decoding.refine_radius)

    if policy.decoding.votes > 1:
        return consensus.answer_with_votes(greedy, views, instructions, policy.decoding.votes)
    return greedy(views, instructions)


def robot_state(
    policy: ST4VLAPolicy, state: np.ndarray | None, tcp_pose: np.ndarray | None, tcp: bool
) -> np.ndarray:
    """The robot state as the action expert reads it, unnormalised: the joints, then (`tcp`) the TCP
    position."""
    if state is None:
        raise ValueError(
            f"{policy.name} reads the robot state ({policy.config.robot_state_dim} numbers): pass state= "
            "(the observation's joint positions)."
        )
    robot = np.asarray(state, dtype=np.float64).reshape(-1)
    if not tcp:
        return robot
    if tcp_pose is None:
        raise ValueError(
            f"{policy.name} reads the TCP position after the joints: pass tcp_pose= "
            '(obs["extra"]["tcp_pose"], x, y, z first).'
        )
    pose = np.asarray(tcp_pose, dtype=np.float64).reshape(-1)
    if pose.size < TCP_POSITION:
        raise ValueError(f"tcp_pose needs at least x, y, z; got {pose.size} numbers.")
    return np.concatenate([robot, pose[:TCP_POSITION]])


def points_from_answer(text: str, width: int, height: int) -> np.ndarray:
    """[ANSWER_POINTS] in [-1, 1]: the centres of the first two boxes of an answer to the spatial prompt
    (taught as the source's box, then the target's), over the frame's width and height. A box the answer
    lacks reads as the frame's top-left corner (-1, -1), where no object on the table ever is."""
    out = np.full(ANSWER_POINTS, -1.0)
    for i, box in enumerate(consensus.answer_boxes(text)[:2]):
        cx, cy = box.center
        out[2 * i : 2 * i + 2] = (2 * cx / width - 1, 2 * cy / height - 1)
    return np.clip(out, -1.0, 1.0)
