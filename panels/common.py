"""What every panel shares: the component registry and turning workbench errors into page messages."""

from __future__ import annotations

import functools
import inspect
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from panels.state import AppError
from panels.state.core import Workbench
from panels.state.summary import point_markdown, status_markdown, tab_summary
from panels.state.tab import TabState

log = logging.getLogger("workbench.app")


@dataclass
class UI:
    """Components by name, so one panel can send its outputs to another panel's widgets."""

    workbench: Workbench
    state: gr.State
    c: dict[str, Any] = field(default_factory=dict)
    step_events: list[Any] = field(default_factory=list)  # events after which viewer and plots refresh
    push_events: list[Any] = field(default_factory=list)  # the viewer refreshes chained on step_events

    def __getitem__(self, name: str) -> Any:
        return self.c[name]

    def add(self, **components: Any) -> None:
        self.c.update(components)

    def after_push(self, event: Any) -> None:
        """Mark the viewer refresh of a step event (what comes after the viewer chains on it)."""
        self.push_events.append(event)

    def after_step(self, event: Any) -> None:
        """Mark an event whose success changes the tab's steps (the viewer panel chains refreshes)."""
        self.step_events.append(event)


def tab_of(workbench: Workbench, tab: TabState | None) -> TabState:
    """The tab's session, created on its first event (gr.State starts as None in every tab)."""
    return tab if isinstance(tab, TabState) else workbench.new_tab()


def release_tab(tab: object) -> None:
    """gr.State's delete_callback: a closed tab's session lets go of its runner, recording and threads."""
    if isinstance(tab, TabState):
        tab.release()


def release_on_unload(demo: gr.Blocks) -> None:
    """When a page closes, free its tab at once: gradio itself deletes a closed page's state (and so
    calls `release_tab`) only an hour later."""

    def release(request: gr.Request) -> None:
        holder = getattr(demo, "state_holder", None)
        if holder is not None and request.session_hash in holder:
            holder.delete_state(request.session_hash)

    demo.unload(release)


def _to_page(e: Exception) -> gr.Error:
    if isinstance(e, AppError):
        return gr.Error(str(e))
    log.error("unexpected error in a handler:\n%s", traceback.format_exc())
    return gr.Error(f"{type(e).__name__}: {e}. The app is still running; see the server log for details.")


def guard(fn: Callable) -> Callable:
    """Run a handler; any failure becomes a gr.Error shown in the page, never a dead server."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as e:
                raise _to_page(e) from e

        return gen

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as e:
            raise _to_page(e) from e

    return wrapper


def show_warnings(messages: list[str]) -> None:
    for m in messages:
        gr.Warning(m)


def step_outputs(ui: UI) -> list[Any]:
    """The widgets every stepping event updates (in this order; see step_values)."""
    return [ui.state, ui["status"], ui["summary"], ui["point_info"]]


def step_values(tab: TabState) -> tuple:
    return tab, status_markdown(tab), tab_summary(tab), point_markdown(tab)
