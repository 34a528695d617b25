"""Episodes panel: the episode list of the recorded dataset picked in the Source panel (index, task,
length); picking one sets the recording to "<dataset>#<index>", which Load opens (Workbench.recording)."""

from __future__ import annotations

import gradio as gr

from panels.common import UI
from panels.state.config import AppError
from panels.state.core import Workbench
from workbench.episodes.lerobot import split_episode


def choices(wb: Workbench, recording: str | None) -> tuple[list[tuple[str, int]], int | None]:
    """Dropdown choices ("#i · task · n frames", i) of a recording, and the index it names now."""
    if not recording:
        return [], None
    try:
        listing = wb.list_episodes(recording)
    except AppError:
        return [], None  # a typed path still being edited, or not a dataset: Load says why
    index = split_episode(recording)[1]
    labels = [(f"#{i} · {task} · {n} frames", i) for i, task, n in listing]
    return labels, index if any(i == index for _, i in labels) else None


def render(ui: UI) -> None:
    pick = gr.Dropdown([], value=None, label="Episode", visible=False, elem_id="episode-pick",
                       info="episodes of the recorded dataset: index · task · length")  # fmt: skip
    ui.add(episode_pick=pick)


def wire(ui: UI) -> None:
    wb = ui.workbench

    def listed(kind: str, recording: str | None):
        labels, index = choices(wb, recording) if kind == "episode" else ([], None)
        return gr.update(choices=labels, value=index, visible=bool(labels))

    def chosen(recording: str | None, index: int | None):
        if not recording or index is None:
            return gr.update()
        base, current = split_episode(recording)
        return gr.update() if current == index else gr.update(value=f"{base}#{int(index)}")

    for trigger in (ui["kind"], ui["episode"]):
        trigger.change(listed, [ui["kind"], ui["episode"]], ui["episode_pick"])
    ui["episode_pick"].input(chosen, [ui["episode"], ui["episode_pick"]], ui["episode"])
