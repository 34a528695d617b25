"""From what a source observed (or a client sent) to one `policy.act(...)` call, in one place.

    PolicyInput.from_observation(obs, instruction, mapping)   # the runner: an Observation
    PolicyInput(views, instruction, state, tcp_pose)          # the policy server: a checked request item
    act(policy, inputs, num_ddim_steps=..., cfg_scale=..., seed=...) -> ActionChunk

Invariants: the views go in the source's order (the main camera first); `state` is what the checkpoint's
action expert reads, already mapped (workbench.compat.StateMapping) or filled by the server's state
policy, or None; `tcp_pose` reaches only policies that read it (workbench.policy.configuration.reads_tcp),
since the others' act() does not take the keyword. Transforms compose as functions
PolicyInput -> PolicyInput (openpi's input transforms); the runner applies a slot's after the mapping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.policy.configuration import reads_tcp
from workbench.records import ActionChunk, Observation


@dataclass(frozen=True)
class PolicyInput:
    """What one act() call reads."""

    images: list[np.ndarray]  # the views, uint8 [H, W, 3] each, main camera first
    instruction: str
    state: np.ndarray | None = None  # [S] the robot state as the checkpoint reads it; None: none
    tcp_pose: np.ndarray | None = None  # [7] world xyz + wxyz (or at least xyz); None: not observed
    observation: Observation | None = None  # where it came from (for transforms that read more)
    # The spatial answer to act on (model text), for checkpoints that act on one; None: their own.
    answer: str | None = None

    @classmethod
    def from_observation(cls, obs: Observation, instruction: str, mapping: Any = None) -> PolicyInput:
        """The observation's views, its state through `mapping` (a StateMapping; None: as observed)
        and its TCP pose."""
        state = obs.state if mapping is None else mapping.apply(obs.state)
        return cls(list(obs.images.values()), instruction, state, obs.tcp_pose, obs)


# One step of input handling: (inputs, step of the episode) -> inputs (e.g. research's oracle state).
InputTransform = Callable[[PolicyInput, int], PolicyInput]


def act(
    policy: Any,
    inputs: PolicyInput,
    *,
    num_ddim_steps: int = 10,
    cfg_scale: float = 1.5,
    seed: int | None = None,
    return_internals: bool = False,
) -> ActionChunk:
    """policy.act on `inputs`: the one call every caller (runner, server) makes. Keywords a policy may
    not take (state, tcp_pose, answer, return_internals) are passed only when they carry something."""
    extra: dict[str, Any] = {}
    if inputs.answer is not None:
        extra["answer"] = inputs.answer
    if inputs.state is not None:
        extra["state"] = inputs.state
    if inputs.tcp_pose is not None and reads_tcp(policy):
        extra["tcp_pose"] = inputs.tcp_pose
    if return_internals:
        extra["return_internals"] = True
    return policy.act(
        inputs.images,
        inputs.instruction,
        num_ddim_steps=num_ddim_steps,
        cfg_scale=cfg_scale,
        seed=seed,
        **extra,
    )
