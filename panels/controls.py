"""Controls panel: reset, step, run N, run to the end, pause, branch; sampling and ensembling settings."""

from __future__ import annotations

import gradio as gr

from panels.common import UI, guard, tab_of
from workbench.appcore.summary import point_markdown, status_markdown, step_summary


def render(ui: UI) -> None:
    with gr.Group(elem_id="controls"):
        with gr.Row():
            reset = gr.Button("Reset", elem_id="reset")
            step = gr.Button("Step", variant="primary", elem_id="step")
            pause = gr.Button("Pause", elem_id="pause")
        with gr.Row():
            n = gr.Number(5, precision=0, minimum=1, maximum=1000, label="N", scale=1)
            run_n = gr.Button("Run N", scale=1)
            run_end = gr.Button("Run to end", scale=1)
        with gr.Row():
            branch_name = gr.Textbox(label="Branch name", placeholder="e.g. paraphrase-2", scale=2)
            branch = gr.Button("Branch from here", scale=1)
    with gr.Accordion("Sampling and ensembling (applied on Load)", open=False):
        ddim = gr.Slider(1, 50, value=10, step=1, label="DDIM steps")
        cfg = gr.Slider(0.0, 5.0, value=1.5, step=0.1, label="CFG scale")
        horizon = gr.Slider(1, 16, value=7, step=1, label="Ensemble horizon")
        alpha = gr.Slider(0.0, 1.0, value=0.1, step=0.01, label="Ensemble alpha")
    ui.add(reset=reset, step=step, pause=pause, n=n, run_n=run_n, run_end=run_end, branch_name=branch_name,
           branch=branch, ddim=ddim, cfg=cfg, horizon=horizon, alpha=alpha)  # fmt: skip


def _out(tab):
    return tab, status_markdown(tab), step_summary(tab.last_record), point_markdown(tab)


def wire(ui: UI) -> None:
    wb = ui.workbench
    outputs = [ui.state, ui["status"], ui["summary"], ui["point_info"]]

    @guard
    def reset(tab, seed):
        tab = tab_of(wb, tab)
        tab.reset(int(seed or 0))
        return _out(tab)

    @guard
    def step(tab):
        tab = tab_of(wb, tab)
        tab.step(1)
        return _out(tab)

    @guard
    def run(tab, n):
        """Streams each step to the page; Pause stops it between steps."""
        tab = tab_of(wb, tab)
        for _ in tab.run(int(n) if n else None):
            yield _out(tab)
        yield _out(tab)

    @guard
    def branch(tab, name):
        tab = tab_of(wb, tab)
        tab.branch(name)
        return _out(tab)

    @guard
    def pause(tab):
        if tab is not None:
            tab.pause()

    ui.after_step(ui["reset"].click(reset, [ui.state, ui["seed"]], outputs, api_name="reset"))
    ui.after_step(ui["step"].click(step, ui.state, outputs, api_name="step"))
    ui.after_step(ui["run_n"].click(run, [ui.state, ui["n"]], outputs, api_name="run_n"))
    ui.after_step(ui["run_end"].click(run, [ui.state, gr.State(None)], outputs, api_name="run_to_end"))
    ui.after_step(ui["branch"].click(branch, [ui.state, ui["branch_name"]], outputs, api_name="branch"))
    # Pause must not queue behind the run it stops.
    ui["pause"].click(pause, ui.state, None, api_name="pause", queue=False)
