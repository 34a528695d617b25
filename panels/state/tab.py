"""One browser tab's workbench: its runner, Rerun recording, edits and clicked points.

A `TabState` lives in the tab's gr.State, so two tabs never share a runner or a recording.
It is handed what it needs from the server (the configuration, the checkpoint cache's `load_policy`,
the source factory `make_source`) and never calls back up: models loaded from disk are shared through
that cache and are read-only at inference.

A/B: a second checkpoint runs in the same runner, either "shared" (A drives, B is asked on the very
same observations: one lane) or "independent" (each drives its own copy of the source: one lane per
checkpoint, branch name = its label). `records` holds every lane's steps on the current path.

What the viewer draws is what the status names: the blueprint's camera views read the branch each
lane is on now (after Branch, the new branch; its shared history is logged under it too), so the
one-policy layout never shows the main line's answer while the status talks about a branch.

A page paces a run: every streamed step carries a sequence number the page echoes back when it has
shown it (`mark_shown`); once a page has echoed, `run` waits for the echo before the next step, so
the run is never ahead of what is on screen and Pause stops at the step the user sees. API clients
never echo and run unpaced.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from panels.state.clicks import clear_user_point, compare_point, log_user_point, predicted_centre
from panels.state.config import AppConfig, AppError, check_seed, clean_instruction
from workbench.records import StepRecord

BLUEPRINTS = ("one policy", "side by side", "instruction A vs B")
# checkpoint text ("" = the demo one) -> (policy, display name, warnings): the server's checkpoint cache
PolicyLoader = Callable[[str], tuple[Any, str, list[str]]]
MODES = ("shared", "independent")


@dataclass
class SourceSpec:
    """What the tab steps through."""

    kind: str = "sim"  # "sim" | "episode" (a LeRobot episode or a saved session) | "simpler"
    task: str = ""  # built-in task name ("" = the first one), or the SimplerEnv task for "simpler"
    seed: int = 0
    object: str = ""  # source object ("" = the task's default); a catalog name or a custom one
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
    """Reset options of the built-in sim (object split, source object, instruction); {} for the others."""
    if spec.kind != "sim":
        return {}
    options = {"split": spec.split}
    if spec.object:
        options["source"] = spec.object
    if spec.instruction:
        options["instruction"] = spec.instruction
    return options


def bank_paraphrases(task: str, source: str, target: str = "", split: str = "seen") -> list[str]:
    """Other ways to say a task about `source` (and `target`), from the sim's instruction bank."""
    try:
        from workbench.sim.instructions import paraphrases
    except ImportError:
        return []
    try:
        return list(paraphrases(task, source, target, split))
    except (KeyError, ValueError):
        return []


@dataclass
class UserPoint:
    """A point the user clicked as 'this is right', in original-image pixels, and at which step."""

    x: float
    y: float
    step: int
    branch: str = "main"  # the lane whose image was clicked (independent A/B has one per checkpoint)


