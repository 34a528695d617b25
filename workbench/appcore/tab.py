"""One browser tab's workbench: its runner, Rerun recording, edits and clicked points.

A `TabSession` lives in the tab's gr.State, so two tabs never share a runner or a recording.
Models loaded from disk are shared through the `Workbench` cache: they are read-only at inference.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.appcore.config import AppConfig, AppError, clean_instruction
from workbench.records import StepRecord
from workbench.spatial import Box, Point

BLUEPRINTS = ("one policy", "side by side", "instruction A vs B")


@dataclass
class SourceSpec:
    """What the tab steps through."""

    kind: str = "sim"  # "sim" | "episode" | "session"
    task: str = ""  # built-in task name ("" = the first one)
    seed: int = 0
    object: str = ""  # source object ("" = the task's default); a catalog name or a custom one
    split: str = "seen"  # which catalog split the object comes from
    instruction: str = ""  # "" = the task's own instruction
    path: str = ""  # recorded episode or saved session (inside the allowed data folders)


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


@dataclass
class UserPoint:
    """A point the user clicked as 'this is right', in original-image pixels, and at which step."""

    x: float
    y: float
    step: int


@dataclass
class TabSession:
    workbench: Any  # workbench.appcore.core.Workbench (kept loose to avoid an import cycle)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    runner: Any = None
    logger: Any = None
    policy_names: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)  # what Load was given, for the probe
    source: SourceSpec = field(default_factory=SourceSpec)
    settings: PolicySettings = field(default_factory=PolicySettings)
    records: list[StepRecord] = field(default_factory=list)  # what this tab has shown, in order
    user_point: UserPoint | None = None
    blueprint: str = BLUEPRINTS[0]
    notes: list[str] = field(default_factory=list)  # warnings to show once (e.g. random weights)
    edits: list[dict] = field(default_factory=list)  # instruction changes, re-asks, branches (saved)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    # -- loading ---------------------------------------------------------------------------------

    @property
    def config(self) -> AppConfig:
        return self.workbench.config

    def load(self, source: SourceSpec, checkpoints: list[str], settings: PolicySettings) -> StepRecord:
        """Build the runner for `source` with one slot per checkpoint (A, B) and reset it."""
        from workbench.runner import PolicySlot, Runner
        from workbench.viz.rerun_log import RerunLogger

        checkpoints = [c for c in checkpoints if c is not None] or [""]
        slots, names = [], []
        for i, ckpt in enumerate(checkpoints[:2]):
            policy, name, notes = self.workbench.load_policy(ckpt)
            self.notes.extend(notes)
            label = name if name not in names else f"{name} ({'AB'[i]})"
            names.append(label)
            slots.append(
                PolicySlot(
                    label, policy, num_ddim_steps=int(settings.num_ddim_steps), cfg_scale=float(settings.cfg_scale),
                    ensemble_horizon=int(settings.ensemble_horizon), ensemble_alpha=float(settings.ensemble_alpha),
                    seed=int(source.seed),
                )
            )  # fmt: skip
        env = self.workbench.make_source(source)
        self.close()
        self.logger = RerunLogger(recording_id=f"tab-{self.id}-{uuid.uuid4().hex[:6]}", stream=True)
        self.runner = Runner(env, slots, mode="shared", sinks=[self.logger])
        self.policy_names, self.source, self.settings = names, source, settings
        self.checkpoints = list(checkpoints[:2])
        self.blueprint = BLUEPRINTS[1] if len(names) > 1 else BLUEPRINTS[0]
        self.send_blueprint()
        return self.reset(source.seed)

    def _require_runner(self) -> Any:
        if self.runner is None:
            raise AppError(
                "Nothing is loaded in this tab yet: pick a checkpoint and a source, then press Load."
            )
        return self.runner

    # -- stepping --------------------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> StepRecord:
        runner = self._require_runner()
        seed = self.source.seed if seed is None else int(seed)
        options = self.workbench.reset_options(self.source)
        record = runner.reset(seed=seed, options=options)
        self.records = [record]
        self.user_point = None
        self.edits = []
        return record

    def step(self, n: int = 1) -> list[StepRecord]:
        runner = self._require_runner()
        if not 1 <= int(n) <= 1000:
            raise AppError(f"Run N takes 1..1000 steps, got {n}.")
        if runner.done:
            raise AppError("The episode has ended: press Reset, or Branch from an earlier step.")
        out = []
        for _ in range(int(n)):
            out.append(runner.step())
            if runner.done:
                break
        self.records.extend(out)
        return out

    def run(self, n: int | None = None) -> Iterator[StepRecord]:
        """Step until done, `n` steps, max_steps, or `pause()`, yielding each record (for live updates)."""
        runner = self._require_runner()
        self._stop.clear()
        limit = int(n) if n else self.config.max_steps
        for _ in range(limit):
            if runner.done or self._stop.is_set():
                return
            record = runner.step()
            self.records.append(record)
            yield record

    def pause(self) -> None:
        self._stop.set()
        pause = getattr(self.runner, "pause", None)
        if pause is not None:
            pause()

    # -- instruction -----------------------------------------------------------------------------

    def set_instruction(self, text: str, slot: str | None = None) -> list[str]:
        """Change the instruction from the next step on; returns warnings about how it was cleaned."""
        cleaned, warnings = clean_instruction(text)
        self._require_runner().set_instruction(cleaned, slot=slot)
        step = self.records[-1].step if self.records else 0
        self.edits.append({"kind": "instruction", "step": step, "instruction": cleaned, "slot": slot})
        return warnings

    def reask(self) -> StepRecord:
        """Run the spatial prompt and the action again on the current frame, without stepping."""
        record = self._require_runner().reask()
        if self.records and self.records[-1].step == record.step:
            self.records[-1] = record  # the runner replaces this step's answer too
        else:
            self.records.append(record)
        self.edits.append({"kind": "reask", "step": record.step})
        return record

    def branch(self, name: str, instruction: str | None = None) -> StepRecord:
        runner = self._require_runner()
        name = " ".join(str(name or "").split())
        if not name:
            name = f"branch-{len(runner.history)}"
        if instruction:
            instruction, _ = clean_instruction(instruction)
        current = self.records[-1].step if self.records else 0
        record = runner.branch(current, name, instruction=instruction or None)
        self.records = [r for r in self.records if r.step <= current] + [record]
        self.edits.append({"kind": "branch", "step": current, "name": name, "instruction": instruction})
        return record

    def paraphrases(self, n: int = 6) -> list[str]:
        """Other ways to say the current task, from the simulator's instruction bank."""
        record = self.last_record
        gt = record.observation.ground_truth if record is not None else None
        if gt is None or not gt.source_label or self.source.kind != "sim":
            return []
        return self.workbench.paraphrases(
            self.source.task, gt.source_label, gt.target_label, self.source.split
        )[:n]

    # -- clicks ----------------------------------------------------------------------------------

    def mark_point(self, x: float, y: float) -> UserPoint:
        """Remember where the user says the object is, and draw it in the viewer beside the prediction."""
        record = self.last_record
        if record is None:
            raise AppError("Reset first: there is no image to click on yet.")
        h, w = record.observation.images[record.observation.main_camera].shape[:2]
        if not (np.isfinite(x) and np.isfinite(y) and 0 <= x <= w and 0 <= y <= h):
            raise AppError(
                f"The click at ({x:.0f}, {y:.0f}) is outside the {w}x{h} camera image; click on the image."
            )
        self.user_point = UserPoint(float(x), float(y), record.step)
        if self.logger is not None:
            import rerun as rr

            rec = self.logger.rec
            rec.set_time("step", sequence=record.step)
            rec.log(
                "world/camera/user/point",
                rr.Points2D([[x, y]], labels=["user"], colors=[[255, 255, 0]], radii=4.0),
            )
        return self.user_point

    def point_report(self) -> dict[str, float]:
        """Distance in pixels from the user's point to each policy's predicted point (or box centre)."""
        record, point = self.last_record, self.user_point
        if record is None or point is None:
            return {}
        out = {}
        for name, ps in record.policies.items():
            centre = predicted_centre(ps.spatial.geometry if ps.spatial else [])
            if centre is not None:
                out[name] = float(np.hypot(centre[0] - point.x, centre[1] - point.y))
        return out

    # -- viewer ----------------------------------------------------------------------------------

    def viewer_bytes(self) -> bytes:
        return self.logger.read() if self.logger is not None else b""

    def send_blueprint(self, name: str | None = None) -> None:
        from workbench.viz import blueprints

        if name is not None:
            if name not in BLUEPRINTS:
                raise AppError(f"Unknown layout {name!r}: choose one of {', '.join(BLUEPRINTS)}.")
            self.blueprint = name
        if self.logger is None or not self.policy_names:
            return
        names = self.policy_names
        if self.blueprint == "one policy" or len(names) == 1:
            bp = blueprints.one_policy(names[0])
        elif self.blueprint == "side by side":
            bp = blueprints.side_by_side(names)
        else:
            bp = blueprints.instruction_ab(names[0], names[1])
        self.logger.rec.send_blueprint(bp)

    # -- summaries -------------------------------------------------------------------------------

    @property
    def last_record(self) -> StepRecord | None:
        return self.records[-1] if self.records else None

    @property
    def done(self) -> bool:
        return bool(self.runner is not None and self.runner.done)

    def take_notes(self) -> list[str]:
        notes, self.notes = self.notes, []
        return notes

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
        self.runner, self.logger = None, None


def predicted_centre(geometry: list) -> tuple[float, float] | None:
    """The first predicted point, else the first box's centre, else None."""
    for g in geometry:
        if isinstance(g, Point):
            return (g.x, g.y)
    for g in geometry:
        if isinstance(g, Box):
            return g.center
    return None


def elapsed_ms(t0: float) -> float:
    return 1000.0 * (time.perf_counter() - t0)
