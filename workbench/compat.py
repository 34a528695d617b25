"""Does a checkpoint fit a source? What it reads against what the source gives, said in words.

    needs = checkpoint_needs(policy)              # from the checkpoint's config and statistics
    gives = source_gives(source)                  # from the source, before any reset
    report = check(needs, gives, mapping=None)    # findings, and the state mapping the runner applies
    print(report.text())                          # what differs, what will and what will not work

Invariants:
- The spatial answer always works: any image is resized to the checkpoint's square frame.
- Actions need a robot state the checkpoint can read: the source's own when its size fits ("as_is"), or a
  state mapping the user names (MAPPINGS). Without one, `report.actions_ok` is False and
  `workbench.runner.Runner` refuses to start with `report.text()`: never a traceback at reset or step.
  `check(..., auto=True)` (the app) picks one instead and says so as a warning.
- A checkpoint that reads no state needs no mapping ("none"); what the source gives is ignored.
- A mapping fills the joint values only; a checkpoint that also reads the TCP or its answer's points
  gets those from the observation and its own answer, as always.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.controller import GRIPPER_ABSOLUTE, GRIPPER_RELATIVE
from workbench.policy.configuration import TCP_POSITION

MAPPINGS: dict[str, str] = {
    "as_is": "the source's joint values as they are (their number matches)",
    "by_name": "the joints that both name alike, in the checkpoint's order; the others at the middle of "
    "the checkpoint's training range",
    "neutral": "no state from the source: every value at the middle of the checkpoint's training range "
    "(a constant state, so actions are the checkpoint's guess without proprioception)",
    "none": "no state at all (for checkpoints trained without one)",
}

# Datasets the workbench knows by their statistics key: the robot, its qpos names, rate and gripper.
KNOWN_DATASETS: dict[str, dict[str, Any]] = {
    "tabletop_panda": {
        "robot": "the built-in Panda",
        "state_names": (
            *(f"panda_joint{i}" for i in range(1, 8)),
            "panda_finger_joint1",
            "panda_finger_joint2",
        ),
        "control_hz": 5.0,
        "gripper": GRIPPER_ABSOLUTE,
        "views": 1,
    },
    "bridge_orig": {"robot": "WidowX (Bridge)", "control_hz": 5.0, "gripper": GRIPPER_ABSOLUTE},
    "bridge_dataset": {"robot": "WidowX (Bridge)", "control_hz": 5.0, "gripper": GRIPPER_ABSOLUTE},
    "fractal20220817_data": {"robot": "Google Robot (RT-1)", "control_hz": 3.0, "gripper": GRIPPER_RELATIVE},
}

GRIPPER_WORDS = {
    GRIPPER_ABSOLUTE: "absolute (+1 open, -1 close)",
    GRIPPER_RELATIVE: "relative (+1 closes, -1 opens)",
}


class IncompatibleSource(ValueError):
    """The checkpoint cannot act on this source as configured; the message is the compatibility report."""


@dataclass(frozen=True)
class CheckpointNeeds:
    """What a checkpoint reads. None: the checkpoint does not say."""

    name: str
    state_dim: int  # joint values its action expert reads (0: none); the TCP and answer points excluded
    state_names: tuple[str, ...] | None = None
    reads_tcp: bool = False
    answer_points: bool = False
    image_size: int | None = None  # its square frame
    views: int | None = None
    rotation: str = "axis_angle"
    gripper: str | None = None  # the convention of its training data
    control_hz: float | None = None
    dataset: str | None = None  # the statistics key
    robot: str | None = None
    neutral_state: np.ndarray | None = field(default=None, repr=False)  # [state_dim], normalises to 0


@dataclass(frozen=True)
class SourceGives:
    """What a source gives, known before its first reset. None: the source does not say."""

    name: str
    state_dim: int | None = None
    state_names: tuple[str, ...] | None = None
    cameras: tuple[str, ...] | None = None
    image_size: tuple[int, int] | None = None  # (width, height) of the main camera
    gripper: str | None = None
    control_hz: float | None = None
    tcp: bool = True
    base_turn_deg: float | None = None  # the base's turn about z against the world


@dataclass(frozen=True)
class StateMapping:
    """How the source's joint values become the checkpoint's: value i = state[index[i]], or fill[i]
    where index[i] is -1. name "none": the checkpoint gets no state (apply returns None)."""

    name: str
    description: str
    index: tuple[int, ...] = ()
    fill: np.ndarray | None = field(default=None, repr=False)

    def apply(self, state: np.ndarray | None) -> np.ndarray | None:
        if self.name == "none":
            return None
        if self.name == "as_is":
            return state
        out = np.array(self.fill, dtype=np.float64)  # [state_dim]
        if state is not None:
            s = np.asarray(state, dtype=np.float64).reshape(-1)
            for i, j in enumerate(self.index):
                if 0 <= j < s.size:
                    out[i] = s[j]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "index": list(self.index)}


@dataclass(frozen=True)
class Finding:
    level: str  # "ok" | "warning" | "error"
    topic: str  # "spatial" | "state" | "tcp" | "cameras" | "gripper" | "rate" | "rotation" | "base"
    text: str


@dataclass
class Compatibility:
    checkpoint: str
    source: str
    findings: list[Finding]
    mapping: StateMapping | None  # None when actions cannot run
    choices: tuple[str, ...] = ()  # the mappings that would work here

    @property
    def actions_ok(self) -> bool:
        return self.mapping is not None and not any(f.level == "error" for f in self.findings)

    @property
    def warnings(self) -> list[str]:
        return [f.text for f in self.findings if f.level == "warning"]

    @property
    def verdict(self) -> str:
        """What will and will not work, in one sentence."""
        return f"{self.checkpoint} on {self.source}: " + (
            f"the spatial answer works; actions run with state mapping {self.mapping.name!r}."
            if self.actions_ok
            else "only the spatial answer works; actions cannot run as configured."
        )

    def text(self) -> str:
        mark = {"ok": "ok", "warning": "warning", "error": "cannot"}
        return "\n".join([self.verdict, *(f"- {mark[f.level]}: {f.text}" for f in self.findings)])

    def summary(self) -> str:
        """One line for a status bar: the verdict, and the mapping or the choices."""
        if self.actions_ok:
            extra = (
                "" if self.mapping.name in ("as_is", "none") else f" (state mapping {self.mapping.name!r})"
            )
            warn = f"; {len(self.warnings)} warning(s)" if self.warnings else ""
            return f"{self.checkpoint} fits {self.source}{extra}{warn}."
        return (
            f"{self.checkpoint} cannot act on {self.source} as configured: choose a state mapping "
            f"({', '.join(self.choices) or 'none fits'})."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "source": self.source,
            "actions_ok": self.actions_ok,
            "mapping": None if self.mapping is None else self.mapping.to_dict(),
            "findings": [vars(f) for f in self.findings],
        }


# -- what each side declares --------------------------------------------------------------------------


def checkpoint_needs(policy: Any, rotation: str = "axis_angle") -> CheckpointNeeds | None:
    """What an ST4VLA policy reads, from its config and statistics; None for a policy without a config
    (a remote policy, a test double): it declares nothing, so nothing is checked."""
    config = getattr(policy, "config", None)
    if config is None or not hasattr(config, "action"):
        return None
    key = getattr(policy, "unnorm_key", None)
    block = (getattr(policy, "statistics", None) or {}).get(key, {})
    known = KNOWN_DATASETS.get(str(key), {})
    notes = dict(getattr(config, "notes", {}) or {})
    reads_tcp = bool(getattr(config, "state_tcp", False))
    robot_dim = int(getattr(config, "robot_state_dim", config.action.state_dim))
    state_dim = max(robot_dim - (TCP_POSITION if reads_tcp else 0), 0)
    state = block.get("state") or {}
    names = state.get("names") or notes.get("state_names") or known.get("state_names")
    names = tuple(names) if names is not None and len(names) == state_dim else None
    neutral = None
    if state_dim and "q01" in state and "q99" in state:
        q01, q99 = (np.asarray(state[k], dtype=np.float64).reshape(-1)[:state_dim] for k in ("q01", "q99"))
        neutral = (q01 + q99) / 2.0
    return CheckpointNeeds(
        name=str(getattr(policy, "name", "checkpoint")),
        state_dim=state_dim,
        state_names=names,
        reads_tcp=reads_tcp,
        answer_points=bool(getattr(config, "answer_points", False)),
        image_size=getattr(config, "image_size", None),
        views=notes.get("views", known.get("views")),
        rotation=rotation,
        gripper=notes.get("gripper", known.get("gripper")),
        control_hz=notes.get("control_hz", known.get("control_hz")),
        dataset=None if key is None else str(key),
        robot=notes.get("robot", known.get("robot")),
        neutral_state=neutral,
    )


def source_gives(source: Any) -> SourceGives:
    """What a runner Source (SimSource over an env, EpisodeSource) gives, without resetting it."""
    env = getattr(source, "env", None)
    name = str(getattr(source, "name", type(source).__name__))
    if env is None:  # a recording: its first frame says it all
        frames = getattr(source, "observations", None) or []
        first = frames[0] if frames else None
        if first is None:
            return SourceGives(name, gripper=getattr(source, "gripper_convention", None))
        image = first.images[first.main_camera]
        return SourceGives(
            name,
            state_dim=0 if first.state is None else int(np.asarray(first.state).size),  # 0: recorded none
            cameras=tuple(first.images),
            image_size=(int(image.shape[1]), int(image.shape[0])),
            gripper=getattr(source, "gripper_convention", None),
            tcp=first.tcp_pose is not None,
            base_turn_deg=_turn_deg(first.base_pose),
        )
    names = getattr(env, "state_names", None)
    names = tuple(names) if names else None
    dim = getattr(env, "state_dim", None)
    return SourceGives(
        name,
        state_dim=len(names) if names else (None if dim is None else int(dim)),
        state_names=names,
        cameras=_env_cameras(env),
        image_size=_env_image_size(env),
        gripper=getattr(env, "gripper_convention", None),
        control_hz=getattr(env, "control_hz", None),
        tcp=True,
        base_turn_deg=_env_base_turn(env),
    )


def _env_cameras(env: Any) -> tuple[str, ...] | None:
    cam = getattr(env, "main_camera", None)  # the SimplerEnv adapter
    if cam:
        return (str(cam),)
    rig = getattr(env, "rig", None)  # the built-in simulator
    return (str(rig.cfg.name),) if rig is not None else None


def _env_image_size(env: Any) -> tuple[int, int] | None:
    size = getattr(env, "image_size", None)
    if size:
        return (int(size[0]), int(size[1]))
    cam = getattr(getattr(env, "config", None), "camera", None)
    if cam is not None and hasattr(cam, "width"):
        return (int(cam.width), int(cam.height))
    return None


def _env_base_turn(env: Any) -> float | None:
    pose = getattr(env, "base_pose", None)
    if pose is not None and not callable(pose):
        return _turn_deg(pose)
    cfg = getattr(env, "config", None)
    return float(getattr(cfg, "base_yaw_deg", 0.0)) if cfg is not None else None


def _turn_deg(base_pose: np.ndarray | None) -> float | None:
    if base_pose is None:
        return None
    from workbench.controller import base_rotation

    r = base_rotation(base_pose)
    return float(np.degrees(np.arctan2(r[1, 0], r[0, 0])))


# -- the comparison -----------------------------------------------------------------------------------


def check(
    needs: CheckpointNeeds | None, gives: SourceGives, mapping: str | None = None, *, auto: bool = False
) -> Compatibility:
    """Compare; `mapping` names the state mapping (MAPPINGS) to use, None = only if the state fits.
    auto: with no mapping named and a state that does not fit, pick the best one and warn."""
    if mapping is not None and mapping not in MAPPINGS:
        raise ValueError(f"unknown state mapping {mapping!r}: choose one of {', '.join(MAPPINGS)}")
    if needs is None:
        f = Finding("ok", "state", "the policy declares nothing it reads (no checkpoint config): not checked")
        return Compatibility("policy", gives.name, [f], _as_is())
    findings = [_spatial(needs, gives)]
    state_findings, chosen, choices = _state(needs, gives, mapping, auto)
    findings += state_findings
    findings += _tcp(needs, gives) + _cameras(needs, gives) + _gripper(needs, gives)
    findings += _rate(needs, gives) + _rotation(needs) + _base(gives)
    return Compatibility(needs.name, gives.name, findings, chosen, choices)


def _as_is() -> StateMapping:
    return StateMapping("as_is", MAPPINGS["as_is"])


def _spatial(needs: CheckpointNeeds, gives: SourceGives) -> Finding:
    s = needs.image_size
    if gives.image_size is None or s is None:
        return Finding(
            "ok", "spatial", "the spatial answer works: images are resized to the checkpoint's frame"
        )
    w, h = gives.image_size
    aspect = "" if w == h else f" (the {w}:{h} aspect is squeezed; answers are mapped back to {w}x{h})"
    return Finding(
        "ok",
        "spatial",
        f"the spatial answer works: the {w}x{h} image is resized to the checkpoint's {s}x{s}{aspect}",
    )


def _names(names: tuple[str, ...] | None, limit: int = 11) -> str:
    if not names:
        return "names not declared"
    shown = ", ".join(names[:limit])
    return shown + (", ..." if len(names) > limit else "")


def _state(
    needs: CheckpointNeeds, gives: SourceGives, mapping: str | None, auto: bool
) -> tuple[list[Finding], StateMapping | None, tuple[str, ...]]:
    n, m = needs.state_dim, gives.state_dim
    if n == 0:
        text = "the checkpoint reads no robot state: actions need nothing from the source's joints"
        return [Finding("ok", "state", text)], StateMapping("none", MAPPINGS["none"]), ("none",)
    reads = f"{n} joint values ({_names(needs.state_names)}{_of(needs)})"
    if m is None and mapping is None:  # a source that does not declare its state (a custom env)
        text = (
            f"the checkpoint reads {reads}; {gives.name} does not say what state it gives before it runs: "
            "its observations' state is passed as it is (name a state mapping if it does not fit)"
        )
        return [Finding("warning", "state", text)], _as_is(), ("as_is", "neutral")
    common = _common(needs, gives)
    choices = tuple(
        c for c, fits in (("as_is", m == n), ("by_name", bool(common)), ("neutral", True)) if fits
    )
    if mapping is None and m == n:
        found = [Finding("ok", "state", f"the checkpoint reads {reads}; {gives.name} gives {m}: as they are")]
        if needs.state_names and gives.state_names and needs.state_names != gives.state_names:
            found.append(
                Finding(
                    "warning",
                    "state",
                    f"the numbers match but the joints differ: the source's are {_names(gives.state_names)}",
                )
            )
        return found, _as_is(), choices
    gives_words = "no state" if not m else f"{m} ({_names(gives.state_names)})"
    if mapping is None and auto:
        mapping = "by_name" if common else "neutral"
        others = [c for c in choices if c != mapping]
        picked = "picked automatically; " + (
            f"the others: {', '.join(others)}" if others else "the only one here"
        )
    else:
        picked = "chosen"
    if mapping is None:
        text = (
            f"the checkpoint reads {reads}; {gives.name} gives {gives_words}. Actions need a state mapping: "
            f"choose one of {', '.join(choices)} (" + "; ".join(f"{c}: {MAPPINGS[c]}" for c in choices) + ")"
        )
        return [Finding("error", "state", text)], None, choices
    built, why_not = _build(mapping, needs, gives, common)
    if built is None:
        return (
            [Finding("error", "state", f"state mapping {mapping!r} cannot work here: {why_not}")],
            None,
            choices,
        )
    level = "ok" if mapping == "as_is" else "warning"
    text = f"the checkpoint reads {reads}; {gives.name} gives {gives_words}: state mapping {mapping!r} ({picked}): {built.description}"
    return [Finding(level, "state", text)], built, choices


def _of(needs: CheckpointNeeds) -> str:
    return f", of {needs.robot}" if needs.robot else ""


def _common(needs: CheckpointNeeds, gives: SourceGives) -> list[str]:
    if not needs.state_names or not gives.state_names:
        return []
    return [n for n in needs.state_names if n in gives.state_names]


def _build(
    mapping: str, needs: CheckpointNeeds, gives: SourceGives, common: list[str]
) -> tuple[StateMapping | None, str]:
    n = needs.state_dim
    fill = needs.neutral_state if needs.neutral_state is not None else np.zeros(n)
    if mapping == "none":
        return None, f"the checkpoint reads {n} joint values; 'none' is for checkpoints that read no state"
    if mapping == "as_is":
        if gives.state_dim != n:
            return None, f"the source gives {gives.state_dim} values, the checkpoint reads {n}"
        return _as_is(), ""
    if mapping == "neutral":
        where = "" if needs.neutral_state is not None else " (no state statistics: zeros)"
        return StateMapping("neutral", MAPPINGS["neutral"] + where, (-1,) * n, fill), ""
    if not needs.state_names or not gives.state_names:
        side = "the checkpoint" if not needs.state_names else "the source"
        return None, f"{side} does not name its joints"
    if not common:
        return None, (
            f"no joint names in common ({_names(needs.state_names)} against {_names(gives.state_names)}); "
            "choose 'neutral'"
        )
    index = tuple(gives.state_names.index(c) if c in gives.state_names else -1 for c in needs.state_names)
    desc = f"{len(common)} of {n} joints by name ({', '.join(common)}); " + MAPPINGS["by_name"].split("; ")[1]
    return StateMapping("by_name", desc, index, fill), ""


def _tcp(needs: CheckpointNeeds, gives: SourceGives) -> list[Finding]:
    if not needs.reads_tcp:
        return []
    if not gives.tcp:
        return [
            Finding("error", "tcp", "the checkpoint reads the TCP position, which the source does not give")
        ]
    if gives.base_turn_deg is not None and abs(gives.base_turn_deg) > 1.0:
        return [
            Finding(
                "warning",
                "tcp",
                f"the checkpoint reads the TCP position; the source gives it in the world, and its base is turned "
                f"{gives.base_turn_deg:.0f} degrees against the world, so the numbers differ from a base frame",
            )
        ]
    return [Finding("ok", "tcp", "the checkpoint reads the TCP position: the source gives it")]


def _cameras(needs: CheckpointNeeds, gives: SourceGives) -> list[Finding]:
    if gives.cameras is None:
        return []
    cams = ", ".join(gives.cameras)
    if needs.views is not None and needs.views != len(gives.cameras):
        return [
            Finding(
                "warning",
                "cameras",
                f"the checkpoint was trained on {needs.views} view(s); the source gives {len(gives.cameras)} ({cams}), "
                "all of which it reads",
            )
        ]
    return [Finding("ok", "cameras", f"it reads the source's camera(s): {cams}")]


def _gripper(needs: CheckpointNeeds, gives: SourceGives) -> list[Finding]:
    if gives.gripper is None:
        return []
    want = GRIPPER_WORDS.get(gives.gripper, gives.gripper)
    if needs.gripper is None or needs.gripper == gives.gripper:
        return [Finding("ok", "gripper", f"the source's gripper is {want}: the controller sends that")]
    had = GRIPPER_WORDS.get(needs.gripper, needs.gripper)
    return [
        Finding(
            "warning",
            "gripper",
            f"trained with a gripper {had}; the source's is {want}: the controller converts the model's "
            "open/close output (a relative command is held for 10 steps, as upstream's Google Robot client)",
        )
    ]


def _rate(needs: CheckpointNeeds, gives: SourceGives) -> list[Finding]:
    if needs.control_hz is None or gives.control_hz is None:
        return []
    a, b = float(needs.control_hz), float(gives.control_hz)
    if abs(a - b) < 1e-6:
        return [Finding("ok", "rate", f"both step at {b:g} Hz")]
    return [
        Finding(
            "warning",
            "rate",
            f"trained at {a:g} Hz; the source steps at {b:g} Hz: each action lasts {1 / b:.2f} s instead of "
            f"{1 / a:.2f} s, so motions differ from training",
        )
    ]


def _rotation(needs: CheckpointNeeds) -> list[Finding]:
    if needs.rotation == "euler":
        return [
            Finding(
                "ok", "rotation", "rotations are roll/pitch/yaw: converted to the axis-angle the source wants"
            )
        ]
    return [Finding("ok", "rotation", "rotations are axis-angle, as the source wants")]


def _base(gives: SourceGives) -> list[Finding]:
    turn = gives.base_turn_deg
    if turn is None or abs(turn) <= 1.0:
        return []
    return [
        Finding(
            "ok",
            "base",
            f"the robot base is turned {turn:.0f} degrees about z against the world: the drawn rollout turns "
            "the actions with it",
        )
    ]


# -- for the app ---------------------------------------------------------------------------------------


def fit_slots(slots: list[Any], source: Any, choice: str | None = None) -> list[str]:
    """Check each runner PolicySlot against `source` and set its state_mapping: `choice` when the user
    named one, else the one that fits (picked automatically, with a warning). Returns what the page
    should show: each slot's verdict and its warnings (nothing for a slot that fits as it is).
    Raises IncompatibleSource (the report) when the named mapping cannot work."""
    gives = source_gives(source)
    notes = []
    for slot in slots:
        report = check(checkpoint_needs(slot.policy, slot.rotation), gives, choice, auto=True)
        if not report.actions_ok:
            raise IncompatibleSource(report.text())
        slot.state_mapping = report.mapping.name
        if report.warnings:
            notes.append(" ".join([report.verdict, *(f"Warning: {w}." for w in report.warnings)]))
    return notes
