"""Environments: the built-in pybullet tabletop simulator and the SimplerEnv adapter.

    from workbench.sim import make, list_tasks
    env = make("tabletop_put_on", width=224, height=224)
    obs, info = env.reset(seed=0)

Task names starting with "tabletop_" are the built-in simulator's; any other name (e.g.
"widowx_carrot_on_plate") goes to SimplerEnv through workbench.sim.simpler, out of process.
"""

from __future__ import annotations

from workbench.sim import catalog, instructions
from workbench.sim.base import Env, to_observation
from workbench.sim.tasks import TASKS


def list_tasks() -> list[str]:
    """The built-in simulator's tasks (SimplerEnv's own names also work with make())."""
    return sorted(TASKS)


def make(task_name: str, **kw) -> Env:
    """An environment for `task_name`. Built-in tasks take SimConfig / CameraConfig fields as keywords
    (e.g. width=224, height=224, render=False, renderer="egl"); SimplerEnv tasks take SimplerEnv's
    (python=..., see workbench.sim.simpler.SimplerEnvAdapter)."""
    if task_name in TASKS:
        from workbench.sim.tabletop import TabletopEnv, config_from_kwargs

        return TabletopEnv(task_name, config_from_kwargs(**kw))
    if task_name.startswith("tabletop_"):
        raise KeyError(f"unknown built-in task {task_name!r}; available: {list_tasks()}")
    from workbench.sim.simpler import SimplerEnvAdapter

    return SimplerEnvAdapter(task_name, **kw)


__all__ = ["Env", "catalog", "instructions", "list_tasks", "make", "to_observation"]
