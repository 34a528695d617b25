"""Sessions panel: save, load and replay (no model needed), export MP4 and .rrd, demo mode."""

from __future__ import annotations

import gradio as gr

from panels.common import UI, guard, tab_of
from workbench.appcore import sessions as app_sessions
from workbench.appcore.summary import point_markdown, status_markdown, step_summary


def render(ui: UI) -> None:
    wb = ui.workbench
    with gr.Row():
        save = gr.Button("Save session", variant="primary", elem_id="save-session")
        saved_as = gr.Textbox(label="Saved as", interactive=False)
    with gr.Row():
        choices = app_sessions.list_sessions(wb.config)
        pick = gr.Dropdown(choices, value=choices[0] if choices else None, label="Saved sessions",
                           allow_custom_value=True)  # fmt: skip
        refresh = gr.Button("Refresh list")
        replay = gr.Button("Load and replay")
    with gr.Row():
        export_mp4 = gr.Button("Export MP4")
        export_rrd = gr.Button("Export .rrd")
        exported = gr.File(label="Exported file", interactive=False)
    demo = gr.Checkbox(False, label="Demo mode: hide the controls and play the chosen session")
    ui.add(save=save, saved_as=saved_as, session_pick=pick, session_refresh=refresh, replay=replay,
           export_mp4=export_mp4, export_rrd=export_rrd, exported=exported, demo=demo)  # fmt: skip


def wire(ui: UI) -> None:
    wb = ui.workbench

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
        return tab, status_markdown(tab), step_summary(tab.last_record), point_markdown(tab)

    @guard
    def export(tab, name, kind):
        tab = tab_of(wb, tab)
        return str(app_sessions.export(tab, name, kind))

    def demo_mode(on):
        return gr.update(visible=not on)

    ui["save"].click(save, ui.state, [ui.state, ui["saved_as"], ui["session_pick"]], api_name="save_session")
    ui["session_refresh"].click(lambda: gr.update(choices=app_sessions.list_sessions(wb.config)), None,
                                ui["session_pick"])  # fmt: skip
    outputs = [ui.state, ui["status"], ui["summary"], ui["point_info"]]
    ui.after_step(
        ui["replay"].click(replay, [ui.state, ui["session_pick"]], outputs, api_name="replay_session")
    )
    ui["export_mp4"].click(lambda t, n: export(t, n, "mp4"), [ui.state, ui["session_pick"]], ui["exported"],
                           api_name="export_mp4")  # fmt: skip
    ui["export_rrd"].click(lambda t, n: export(t, n, "rrd"), [ui.state, ui["session_pick"]], ui["exported"],
                           api_name="export_rrd")  # fmt: skip
    ui.after_step(
        ui["demo"].change(demo_mode, ui["demo"], ui["control_column"]).success(
            lambda tab, on, name: replay(tab, name) if on else (tab, gr.update(), gr.update(), gr.update()),
            [ui.state, ui["demo"], ui["session_pick"]], outputs,
        )
    )  # fmt: skip
