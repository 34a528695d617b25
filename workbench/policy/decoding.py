"""How a policy decodes its spatial answer at control time: inference settings, not weights.

Neither is upstream's (upstream decodes greedily, which is AnswerDecoding()): refine_radius > 0 writes
each number as its local expectation over that many pixels (workbench.policy.refine); votes > 1 acts
on the median answer of that many shifted copies of the frame (workbench.policy.consensus).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AnswerDecoding:
    refine_radius: int = 0  # pixels; 0: the greedy tokens as written
    votes: int = 1  # shifted frames asked; 1: the frame as it is

    def __post_init__(self) -> None:
        if self.refine_radius < 0:
            raise ValueError(f"refine_radius must be >= 0, got {self.refine_radius}")
        if self.votes < 1:
            raise ValueError(f"answer votes must be >= 1, got {self.votes}")
