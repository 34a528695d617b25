"""One browser tab's workbench: its runner, Rerun recording, edits and clicked points.

A `TabState` lives in the tab's gr.State, so two tabs never share a runner or a recording.
It is handed what it needs from the server (the configuration, the checkpoint cache's `load_policy`,
the source factory `make_source`) and never calls back up: models loaded from disk are shared through
that cache and are read-only at inference.

A/B: a second checkpoint runs in the same runner, either "shared" (A drives, B is asked on the very
same observations: one lane) or "independent" (each drives its own copy of the source: one lane per
checkpoint, branch name = its label). `records` holds every lane's steps on the current path.

This module holds the tab's fields and lifecycle (Load, Reset, close, release), which records are the
current ones, and the probe. Its other behaviour lives beside it, one part per module, mixed into
`TabState`: stepping and the page's pacing (panels/state/stepping.py), the user's edits
(panels/state/edits.py) and the viewer's recording and layout (panels/state/viewer.py). The values
Load is given are in panels/state/specs.py.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from panels.state.clicks import UserPoint
from panels.state.config import AppConfig, AppError, check_seed
from panels.state.edits import EditsMixin
from panels.state.specs import MODES, PolicyLoader, PolicySettings, SourceSpec, reset_options
from panels.state.stepping import SteppingMixin
from panels.state.viewer import BLUEPRINTS, ViewerMixin
from workbench.records import StepRecord


@dataclass
class TabState(SteppingMixin, EditsMixin, ViewerMixin):
    """One browser tab's live state (a saved session is something else: panels/state/sessions.py)."""

    config: AppConfig
    load_policy: PolicyLoader  # the server's checkpoint cache (shared by every tab, read-only models)
    make_source: Callable[[SourceSpec], Any]  # a runner Source for what the page describes
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
    mode: str = "shared"  # A/B mode (see the module doc)
    replayed: str = ""  # the saved session shown (no runner), "" when stepping live
    probe_rows: list[dict] = field(default_factory=list)  # the last probe's table (rows open sessions)
    parents: dict[str, str] = field(default_factory=dict)  # branch -> the branch it was made from
    view_titles: list[str] = field(default_factory=list)  # the viewer's camera views, as last sent
    attention: bool = False  # draw the attention heatmap over the camera image (the page's switch)
    counterfactual: Any = None  # the last counterfactual edit (state/counterfactual.py), drawn until a step
    hidden_layers: set[str] = field(default_factory=set)  # camera-view layers switched off on the page
    probe_checkpoint: str = ""  # the name of the checkpoint the last probe ran (its replays carry it)
    sent: int = 0  # sequence number of the last step streamed to the page in a run
    shown: int = -1  # the last sequence number the page said it shows (-1: no page has echoed)
    _shown_cv: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)  # Pause
    _probe_stop: threading.Event = field(default_factory=threading.Event, repr=False)  # Cancel probe

    # -- loading ---------------------------------------------------------------------------------

    def load(
        self, source: SourceSpec, checkpoints: list[str], settings: PolicySettings, mode: str = "shared"
    ) -> StepRecord:
        """Build the runner for `source` with one slot per checkpoint (A, B) and reset it."""
        from workbench.compat import IncompatibleSource, fit_slots
        from workbench.runner import PolicySlot, Runner

        if mode not in MODES:
            raise AppError(f"Unknown A/B mode {mode!r}: choose 'shared' or 'independent'.")

        checkpoints = [c for c in checkpoints if c is not None] or [""]
        slots, names = [], []
        for i, ckpt in enumerate(checkpoints[:2]):
            policy, name, notes = self.load_policy(ckpt)
            self.notes.extend(notes)
            label = name if name not in names else f"{name} ({'AB'[i]})"
            names.append(label)
            slots.append(
                PolicySlot(
                    label, policy, num_ddim_steps=int(settings.num_ddim_steps), cfg_scale=float(settings.cfg_scale),
                    ensemble_horizon=int(settings.ensemble_horizon), ensemble_alpha=float(settings.ensemble_alpha),
                    # a model never taught a spatial answer is not asked one: vanilla-tiny wrote 128
                    # tokens that print as nothing, 0.45 s of every step
                    spatial_query="box" if getattr(policy, "trained_to_answer", True) else None,
                )
            )  # fmt: skip
        env = self.make_source(source)
        try:  # compatibility at Load: what works, which state mapping (shown as warnings, never mid-run)
            self.notes.extend(fit_slots(slots, env, source.state_mapping or None))
        except IncompatibleSource as e:
            env.close()
            raise AppError(str(e)) from e
        source.state_mapping_used = slots[0].state_mapping or ""
        self.close()
        self.logger = self.open_recording(getattr(env, "state_names", ()), getattr(env, "action_names", ()))
        try:
            runner = Runner(env, slots, mode=mode if len(slots) > 1 else "shared", sinks=[self.logger])
        except ValueError as e:  # e.g. a source that cannot be copied for independent mode
            env.close()
            raise AppError(f"Cannot run {mode} A/B on this source: {e}") from e
        self.runner, self.mode, self.replayed = runner, runner.mode, ""
        self.policy_names, self.source, self.settings = names, source, settings
        self.parents = {}
        self.checkpoints = list(checkpoints[:2])
        self.blueprint = BLUEPRINTS[1] if len(names) > 1 else BLUEPRINTS[0]
        out = self.reset(source.seed)
        self.send_blueprint()  # after the first image: its size pins the camera views' bounds
        return out

    def _require_runner(self) -> Any:
        if self.runner is None:
            raise AppError(
                "Nothing is loaded in this tab yet: pick a checkpoint and a source, then press Load."
            )
        return self.runner

    # -- reset -----------------------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> StepRecord:
        runner = self._require_runner()
        seed = self.source.seed if seed is None else check_seed(seed)
        options = reset_options(self.source)
        for slot in runner.slots:  # a fresh episode asks the source's own instruction (edits are dropped)
            slot.instruction = None
        fresh = bool(runner.history) and self.logger is not None
        if fresh:
            self._new_recording(runner)
        before = len(runner.history)
        record = runner.reset(seed=seed, options=options)
        self.records = list(runner.history[before:])  # step 0 of every lane
        self.user_point = None
        self.edits = []
        self.counterfactual = None
        if fresh:
            self.send_blueprint()
        return record

    def reset_source(self, spec: SourceSpec) -> str:
        """Reset with the page's source settings. Object, split and seed apply here; another kind of
        source, task or recording needs Load (returned as a message, nothing is reset then).
        Returns "" when the reset applied `spec`."""
        self._require_runner()
        old = self.source
        same_task = not spec.task or spec.task == old.task
        if spec.kind != old.kind or not same_task or (spec.kind == "episode" and spec.path != old.path):
            what = {"sim": f"task {spec.task}", "simpler": f"SimplerEnv task {spec.task}",
                    "episode": f"recording {spec.path}"}.get(spec.kind, spec.kind)  # fmt: skip
            return (
                f"Reset restarts the loaded source; to switch to the {what}, press **Load**. "
                "Nothing was reset."
            )
        self.source = dataclasses.replace(old, seed=spec.seed, object=spec.object, split=spec.split)
        self.reset(self.source.seed)
        return ""

    # -- the current records ---------------------------------------------------------------------

    @property
    def last_record(self) -> StepRecord | None:
        """The first lane's latest step (what the status line talks about)."""
        lanes = self.lane_records()
        return lanes[0] if lanes else None

    def lane_records(self) -> list[StepRecord]:
        """The latest record of every lane (one per branch in view), first lane first."""
        if self.runner is not None:
            branches = [lane.branch for lane in self.runner.lanes]
        else:  # a replayed session: the branches its last records are on (two lanes if independent)
            lanes = 2 if self.mode == "independent" else 1
            branches = list(dict.fromkeys(r.branch for r in reversed(self.records)))[:lanes][::-1]
        latest: dict[str, StepRecord] = {}
        for r in self.records:
            if r.branch in branches:
                latest[r.branch] = r
        return [latest[b] for b in branches if b in latest]

    def lane_record(self, branch: str | None) -> StepRecord | None:
        lanes = self.lane_records()
        for r in lanes:
            if r.branch == branch:
                return r
        return lanes[0] if lanes else None

    def writes_no_answer(self, policy: str) -> bool:
        """Whether the loaded policy `policy` was never taught a spatial answer (ST4VLAPolicy.
        trained_to_answer, e.g. vanilla-tiny): it is not asked one (see load)."""
        slots = self.runner.slots if self.runner is not None else []
        return any(s.name == policy and not getattr(s.policy, "trained_to_answer", True) for s in slots)

    @property
    def done(self) -> bool:
        return bool(self.runner is not None and self.runner.done)

    def outcome_line(self) -> str:
        """Once the first lane's episode has ended: success, or why it failed (workbench/triage.py)."""
        from workbench.triage import episode_line, lineage

        return episode_line(lineage(self.records, self.last_record.branch)) if self.last_record else ""

    def take_notes(self) -> list[str]:
        notes, self.notes = self.notes, []
        return notes

    # -- closing ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Let go of the runner (env, sinks) and the recording; `records` stay for the plots."""
        if self.runner is not None:
            self.runner.close()  # the sinks (this tab's logger) and the env's physics client
        elif self.logger is not None:
            self.logger.close()
        self.runner, self.logger = None, None

    def release(self) -> None:
        """The tab is gone (its page closed): stop its run and probe, let go of the runner, simulator,
        recording and the steps it kept, and give freed memory back to the system."""
        self._stop.set()
        self._probe_stop.set()
        from workbench.viz.rerun_log import drop_orphaned_recordings

        self.close()
        self.records, self.probe_rows, self.edits = [], [], []
        drop_orphaned_recordings()  # the recording's threads and those of the layouts it sent
        _return_freed_memory()

    # -- probe -----------------------------------------------------------------------------------

    def probe(
        self, spec: Any, which: str = "A", progress: Any = None, ray: str | None = None, workers: int = 1
    ) -> Any:
        """Run a probe sweep with checkpoint A or B of this tab; cancel_probe() stops it between
        episodes. Every episode is saved as a session, so a row can be opened (open_probe_row).
        With `ray` (workbench.sweep.LOCAL or a cluster's address) `workers` episodes run at once on Ray,
        each worker loading the checkpoint from its folder."""
        from workbench.probe import run_probe
        from workbench.sweep import SweepError

        if which not in ("A", "B"):
            raise AppError(f"Probe checkpoint must be 'A' or 'B', got {which!r}.")
        checkpoints = self.checkpoints or [""]
        if which == "B" and len(checkpoints) < 2:
            raise AppError("No checkpoint B is loaded: pick one in 'Compare with' and press Load.")
        chosen = checkpoints["AB".index(which)]
        policy, self.probe_checkpoint, notes = self.load_policy(chosen)  # checks the folder; cached
        self.notes.extend(notes)
        if ray is not None:  # the workers load the checkpoint from its folder
            if notes:
                raise AppError("A probe on Ray needs a checkpoint folder: these are random weights.")
            try:  # load_policy took it, so only its random-weights entry (the demo folder) fails here
                policy = self.config.checkpoint_paths.resolve(chosen) if chosen.strip() else None
            except AppError:
                policy = None
            policy = policy or self.config.demo_checkpoint
        self._probe_stop.clear()
        try:
            result = run_probe(spec, policy, sessions_root=self.config.sessions_dir, progress=progress,
                               should_stop=self._probe_stop.is_set, ray=ray, workers=workers)  # fmt: skip
        except SweepError as e:
            raise AppError(f"Probe on Ray: {e}.") from e
        self.probe_rows = result.as_dicts()
        return result

    def cancel_probe(self) -> None:
        self._probe_stop.set()


def _return_freed_memory() -> None:
    """Let the C allocator give freed pages back (a tab's images and physics are many small blocks that
    glibc otherwise keeps for reuse); a no-op where there is no glibc."""
    import contextlib
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


__all__ = ["TabState"]
