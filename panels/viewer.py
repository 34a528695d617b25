"""Viewer panel: the embedded Rerun viewer streaming this tab's recording, its legend, a layout switch,
the layer switches (ground truth, answers, rollouts), the attention switch (off by default), clicks.

The viewer's own blueprint and selection panels start collapsed, not hidden: the buttons at its top
right open them, so each layer (ground truth, a policy's answer, its rollout) can be switched off."""

from __future__ import annotations

import gradio as gr
from gradio_rerun import Rerun
from gradio_rerun.events import SelectionChange

from panels.common import UI, guard, tab_of
from panels.state.clicks import click_from_items
from panels.state.summary import point_markdown
from panels.state.viewer import BLUEPRINTS
from workbench.viz import overlay
from workbench.viz.blueprints import LAYERS
from workbench.viz.welcome import welcome_recording


def render(ui: UI) -> None:
    # no panel_states: a state set there is forced (the user could not open the panel); the
    # blueprints collapse the panels instead (workbench.viz.blueprints)
    viewer = Rerun(streaming=True, elem_id="viewer", height=ui.workbench.config.viewer_height)
    legend = gr.HTML(overlay.legend_html([]), elem_id="legend")
    with gr.Row(equal_height=True):
        layout = gr.Radio(list(BLUEPRINTS), value=BLUEPRINTS[0], label="Layout", elem_id="layout", scale=3)
        layers = gr.CheckboxGroup(list(LAYERS), value=list(LAYERS), label="Show in the camera views",
                                  elem_id="layers", scale=2)  # fmt: skip
        attention = gr.Checkbox(False, label="Attention heatmap", elem_id="attention", scale=1,
                                info="tints the camera image with where the action queries look")  # fmt: skip
    ui.add(viewer=viewer, layout=layout, legend=legend, attention=attention, layers=layers)


def welcome():
    """The recording the viewer opens on: nothing loaded, press Load (workbench.viz.welcome)."""
    yield welcome_recording()


def legend(tab) -> str:
    return overlay.legend_html(tab.policy_names if tab is not None else [])


def follow_layout(tab, current):
    """The layout radio follows what Load or a replay chose; unchanged, it is left alone (a change
    would send the blueprint again and undo the user's own arrangement of the viewer)."""
    if tab is None or tab.blueprint == current:
        return gr.skip()
    return tab.blueprint


def wire(ui: UI) -> None:
    wb = ui.workbench

    def push(tab):
        """Stream the bytes logged since the last push: same recording id, so the viewer merges them."""
        data = tab.viewer_bytes() if tab is not None else b""
        if data:
            yield data

    @guard
    def set_layout(tab, name):
        tab = tab_of(wb, tab)
        tab.send_blueprint(name)
        return tab

    @guard
    def clicked(tab, evt: SelectionChange):
        """A click on a camera image marks the user's point on that lane's image (see panels.state.clicks)."""
        tab = tab_of(wb, tab)
        click = click_from_items(evt.payload.items)
        if click is not None:
            tab.mark_point(click.x, click.y, branch=click.branch)
        return tab, point_markdown(tab)

    @guard
    def set_attention(tab, on):
        tab = tab_of(wb, tab)
        tab.set_attention(on)
        return tab

    def around(tab, shown_legend, current):
        """The legend, and the layout radio following what Load or a replay chose (one request). What
        is unchanged is skipped: after a step, the page redraws nothing here."""
        new = legend(tab)
        return (gr.skip() if new == shown_legend else new), follow_layout(tab, current)

    for event in ui.step_events:
        # the viewer's bytes first: the plots (panels.plots) are drawn after them, not beside them
        ui.after_push(event.success(push, ui.state, ui["viewer"], show_progress="hidden"))
        event.success(around, [ui.state, ui["legend"], ui["layout"]], [ui["legend"], ui["layout"]],
                      show_progress="hidden")  # fmt: skip
    ui["layout"].change(set_layout, [ui.state, ui["layout"]], ui.state).success(push, ui.state, ui["viewer"])

    @guard
    def set_layers(tab, shown):
        tab = tab_of(wb, tab)
        tab.set_layers(shown)
        return tab

    ui["layers"].input(set_layers, [ui.state, ui["layers"]], ui.state).success(push, ui.state, ui["viewer"])
    ui["attention"].input(set_attention, [ui.state, ui["attention"]], ui.state).success(
        push, ui.state, ui["viewer"]
    )
    ui["viewer"].selection_change(clicked, ui.state, [ui.state, ui["point_info"]]).success(
        push, ui.state, ui["viewer"]
    )
