"""What the user changes in a tab's episode: the instruction, a re-ask, a branch, a clicked point.

Each edit is appended to the tab's `edits` (saved with the session, in the order made) as a dict with
its "kind" ("instruction", "reask", "branch" or "user_point"; panels/state/counterfactual.py adds
"counterfactual") and the step it was made at. An
instruction is cleaned first (panels/state/config.clean_instruction) and applies from the next step on;
a re-ask answers the current frame again without stepping; a branch goes on from the current step under
a new name, and its shared history is logged under the new branch too, so its camera view shows its
whole path.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from panels.state.clicks import UserPoint, compare_point, log_user_point
from panels.state.config import AppError, clean_instruction
from workbench.records import StepRecord


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


class EditsMixin:
    """The editing half of `TabState` (panels/state/tab.py), whose fields it reads: runner, records,
    edits, parents, logger, source, user_point."""

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

    def paraphrases(self, n: int = 6) -> list[str]:
        """Other ways to say the current task, from the simulator's instruction bank."""
        record = self.last_record
        gt = record.observation.ground_truth if record is not None else None
        if gt is None or not gt.object_label or self.source.kind != "sim":
            return []
        return bank_paraphrases(self.source.task, gt.object_label, gt.target_label, self.source.split)[:n]

    # -- branch ----------------------------------------------------------------------------------

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

    # -- clicked point ---------------------------------------------------------------------------

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