@dataclass
class TabState:
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
        from workbench.viz.rerun_log import RerunLogger

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
        self.logger = RerunLogger(recording_id=f"tab-{self.id}-{uuid.uuid4().hex[:6]}", stream=True,
                                  state_names=getattr(env, "state_names", ()), attention=self.attention)  # fmt: skip
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

    # -- stepping --------------------------------------------------------------------------------

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

    def _new_recording(self, runner: Any) -> None:
        """A new episode gets a new Rerun recording: the old episode's later steps would otherwise
        stay in the viewer at their times, and the time cursor (at the latest step) would show them."""
        from workbench.viz.rerun_log import RerunLogger

        old = self.logger
        self.logger = RerunLogger(recording_id=f"tab-{self.id}-{uuid.uuid4().hex[:6]}", stream=True,
                                  state_names=old.state_names, attention=self.attention)  # fmt: skip
        runner.sinks = [self.logger if s is old else s for s in runner.sinks]
        old.close()

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

    def step(self, n: int = 1) -> list[StepRecord]:
        runner = self._require_runner()
        if not 1 <= int(n) <= 1000:
            raise AppError(f"Run N takes 1..1000 steps, got {n}.")
        if runner.done:
            raise AppError("The episode has ended: press Reset, or Branch from an earlier step.")
        out = []
        for _ in range(int(n)):
            out.append(self._step_once())
            if runner.done:
                break
        return out

    def _step_once(self) -> StepRecord:
        """One runner step; every lane's new record joins `records` (independent A/B has two)."""
        before = len(self.runner.history)
        record = self.runner.step()
        self.records.extend(self.runner.history[before:])
        point = self.user_point
        if point is not None and self.logger is not None and point.step == record.step - 1:
            clear_user_point(self.logger.rec, record.step, point.branch, self.policy_names)
        edit, self.counterfactual = self.counterfactual, None
        if edit is not None and self.logger is not None:
            from panels.state.counterfactual import clear_counterfactual

            clear_counterfactual(self.logger.rec, edit, record.step)
        return record

    def steps_left(self) -> int:
        """Steps until the episode's own limit (sim limit, recording length) or step --max-steps.
        A recording plays to its last frame: --max-steps does not cap it."""
        runner = self._require_runner()
        source = runner.lanes[0].source
        limit = getattr(getattr(source, "env", None), "max_episode_steps", None)
        if limit is None and hasattr(source, "observations"):
            return max(0, len(source.observations) - 1 - runner.lanes[0].step)
        cap = self.config.max_steps if limit is None else min(int(limit), self.config.max_steps)
        return max(0, cap - runner.lanes[0].step)

    def run(
        self, n: int | None = None, *, page_wait: float = 10.0, first_echo: float = 1.0
    ) -> Iterator[tuple[int, int]]:
        """Step until done, `n` steps, the episode limit or `pause()`; yields (steps done, planned)
        after each step so the page can show progress (stream `self.sent` with it). Pause is checked
        between steps; when a page echoes what it shows, the next step waits for that echo (at most
        `page_wait` seconds), so the run never gets ahead of the screen. A tab no page has echoed
        for waits `first_echo` seconds once per run, then runs unpaced (an API client)."""
        runner = self._require_runner()
        if n is not None and not 1 <= int(n) <= 1000:
            raise AppError(f"Run N takes 1..1000 steps, got {n}.")
        if runner.done:
            raise AppError("The episode has ended: press Reset, or Branch from an earlier step.")
        self._stop.clear()
        planned = min(int(n), self.steps_left()) if n else self.steps_left()
        paced = True
        for i in range(planned):
            if i > 0 and paced:
                paced = self._wait_shown(page_wait if self.shown >= 0 else first_echo)
            if runner.done or self._stop.is_set():
                return
            self._step_once()
            self.sent += 1
            yield i + 1, planned

    def mark_shown(self, sequence: float | int | None) -> None:
        """The page shows the step streamed with `sequence` (see the module doc)."""
        if sequence is None:
            return
        with self._shown_cv:
            self.shown = max(self.shown, int(sequence))
            self._shown_cv.notify_all()

    def _wait_shown(self, timeout: float) -> bool:
        """Wait until the page shows the last streamed step, or Pause; False if no page ever echoed."""
        with self._shown_cv:
            self._shown_cv.wait_for(lambda: self.shown >= self.sent or self._stop.is_set(), timeout)
            return self.shown >= 0

    def pause(self) -> None:
        """Stop a run after the step in progress (called from another request while the run goes on)."""
        self._stop.set()
        if self.runner is not None:
            self.runner.pause()
        with self._shown_cv:
            self._shown_cv.notify_all()

    @property
    def paused(self) -> bool:
        return self._stop.is_set()

    # -- instruction -----------------------------------------------------------------------------

    def set_instruction(self, text: str, slot: str | None = None) -> list[str]:
        """Change the instruction from the next step on; returns warnings about how it was cleaned."""
        cleaned, warnings = clean_instruction(text)
        self._require_runner().set_instruction(cleaned, slot=slot)
        step = self.records[-1].step if self.records else 0
        self.edits.append({"kind": "instruction", "step": step, "instruction": cleaned, "slot": slot})
        return warnings

    def current_instruction(self) -> str:
        """What the policies are asked now (the first lane's latest step), "" before Load."""
        record = self.last_record
        if record is None:
            return ""
        for ps in record.policies.values():
            return ps.instruction
        return record.observation.instruction

    def reask(self, text: str | None = None) -> tuple[StepRecord, list[str]]:
        """Run the spatial prompt and the action again on the current frame, without stepping.

        `text` (the page's instruction box): when given and different from the current instruction,
        it is set first, so Re-ask asks what the box says. Returns (record, warnings)."""
        runner = self._require_runner()
        warnings: list[str] = []
        if text is not None and str(text).strip():
            cleaned, warnings = clean_instruction(text)
            if cleaned != self.current_instruction():
                warnings += self.set_instruction(cleaned)
        record = runner.reask()
        latest = {lane.branch: lane.record for lane in runner.lanes}
        # The runner replaced each lane's current step in its history; do the same here.
        self.records = [
            latest[r.branch] if r.branch in latest and r.step == latest[r.branch].step else r
            for r in self.records
        ]
        self.edits.append({"kind": "reask", "step": record.step, "instruction": self.current_instruction()})
        return record, warnings

    def branch(self, name: str, instruction: str | None = None) -> StepRecord:
        """Go on from the current step on a new branch, optionally with a new instruction."""
        runner = self._require_runner()
        name = " ".join(str(name or "").split())
        if not name:
            name = f"branch-{len(runner.history)}"
        if instruction and instruction.strip():
            instruction, _ = clean_instruction(instruction)
        else:
            instruction = None
        current = runner.lanes[0].step
        before = len(runner.history)
        olds = [lane.branch for lane in runner.lanes]
        try:
            record = runner.branch(current, name, instruction=instruction)
        except Exception as e:  # BranchError: a recording cannot branch, a name is taken
            raise AppError(f"Cannot branch: {e}") from e
        news = {old: lane.branch for old, lane in zip(olds, runner.lanes, strict=True)}
        self.parents.update({new: old for old, new in news.items()})
        shared = [r for r in self.records if r.step < current]
        self._log_shared_history(shared, news)
        # The new branch shares the path up to `current`; its step `current` replaces the old one.
        self.records = shared + list(runner.history[before:])
        self.edits.append({"kind": "branch", "step": current, "name": name, "instruction": instruction})
        self.send_blueprint()  # the camera views follow the new branch
        return record

    def _log_shared_history(self, shared: list[StepRecord], news: dict[str, str]) -> None:
        """Log the steps a new branch shares with its parent under the new branch too, so scrubbing
        back in the branch's camera view shows its whole path, not an empty image before the branch."""
        if self.logger is None:
            return
        for r in shared:
            if r.branch in news:
                self.logger.write(dataclasses.replace(r, branch=news[r.branch]))

    def paraphrases(self, n: int = 6) -> list[str]:
        """Other ways to say the current task, from the simulator's instruction bank."""
        record = self.last_record
        gt = record.observation.ground_truth if record is not None else None
        if gt is None or not gt.source_label or self.source.kind != "sim":
            return []
        return bank_paraphrases(self.source.task, gt.source_label, gt.target_label, self.source.split)[:n]

    # -- clicks ----------------------------------------------------------------------------------

    def mark_point(self, x: float, y: float, branch: str | None = None) -> UserPoint:
        """Remember where the user says the object is (on `branch`'s image, default the first lane),
        draw it in the viewer beside the prediction, and keep it as an edit (saved with the session)."""
        record = self.lane_record(branch)
        if record is None:
            raise AppError("Reset first: there is no image to click on yet.")
        h, w = record.observation.images[record.observation.main_camera].shape[:2]
        if not (np.isfinite(x) and np.isfinite(y) and 0 <= x <= w and 0 <= y <= h):
            raise AppError(
                f"The click at ({x:.0f}, {y:.0f}) is outside the {w}x{h} camera image; click on the image."
            )
        self.user_point = UserPoint(float(x), float(y), record.step, record.branch)
        report = self.point_report()
        self.edits.append({"kind": "user_point", "step": record.step, "branch": record.branch,
                           "x": round(float(x), 1), "y": round(float(y), 1), "report": report})  # fmt: skip
        if self.logger is not None:
            log_user_point(self.logger.rec, x, y, record.step, record.branch, list(record.policies))
        return self.user_point

    def point_report(self) -> dict[str, dict]:
        """Per policy at the clicked step: pixel distance from the user's point to its predicted point
        (or box centre), and whether the point is inside its predicted box (None: no box)."""
        point = self.user_point
        record = self.lane_record(point.branch) if point is not None else None
        if record is None or point is None:
            return {}
        out = {}
        for name, ps in record.policies.items():
            row = compare_point(ps.spatial.geometry if ps.spatial else [], point.x, point.y)
            if row is not None:
                out[name] = row
        return out

    # -- viewer ----------------------------------------------------------------------------------

    def set_layers(self, shown: list[str]) -> None:
        """Show only these layers of the camera views (workbench.viz.blueprints.LAYERS)."""
        from workbench.viz.blueprints import LAYERS

        unknown = set(shown or []) - set(LAYERS)
        if unknown:
            raise AppError(f"Unknown layers {sorted(unknown)}: choose from {', '.join(LAYERS)}.")
        self.hidden_layers = set(LAYERS) - set(shown or [])
        self.send_blueprint()

    def set_attention(self, on: bool) -> None:
        """Switch the attention heatmap on or off; the current step is drawn again at once."""
        self.attention = bool(on)
        if self.logger is None:
            return
        self.logger.attention = self.attention
        for record in self.lane_records():
            self.logger.write(record)

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
        blueprint = self.blueprint_for()
        self.logger.send_blueprint(blueprint)
        self.view_titles = [title for title, _ in blueprints.camera_views(blueprint)]

    def view_branches(self) -> list[str]:
        """The branch each lane is on now (what the camera views draw), first lane first."""
        if self.runner is not None:
            return [lane.branch for lane in self.runner.lanes]
        lanes = [r.branch for r in self.lane_records()]
        return lanes or ["main"]

    def blueprint_for(self) -> Any:
        """The Rerun blueprint of the chosen layout, on the branches the lanes are on now. With one
        policy, "side by side" puts the current branch beside the branch it was made from."""
        from workbench.viz import blueprints

        names, size = self.policy_names, self._image_size()
        branches = self.view_branches()
        record = self.last_record  # a recording's cameras besides the main one get views of their own
        cams = tuple(list(record.observation.images)[1:]) if record is not None else ()
        hidden = frozenset(self.hidden_layers)
        if len(names) == 1 or self.mode != "independent":
            branches = [branches[0]] * len(names)  # shared: every policy reads the one lane
        if len(names) == 1:
            parent = self.parents.get(branches[0])
            if self.blueprint == "side by side" and parent is not None:
                return blueprints.side_by_side([names[0], names[0]], branches=[branches[0], parent],
                                               image_size=size, cameras=cams, hidden=hidden)  # fmt: skip
            return blueprints.one_policy(
                names[0], branch=branches[0], image_size=size, cameras=cams, hidden=hidden
            )
        if self.blueprint == "one policy":
            return blueprints.one_policy(
                names[0], branch=branches[0], image_size=size, cameras=cams, hidden=hidden
            )
        if self.blueprint == "side by side":
            return blueprints.side_by_side(
                names, branches=branches, image_size=size, cameras=cams, hidden=hidden
            )
        return blueprints.instruction_ab(
            names[0], names[1], branch=branches[0], image_size=size, cameras=cams, hidden=hidden
        )

    def _image_size(self) -> tuple[int, int] | None:
        """(width, height) of the first camera of the latest step, or None before the first step."""
        record = self.last_record
        if record is None or not record.observation.images:
            return None
        h, w = next(iter(record.observation.images.values())).shape[:2]
        return int(w), int(h)

    # -- summaries -------------------------------------------------------------------------------

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
        """Whether the loaded policy `policy` was trained with no spatial answer at all (no grounding
        loss, no spatial prompt, e.g. vanilla-tiny): an empty answer is then its nature, not a fault."""
        slots = self.runner.slots if self.runner is not None else []
        for slot in slots:
            if slot.name == policy:
                config = getattr(slot.policy, "config", None)
                weight = getattr(config, "grounding_loss_weight", None)
                return weight == 0 and not getattr(config, "use_spatial_prompt", True)
        return False

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


def elapsed_ms(t0: float) -> float:
    return 1000.0 * (time.perf_counter() - t0)


__all__ = [
    "BLUEPRINTS",
    "MODES",
    "PolicySettings",
    "SourceSpec",
    "TabState",
    "UserPoint",
    "predicted_centre",
]
