"""What Load is given: the source a tab steps through and the sampling settings of its policies.

Both are checked when made (a bad seed, DDIM count or CFG scale raises AppError naming the field), so
a `SourceSpec` or `PolicySettings` that exists is one Load can use. The server's `make_source` turns a
`SourceSpec` into a runner Source (panels/state/core.py); `reset_options` are what a Reset of the
built-in sim passes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from panels.state.config import AppError, check_seed

# checkpoint text ("" = the demo one) -> (policy, display name, warnings): the server's checkpoint cache
PolicyLoader = Callable[[str], tuple[Any, str, list[str]]]
MODES = ("shared", "independent")  # A/B modes (panels/state/tab.py)


@dataclass
class SourceSpec:
    """What the tab steps through."""

    kind: str = "sim"  # "sim" | "episode" (a LeRobot episode or a saved session) | "simpler"
    task: str = ""  # built-in task name ("" = the first one), or the SimplerEnv task for "simpler"
    seed: int = 0
    object: str = ""  # the object to move ("" = the task's default); a catalog name or a custom one
    split: str = "seen"  # which catalog split the object comes from
    instruction: str = ""  # "" = the task's own instruction
    path: str = ""  # recorded episode or saved session (inside the allowed data folders)
    # How the source's joints become what the checkpoint reads (workbench.compat.MAPPINGS): the user's
    # choice ("" = the one that fits, picked at Load); the mapping Load used is kept for the saved session.
    state_mapping: str = ""
    state_mapping_used: str = ""

    def __post_init__(self) -> None:
        self.seed = check_seed(self.seed)


@dataclass
class PolicySettings:
    num_ddim_steps: int = 10
    cfg_scale: float = 1.5
    ensemble_horizon: int = 7
    ensemble_alpha: float = 0.1

    def __post_init__(self) -> None:
        if not 1 <= int(self.num_ddim_steps) <= 100:
            raise AppError(f"DDIM steps must be in 1..100, got {self.num_ddim_steps}.")
        if not 0.0 <= float(self.cfg_scale) <= 10.0:
            raise AppError(f"CFG scale must be in 0..10, got {self.cfg_scale}.")
        if not 1 <= int(self.ensemble_horizon) <= 32:
            raise AppError(f"Ensemble horizon must be in 1..32, got {self.ensemble_horizon}.")
        if not 0.0 <= float(self.ensemble_alpha) <= 10.0:
            raise AppError(f"Ensemble alpha must be in 0..10, got {self.ensemble_alpha}.")


def reset_options(spec: SourceSpec) -> dict[str, str]:
    """Reset options of the built-in sim (object split, the object to move, instruction); {} for the others."""
    if spec.kind != "sim":
        return {}
    options = {"split": spec.split}
    if spec.object:
        options["object"] = spec.object
    if spec.instruction:
        options["instruction"] = spec.instruction
    return options
