"""Sessions panel: save, load and replay (no model needed), export MP4 and .rrd, demo mode."""

from __future__ import annotations

import time

import gradio as gr

from panels.common import UI, guard, step_outputs, step_values, tab_of
from panels.state import sessions as app_sessions


def render(ui: UI) -> None:
    wb = ui.workbench
    with gr.Row():
        save = gr.Button("Save session", variant="primary", elem_id="save-session")
        saved_as = gr.Textbox(label="Saved as", interactive=False)
    with gr.Row():
        choices = app_sessions.list_sessions(wb.config)
        first = wb.config.demo_session or (
            "sample" if "sample" in choices else (choices[0] if choices else None)
        )
        pick = gr.Dropdown(choices, value=first, label="Saved sessions", allow_custom_value=True)
        refresh = gr.Button("Refresh list")
        replay = gr.Button("Load and replay", elem_id="replay")
    with gr.Row():
        export_mp4 = gr.Button("Export MP4")
        export_rrd = gr.Button("Export .rrd")
        exported = gr.File(label="Exported file", interactive=False)
    ui.add(save=save, saved_as=saved_as, session_pick=pick, session_refresh=refresh, replay=replay,
           export_mp4=export_mp4, export_rrd=export_rrd, exported=exported)  # fmt: skip


def render_demo_switch(ui: UI) -> None:
    """The demo switch sits above the controls so it stays visible when they hide."""
    demo = gr.Checkbox(bool(ui.workbench.config.demo_session), elem_id="demo-mode",
                       label="Demo mode: hide the controls and play the chosen saved session")  # fmt: skip
    ui.add(demo=demo)


def wire(ui: UI) -> None:
    wb = ui.workbench
    outputs = step_outputs(ui)

    @guard
    def save(tab):
        tab = tab_of(wb, tab)
        path = app_sessions.save(tab)
        gr.Info(f"Saved {len(tab.records)} steps to {path}")
        return tab, path.name, gr.update(choices=app_sessions.list_sessions(wb.config), value=path.name)

    @guard
    def replay(tab, name):
        tab = tab_of(wb, tab)
        app_sessions.replay(tab, name)
        return step_values(tab)

    @guard
    def play(tab, on, name):
        """Demo mode: stream the session into the viewer one step at a time (no model)."""
        tab = tab_of(wb, tab)
        if not on:
            yield (*step_values(tab), tab.viewer_bytes())
            return
        for _ in app_sessions.play(tab, name):
            yield (*step_values(tab), tab.viewer_bytes())
            time.sleep(wb.config.demo_step_seconds)
        yield (*step_values(tab), tab.viewer_bytes())

    @guard
    def export(tab, name, kind):
        tab = tab_of(wb, tab)
        return str(app_sessions.export(tab, name, kind))

    ui["save"].click(save, ui.state, [ui.state, ui["saved_as"], ui["session_pick"]], api_name="save_session")
    ui["session_refresh"].click(lambda: gr.update(choices=app_sessions.list_sessions(wb.config)), None,
                                ui["session_pick"])  # fmt: skip
    ui.after_step(
        ui["replay"].click(replay, [ui.state, ui["session_pick"]], outputs, api_name="replay_session")
    )
    ui["export_mp4"].click(lambda t, n: export(t, n, "mp4"), [ui.state, ui["session_pick"]], ui["exported"],
                           api_name="export_mp4")  # fmt: skip
    ui["export_rrd"].click(lambda t, n: export(t, n, "rrd"), [ui.state, ui["session_pick"]], ui["exported"],
                           api_name="export_rrd")  # fmt: skip
    play_outputs = [*outputs, ui["viewer"]]
    toggle = ui["demo"].input(lambda on: gr.update(visible=not on), ui["demo"], ui["control_column"],
                              queue=False)  # fmt: skip
    play_inputs = [ui.state, ui["demo"], ui["session_pick"]]
    ui.after_step(toggle.then(play, play_inputs, play_outputs, api_name="demo_play"))
    ui.add(demo_play=(play, play_inputs, play_outputs))  # app.py plays it on page load with --demo
