"""The SimplerEnv adapter: SimplerEnv in its own interpreter, driven over a pipe, behind our Env protocol.

SimplerEnv pins numpy<2, gymnasium<1 and sapien 2.2.2, and renders with Vulkan, so it cannot live in
the workbench's environment. Point the adapter at SimplerEnv's interpreter:

    export WORKBENCH_SIMPLER_PYTHON=/opt/simpler/.venv/bin/python
    env = make("widowx_carrot_on_plate")          # or SimplerEnvAdapter(task, python=...)

Before starting the server it diagnoses that interpreter (simpler_server.py --diagnose) and raises
SimplerUnavailable naming the one thing that fails, with its fix (`SimplerUnavailable.problem`, one
of PROBLEMS): the interpreter is missing or does not run, simpler_env is not importable there, the
Vulkan loader (libvulkan.so.1) is not found, no Vulkan device exists, or a frame does not render.
How to build SimplerEnv and a wrapper interpreter on a machine without a GPU: docs/simplerenv.md.

What the task gives is known at construction (before any reset), for the compatibility report
(workbench.compat): `state_names` (obs["agent"]["qpos"]), `image_size` (width, height),
`main_camera`, `control_hz`, `gripper_convention`; `base_pose` follows the last observation.
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


PROBLEMS = ("interpreter", "simpler_env", "vulkan_loader", "vulkan_device", "render")
BUILD_DOC = "docs/simplerenv.md"


class SimplerUnavailable(RuntimeError):
    """SimplerEnv cannot run with this configuration; the message says what to fix, `problem` which
    stage failed (one of PROBLEMS)."""

    def __init__(self, message: str, problem: str = "") -> None:
        super().__init__(message)
        self.problem = problem


def resolve_python(python: str | None) -> str:
    python = python or os.environ.get(PYTHON_ENV_VAR)
    if not python:
        raise SimplerUnavailable(
            f"no SimplerEnv interpreter configured: set {PYTHON_ENV_VAR}=/path/to/simpler-venv/bin/python "
            "(SimplerEnv needs its own environment: numpy<2, gymnasium<1, sapien==2.2.2), or pass python=...",
            "interpreter",
        )
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise SimplerUnavailable(
            f"SimplerEnv interpreter {python!r} is missing or not an executable file; check {PYTHON_ENV_VAR} "
            f"(how to build one: {BUILD_DOC})",
            "interpreter",
        )
    return python


# (interpreter, extra environment) pairs diagnosed clean in this process: an adapter made after the
# app's check does not pay for a second one (10-30 s on a CPU). Failures are never kept: fix and retry.
_DIAGNOSED_OK: set[tuple[str, tuple[tuple[str, str], ...]]] = set()


def _diagnosis_key(python: str, env_vars: dict[str, str] | None) -> tuple[str, tuple[tuple[str, str], ...]]:
    return python, tuple(sorted((env_vars or {}).items()))


def diagnose(python: str | None = None, env_vars: dict[str, str] | None = None, timeout: float = 120) -> dict:
    """Ask SimplerEnv's interpreter, stage by stage, whether SimplerEnv can run there. Returns the
    server's report plus "problem": "" when all is well, else the first stage that fails (PROBLEMS).
    Raises SimplerUnavailable(problem="interpreter") when the interpreter is missing or does not run."""
    python = resolve_python(python)
    try:
        proc = subprocess.run(
            [python, str(SERVER), "--diagnose"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env_vars or {})},
        )
    except OSError as e:  # e.g. a script without a valid #! line
        raise SimplerUnavailable(
            f"SimplerEnv interpreter {python!r} cannot be started: {e}; check {PYTHON_ENV_VAR}", "interpreter"
        ) from e
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 and lines:  # died in a stage: the last line names it
        report = json.loads(lines[-1])
        report["exit_code"] = proc.returncode
        report["problem"] = first_problem(report) or "interpreter"
        return report
    if proc.returncode != 0 or not lines:
        raise SimplerUnavailable(
            f"SimplerEnv interpreter {python!r} does not run Python scripts (exit {proc.returncode}): "
            f"{proc.stderr.strip()[-2000:] or 'no output'}. Point {PYTHON_ENV_VAR} at SimplerEnv's Python "
            f"(or the wrapper of {BUILD_DOC})",
            "interpreter",
        )
    report = json.loads(lines[-1])
    report["problem"] = first_problem(report)
    if not report["problem"]:
        _DIAGNOSED_OK.add(_diagnosis_key(python, env_vars))
    return report


def _mentions_vulkan_loader(*errors: str) -> bool:
    return any("libvulkan" in (e or "") for e in errors)


def first_problem(report: dict) -> str:
    """The first stage of a diagnosis report that fails ("" when none does): the loader before the package,
    since a missing libvulkan.so.1 also makes simpler_env fail to import."""
    if _mentions_vulkan_loader(report.get("sapien_error", ""), report.get("simpler_error", "")):
        return "vulkan_loader"
    if not report.get("simpler_env"):
        return "simpler_env"
    if report.get("sapien") is False:
        return "simpler_env"  # sapien is one of SimplerEnv's dependencies
    if report.get("vulkan") is False:
        return "vulkan_loader" if _mentions_vulkan_loader(report.get("vulkan_error", "")) else "vulkan_device"
    if report.get("render") is False:
        return "render"
    return ""


def check_available(report: dict, python: str) -> None:
    """Raise SimplerUnavailable with the fix for the first failing stage of a diagnosis report."""
    problem = report.get("problem", first_problem(report))
    if not problem:
        return
    messages = {
        "simpler_env": (
            f"simpler_env is not importable in {python}: {report.get('simpler_error') or report.get('sapien_error')}. "
            "Install SimplerEnv there (git clone --recurse-submodules https://github.com/simpler-env/SimplerEnv; "
            f"pip install -e ManiSkill2_real2sim; pip install -e .; see {BUILD_DOC})"
        ),
        "vulkan_loader": (
            f"the Vulkan loader libvulkan.so.1 is not found by {python} "
            f"({report.get('sapien_error') or report.get('simpler_error') or report.get('vulkan_error')}). "
            "Install it (Debian/Ubuntu: apt install libvulkan1) or point "
            f"{PYTHON_ENV_VAR} at a wrapper that puts it on the library path ({BUILD_DOC})"
        ),
        "vulkan_device": (
            f"SimplerEnv cannot render: no Vulkan device ({report.get('vulkan_error')}). It needs an NVIDIA "
            "driver with Vulkan, or Mesa lavapipe 26.x with VK_ICD_FILENAMES naming its ICD file "
            f"(older lavapipe fails with ErrorExtensionNotPresent; {BUILD_DOC})"
        ),
        "render": (
            f"a Vulkan device is there but rendering a frame fails ({report.get('render_error')}). The "
            "driver lacks what SAPIEN needs: Mesa older than 26 fails this way; use Mesa lavapipe 26.x or "
            f"an NVIDIA driver ({BUILD_DOC})"
        ),
    }
    raise SimplerUnavailable(messages.get(problem, f"SimplerEnv diagnosis failed: {problem}"), problem)


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
        if _diagnosis_key(self.python, env_vars) not in _DIAGNOSED_OK:
            check_available(diagnose(self.python, env_vars, timeout), self.python)
        self.gripper_convention, control_hz = _robot_defaults(task_name)
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
        self.control_hz = float(hello.get("control_hz") or control_hz)
        names = hello.get("state_names")
        self.state_names: tuple[str, ...] | None = tuple(names) if names else None
        size = hello.get("image_size")
        self.image_size: tuple[int, int] | None = (int(size[0]), int(size[1])) if size else None
        pose = hello.get("base_pose")  # then the last observation's agent/base_pose
        self.base_pose: np.ndarray | None = None if pose is None else np.asarray(pose, dtype=np.float64)
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
        self._keep_base(reply["obs"])
        return reply["obs"], reply["info"]

    def _keep_base(self, obs: dict) -> None:
        pose = obs.get("agent", {}).get("base_pose")
        self.base_pose = None if pose is None else np.asarray(pose, dtype=np.float64)

    def step(self, action) -> tuple[dict, float, bool, bool, dict]:
        a, clipped = check_action(action, self.action_low, self.action_high, strict=self.strict_actions)
        reply = self._call(cmd="step", action=a)
        self.instruction = reply["instruction"]
        self._final_subtask = reply["final_subtask"]
        info = reply["info"]
        info["action_clipped"] = clipped
        self._keep_base(reply["obs"])
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
