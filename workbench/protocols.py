"""The interfaces the step loop meets its parts at: Policy, Source, Sink, Transition, BranchError.

    Source.reset(seed, options) -> Observation        Source.step(action [7]) -> Transition
    Policy.spatial(images, instruction) -> SpatialAnswer   Policy.act(images, instruction, ...) -> ActionChunk
    Sink.write(StepRecord)                            (optionally Sink.note(event: dict) for edits)

Invariant: this module imports only the record types (workbench.records) and the spatial answer
(workbench.spatial), never the runner, a source or a sink, so every one of them can import it.
The runner (workbench.runner) drives them; the sources are in workbench.sources; the sinks are
workbench.sessions.SessionWriter, workbench.viz.rerun_log.RerunLogger and workbench.viz.video.VideoSink.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from workbench.records import ActionChunk, Observation, StepRecord
from workbench.spatial import SpatialAnswer


@runtime_checkable
class Policy(Protocol):
    def spatial(self, images: list[np.ndarray], instruction: str, query: str = "box") -> SpatialAnswer: ...

    def act(
        self,
        images: list[np.ndarray],
        instruction: str,
        *,
        num_ddim_steps: int = 10,
        cfg_scale: float = 1.5,
        seed: int | None = None,
        return_internals: bool = False,
        state: np.ndarray | None = None,  # the robot state, for models that read it
    ) -> ActionChunk: ...


@dataclass
class Transition:
    """What a source's step returns: the next observation and the env's verdict on the step."""

    observation: Observation
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Source(Protocol):
    """Where observations come from: a simulator, SimplerEnv, or a recorded episode."""

    name: str
    can_branch: bool  # False for recorded sources: the future cannot change
    gripper_convention: str

    # Optionally `reset_info: dict`, what the env said at its last reset; the runner puts it in step 0's info.

    def reset(self, seed: int | None = None, options: dict | None = None) -> Observation: ...

    def step(self, action: np.ndarray) -> Transition: ...

    def recorded_action(self) -> np.ndarray | None: ...  # the recorded action at the current frame

    def snapshot(self) -> Any: ...

    def restore(self, state: Any) -> None: ...

    def fork(self) -> Source: ...  # an independent copy (independent mode)

    def close(self) -> None: ...


@runtime_checkable
class Sink(Protocol):
    def write(self, record: StepRecord) -> None: ...

    def close(self) -> None: ...


class BranchError(RuntimeError):
    """A branch that cannot be made (recorded source, unknown step, name taken)."""
