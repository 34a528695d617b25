"""Viewer panel: the embedded Rerun viewer streaming this tab's recording, a layout switch, clicks."""

from __future__ import annotations

import gradio as gr
from gradio_rerun import Rerun
from gradio_rerun.events import SelectionChange

from panels.common import UI, guard, tab_of
from workbench.appcore.clicks import click_from_items
from workbench.appcore.summary import point_markdown
from workbench.appcore.tab import BLUEPRINTS


def render(ui: UI) -> None:
    viewer = Rerun(streaming=True, elem_id="viewer", height=ui.workbench.config.viewer_height,
                   panel_states={"time": "collapsed", "blueprint": "hidden", "selection": "hidden"})  # fmt: skip
    layout = gr.Radio(list(BLUEPRINTS), value=BLUEPRINTS[0], label="Layout", elem_id="layout")
    ui.add(viewer=viewer, layout=layout)


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
        """A click on a camera image marks the user's point on that lane's image (see appcore.clicks)."""
        tab = tab_of(wb, tab)
        click = click_from_items(evt.payload.items)
        if click is not None:
            tab.mark_point(click.x, click.y, branch=click.branch)
        return tab, point_markdown(tab)

    for event in ui.step_events:
        event.success(push, ui.state, ui["viewer"], show_progress="hidden")
        # the layout radio follows what Load or a replay chose (side by side for A/B)
        event.success(follow_layout, [ui.state, ui["layout"]], ui["layout"], show_progress="hidden")
    ui["layout"].change(set_layout, [ui.state, ui["layout"]], ui.state).success(push, ui.state, ui["viewer"])
    ui["viewer"].selection_change(clicked, ui.state, [ui.state, ui["point_info"]]).success(
        push, ui.state, ui["viewer"]
    )
