"""Stepping a tab: Step, Run N, Run to end and Pause, paced by what the page shows.

A page paces a run: every streamed step carries a sequence number the page echoes back when it has
shown it (`mark_shown`); once a page has echoed, `run` waits for the echo before the next step, so
the run is never ahead of what is on screen and Pause stops at the step the user sees. API clients
never echo and run unpaced.

Every step joins the tab's `records` (one record per lane: independent A/B has two) and takes away
what marked only the step before it: the user's clicked point and the counterfactual edit.
"""

from __future__ import annotations

from collections.abc import Iterator

from panels.state.clicks import clear_user_point
from panels.state.config import AppError
from panels.state.counterfactual import clear_counterfactual
from workbench.records import StepRecord


class SteppingMixin:
    """The stepping half of `TabState` (panels/state/tab.py), whose fields it reads: runner, records,
    logger, user_point, counterfactual, config, and the pacing fields sent, shown, _shown_cv, _stop."""

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
