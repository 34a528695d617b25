"""Plots panel: Plotly figures of the tab's steps (actions, grounding error, stage timings).

Only the figure whose tab is on screen is drawn after a step (a Plotly redraw costs the page's main
thread, which the Rerun viewer shares); choosing another figure's tab draws that one then.
"""

from __future__ import annotations

import gradio as gr

from panels.common import UI
from workbench.viz import plots

# tab label -> the figure drawn in it, in tab order
FIGURES = {
    "Actions": plots.action_figure,
    "Grounding": plots.grounding_error_figure,
    "Timings": plots.timings_figure,
}
LABELS = {
    "Actions": "Actions: predicted chunk, executed, recorded",
    "Grounding": "Grounding error",
    "Timings": "Stage timings",
}


# Resolves when the page's main thread is next idle (or after 1 s); Gradio awaits it before the
# next event of the chain.
WHEN_IDLE = "() => new Promise(done => requestIdleCallback(() => done(), {timeout: 1000}))"


def render(ui: UI) -> None:
    """One tab per figure (call inside a gr.Tabs): the page stays one screen tall."""
    for name in FIGURES:
        with gr.Tab(name) as page:
            plot = gr.Plot(label=LABELS[name], show_label=False)
        ui.add(**{f"plot_tab_{name}": page, f"plot_{name}": plot})
    ui.add(plot_shown=gr.State(next(iter(FIGURES))))  # the figure tab last chosen on this page


def figures(tab, shown: str) -> tuple:
    """The shown figure, drawn from the tab's steps; the others are left as they are."""
    records = tab.records if tab is not None else []
    return tuple(draw(records) if name == shown else gr.skip() for name, draw in FIGURES.items())


def chosen(tab, evt: gr.SelectData) -> tuple:
    """A figure tab chosen: it becomes the shown one and is drawn (once the page has loaded something).
    Gradio also sends `select` to the tab that loses the page (evt.selected False): that changes nothing."""
    if not evt.selected:
        return (gr.skip(),) * (1 + len(FIGURES))
    if tab is None:  # nothing loaded in this page yet: no figure, as before any step
        return evt.value, *(gr.skip(),) * len(FIGURES)
    return evt.value, *figures(tab, evt.value)


def wire(ui: UI) -> None:
    outs = [ui[f"plot_{name}"] for name in FIGURES]
    # After the viewer's refresh (panels.viewer) and once the page is idle: the viewer draws the step on
    # the page's main thread, and a Plotly redraw there delayed its frame on a 2-core box.
    for event in ui.push_events or ui.step_events:
        idle = event.then(None, js=WHEN_IDLE, api_visibility="private")
        idle.then(figures, [ui.state, ui["plot_shown"]], outs, show_progress="hidden")
    for name in FIGURES:
        ui[f"plot_tab_{name}"].select(chosen, ui.state, [ui["plot_shown"], *outs], show_progress="hidden")
