"""The runner's sources, all in one place: the simulator (SimSource) and recordings (EpisodeSource).

SimSource wraps any env with SimplerEnv's interface (the built-in simulator, the SimplerEnv adapter).
EpisodeSource steps through a recorded LeRobot episode or a saved session whatever the policy says
(no physics), and reports the recorded action at each frame, so the runner shows predicted against
recorded actions. The future of a recording cannot change, so it cannot branch (can_branch = False).
Both meet the runner at workbench.protocols.Source; this module never imports the runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from workbench.episodes.lerobot import LeRobotDataset
from workbench.protocols import BranchError, Transition
from workbench.records import Observation
from workbench.sessions import Session, load_session
from workbench.sim import make
from workbench.sim.base import GRIPPER_ABSOLUTE, to_observation


class EpisodeSource:
    can_branch = False

    def __init__(
        self,
        observations: list[Observation],
        actions: list[np.ndarray | None],
        *,
        name: str = "recording",
        gripper_convention: str = GRIPPER_ABSOLUTE,
        state_names: tuple[str, ...] = (),
        action_names: tuple[str, ...] = (),
    ) -> None:
        if not observations:
            raise ValueError(f"recorded episode {name!r} has no frames")
        if len(actions) != len(observations):
            raise ValueError(f"{name!r}: {len(observations)} frames but {len(actions)} actions")
        self.observations, self.actions = observations, actions
        self.name, self.gripper_convention = name, gripper_convention
        self.state_names, self.action_names = state_names, action_names  # per dimension; () unnamed
        self.index = -1

    # -- constructors -----------------------------------------------------------------------------

    @classmethod
    def from_lerobot(cls, root: str | Path, episode: int = 0) -> EpisodeSource:
        """Episode `episode` of a LeRobot dataset (a folder, or a repo id in the local cache)."""
        ep = LeRobotDataset(root).episode(episode)
        obs = [ep.observation(i) for i in range(len(ep))]
        acts = [np.asarray(f.action, dtype=np.float64) for f in ep.frames]
        return cls(
            obs,
            acts,
            name=f"{Path(root).name}#{episode}",
            state_names=ep.state_names,
            action_names=ep.action_names,
        )

    @classmethod
    def from_session(cls, session, branch: str = "main") -> EpisodeSource:
        """A saved session (path or workbench.sessions.Session): its observations, and the actions it executed."""
        s = session if isinstance(session, Session) else load_session(session)
        records = s.branch(branch)
        if not records:
            raise ValueError(f"session {s.path} has no steps on branch {branch!r}")
        acts = [None if r.executed_action is None else np.asarray(r.executed_action) for r in records]
        return cls([r.observation for r in records], acts, name=f"session:{s.path.name}/{branch}")

    # -- the Source protocol ----------------------------------------------------------------------

    def reset(self, seed: int | None = None, options: dict | None = None) -> Observation:
        self.index = 0
        return self.observations[0]

    def step(self, action: np.ndarray) -> Transition:
        if self.index < 0:
            raise RuntimeError("call reset() before step()")
        if self.index + 1 >= len(self.observations):
            raise RuntimeError(
                f"recorded episode {self.name!r} has ended after {len(self.observations)} frames"
            )
        recorded = self.actions[self.index]
        info: dict = {"frame_index": self.index + 1}
        if recorded is not None and action is not None:
            info["action_error"] = float(np.linalg.norm(np.asarray(action)[:3] - recorded[:3]))
        self.index += 1
        last = self.index == len(self.observations) - 1
        return Transition(self.observations[self.index], truncated=last, info=info)

    def recorded_action(self) -> np.ndarray | None:
        return self.actions[self.index] if self.index >= 0 else None

    def snapshot(self) -> int:
        return self.index

    def restore(self, state: int) -> None:
        raise BranchError(f"{self.name!r} is a recording: its future cannot change, so it cannot branch")

    def fork(self) -> EpisodeSource:
        return EpisodeSource(
            self.observations,
            self.actions,
            name=self.name,
            gripper_convention=self.gripper_convention,
            state_names=self.state_names,
            action_names=self.action_names,
        )

    def close(self) -> None:
        pass


# -- the simulator as a source ----------------------------------------------------------------------


class SimSource:
    """A SimplerEnv-interface env (the built-in simulator or the SimplerEnv adapter) as a Source.

    `factory` makes a fresh env of the same task: needed for independent mode (one copy per slot).
    """

    def __init__(self, env: Any, factory: Any = None) -> None:
        self.env, self.factory = env, factory
        self.name = str(getattr(env, "task_name", type(env).__name__))
        self.gripper_convention = str(getattr(env, "gripper_convention", GRIPPER_ABSOLUTE))
        self.can_branch = callable(getattr(env, "snapshot", None)) and callable(getattr(env, "restore", None))
        self.reset_info: dict = {}  # what the env's last reset() said (the runner puts it in step 0's info)

    @classmethod
    def from_task(cls, task: str, **kw: Any) -> SimSource:
        return cls(make(task, **kw), lambda: make(task, **kw))

    def reset(self, seed: int | None = None, options: dict | None = None) -> Observation:
        obs, self.reset_info = self.env.reset(seed=seed, options=options)
        return to_observation(self.env, obs)

    def step(self, action: np.ndarray) -> Transition:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return Transition(
            to_observation(self.env, obs), float(reward), bool(terminated), bool(truncated), dict(info)
        )

    def recorded_action(self) -> np.ndarray | None:
        return None

    def snapshot(self) -> Any:
        return self.env.snapshot()

    def restore(self, state: Any) -> None:
        self.env.restore(state)

    def fork(self) -> SimSource:
        if self.factory is None:
            raise ValueError(
                "independent mode needs a copy of the env: build the source with SimSource.from_task(...)"
            )
        return SimSource(self.factory(), self.factory)

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if close is not None:
            close()
