"""Plots panel: Plotly figures of the tab's steps (actions, grounding error, stage timings)."""

from __future__ import annotations

import gradio as gr

from panels.common import UI
from workbench.viz import plots


def render(ui: UI) -> None:
    """One tab per figure (call inside a gr.Tabs): the page stays one screen tall."""
    with gr.Tab("Actions"):
        actions = gr.Plot(label="Actions: predicted chunk, executed, recorded", show_label=False)
    with gr.Tab("Grounding"):
        grounding = gr.Plot(label="Grounding error", show_label=False)
    with gr.Tab("Timings"):
        timings = gr.Plot(label="Stage timings", show_label=False)
    ui.add(plot_actions=actions, plot_grounding=grounding, plot_timings=timings)


def figures(tab):
    records = tab.records if tab is not None else []
    return plots.action_figure(records), plots.grounding_error_figure(records), plots.timings_figure(records)


def wire(ui: UI) -> None:
    outs = [ui["plot_actions"], ui["plot_grounding"], ui["plot_timings"]]
    # after the viewer's refresh (panels.viewer), so the figures never delay the overlays on a 2-core box
    for event in ui.push_events or ui.step_events:
        event.then(figures, ui.state, outs, show_progress="hidden")
