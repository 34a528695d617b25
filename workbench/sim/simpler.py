"""The SimplerEnv adapter: SimplerEnv in its own interpreter, driven over a pipe, behind our Env protocol.

SimplerEnv pins numpy<2, gymnasium<1 and sapien 2.2.2, and renders with Vulkan, so it cannot live in
the workbench's environment. Point the adapter at SimplerEnv's interpreter:

    export WORKBENCH_SIMPLER_PYTHON=/opt/simpler/.venv/bin/python
    env = make("widowx_carrot_on_plate")          # or SimplerEnvAdapter(task, python=...)

Before starting the server it probes that interpreter (simpler_server.py --probe) and raises
SimplerUnavailable with what to do if simpler_env cannot be imported or no Vulkan device exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from workbench.sim.base import GRIPPER_ABSOLUTE, GRIPPER_RELATIVE, check_action
from workbench.sim.simpler_server import decode, encode

PYTHON_ENV_VAR = "WORKBENCH_SIMPLER_PYTHON"
SERVER = Path(__file__).with_name("simpler_server.py")

# Episode limits and control rates from SimplerEnv (shared/reference/simplerenv.md), used when the
# server cannot tell (its TimeLimit wrapper usually can).
_LIMITS = {
    "pick": 80,
    "move_near": 80,
    "drawer": 113,
    "place_in_closed": 200,
    "carrot": 60,
    "spoon": 60,
    "stack": 60,
    "eggplant": 120,
}


class SimplerUnavailable(RuntimeError):
    """SimplerEnv cannot run with this configuration; the message says what to fix."""


def resolve_python(python: str | None) -> str:
    python = python or os.environ.get(PYTHON_ENV_VAR)
    if not python:
        raise SimplerUnavailable(
            f"no SimplerEnv interpreter configured: set {PYTHON_ENV_VAR}=/path/to/simpler-venv/bin/python "
            "(SimplerEnv needs its own environment: numpy<2, gymnasium<1, sapien==2.2.2), or pass python=..."
        )
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise SimplerUnavailable(
            f"SimplerEnv interpreter {python!r} is not an executable file; check {PYTHON_ENV_VAR}"
        )
    return python


def probe(python: str | None = None, env_vars: dict[str, str] | None = None, timeout: float = 120) -> dict:
    """Ask SimplerEnv's interpreter whether simpler_env imports and whether Vulkan rendering works."""
    python = resolve_python(python)
    proc = subprocess.run(
        [python, str(SERVER), "--probe"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env_vars or {})},
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SimplerUnavailable(
            f"probing {python} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
        )
    return json.loads(lines[-1])


def check_available(report: dict, python: str) -> None:
    if not report["simpler_env"]:
        raise SimplerUnavailable(
            f"simpler_env is not importable in {python}: {report['simpler_error']}. Install SimplerEnv there "
            "(git clone --recurse-submodules https://github.com/simpler-env/SimplerEnv; pip install -e "
            "ManiSkill2_real2sim; pip install -e .)"
        )
    if report["vulkan"] is False:
        raise SimplerUnavailable(
            f"SimplerEnv cannot render: no Vulkan device ({report['vulkan_error']}). It needs an NVIDIA driver "
            "with Vulkan, or Mesa lavapipe 26.x (older lavapipe fails with ErrorExtensionNotPresent)."
        )


def _robot_defaults(task: str) -> tuple[str, float]:
    if task.startswith("google_robot"):
        return GRIPPER_RELATIVE, 3.0
    return GRIPPER_ABSOLUTE, 5.0


def _default_limit(task: str) -> int:
    for key, limit in _LIMITS.items():
        if key in task:
            return limit
    return 80


class SimplerEnvAdapter:
    """A SimplerEnv task behind the workbench Env protocol (observations in SimplerEnv's own layout)."""

    def __init__(
        self,
        task_name: str,
        python: str | None = None,
        images: tuple[str, ...] = ("rgb",),
        env_vars: dict[str, str] | None = None,
        strict_actions: bool = False,
        timeout: float = 300,
    ):
        self.task_name = task_name
        self.python = resolve_python(python)
        self.strict_actions = strict_actions
        self.timeout = timeout
        env = {**os.environ, **(env_vars or {})}
        check_available(probe(self.python, env_vars, timeout), self.python)
        self.gripper_convention, self.control_hz = _robot_defaults(task_name)
        # the server's stderr, quoted when it dies; lives as long as the adapter (closed in close())
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [self.python, str(SERVER), "--task", task_name, "--images", ",".join(images)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
        )
        hello = self._read()
        self.main_camera: str = hello["camera"]
        self.action_low = np.asarray(hello["action_low"], dtype=np.float64)
        self.action_high = np.asarray(hello["action_high"], dtype=np.float64)
        self.max_episode_steps = int(hello["max_episode_steps"] or _default_limit(task_name))
        self.robot_uid = hello["robot_uid"]
        self.instruction = ""
        self._final_subtask = True

    # --- transport ----------------------------------------------------------------------------

    def _read(self) -> dict:
        line = self._proc.stdout.readline()
        if not line:
            code = self._proc.wait(timeout=30)
            self._log.seek(0)
            tail = self._log.read()[-3000:]
            raise RuntimeError(f"the SimplerEnv server exited (code {code}); its log ends:\n{tail}")
        reply = decode(json.loads(line))
        if not reply.pop("ok"):
            raise RuntimeError(f"SimplerEnv ({self.task_name}) failed:\n{reply['error']}")
        return reply

    def _call(self, **request) -> dict:
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError(
                "the SimplerEnv server is not running (closed or crashed); create a new adapter"
            )
        self._proc.stdin.write(json.dumps(encode(request)) + "\n")
        self._proc.stdin.flush()
        return self._read()

    # --- the Env protocol ---------------------------------------------------------------------

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        reply = self._call(cmd="reset", seed=seed, options=options)
        self.instruction = reply["instruction"]
        self._final_subtask = True
        return reply["obs"], reply["info"]

    def step(self, action) -> tuple[dict, float, bool, bool, dict]:
        a, clipped = check_action(action, self.action_low, self.action_high, strict=self.strict_actions)
        reply = self._call(cmd="step", action=a)
        self.instruction = reply["instruction"]
        self._final_subtask = reply["final_subtask"]
        info = reply["info"]
        info["action_clipped"] = clipped
        return reply["obs"], reply["reward"], reply["terminated"], reply["truncated"], info

    def get_language_instruction(self) -> str:
        return self.instruction

    def is_final_subtask(self) -> bool:
        return self._final_subtask

    def advance_to_next_subtask(self) -> None:
        self.instruction = self._call(cmd="advance")["instruction"]

    def close(self) -> None:
        if self._proc is None:
            return
        try:
            if self._proc.poll() is None:
                self._call(cmd="close")
                self._proc.wait(timeout=30)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
        finally:
            self._proc = None
            self._log.close()

    def __del__(self):
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
