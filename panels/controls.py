"""Controls panel: reset, step, run N, run to the end, pause, branch; sampling and ensembling settings.

Reset reads the page's source settings (object, split, seed apply at once; another task or recording
asks for Load). A run streams each step with a sequence number into a hidden field; the page echoes
it back when shown (`shown.change`), so the run is paced by the screen and Pause stops at the step
the user sees (TabState.run).
"""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from panels.common import UI, guard, step_outputs, step_values, tab_of
from panels.source import SOURCE_WIDGETS, source_spec
from panels.state.core import Workbench


def render(ui: UI) -> None:
    with gr.Group(elem_id="controls"):
        with gr.Row():
            reset = gr.Button("Reset", elem_id="reset")
            step = gr.Button("Step", variant="primary", elem_id="step")
            pause = gr.Button("Pause", elem_id="pause", variant="stop")
        with gr.Row():
            n = gr.Number(5, precision=0, minimum=1, maximum=1000, label="N", scale=1, elem_id="run-n-count")
            run_n = gr.Button("Run N", scale=1, elem_id="run-n")
            run_end = gr.Button("Run to end", scale=1, elem_id="run-end")
        with gr.Row():
            branch_name = gr.Textbox(label="Branch name", placeholder="e.g. paraphrase-2", scale=1,
                                     elem_id="branch-name")  # fmt: skip
            branch_instruction = gr.Textbox(label="New instruction for the branch (optional)", scale=2,
                                            placeholder="empty: keep the current one",
                                            elem_id="branch-instruction")  # fmt: skip
        branch = gr.Button("Branch from this step", elem_id="branch")
        # the sequence number of the step a run streamed last; the page echoes it when shown
        shown = gr.Number(0, visible=False, elem_id="shown-seq")
    with gr.Accordion("Sampling and ensembling (applied on Load)", open=False):
        ddim = gr.Slider(1, 50, value=10, step=1, label="DDIM steps")
        cfg = gr.Slider(0.0, 5.0, value=1.5, step=0.1, label="CFG scale")
        horizon = gr.Slider(1, 16, value=7, step=1, label="Ensemble horizon")
        alpha = gr.Slider(0.0, 1.0, value=0.1, step=0.01, label="Ensemble alpha")
    ui.add(reset=reset, step=step, pause=pause, n=n, run_n=run_n, run_end=run_end, branch_name=branch_name,
           branch_instruction=branch_instruction, branch=branch, shown=shown, ddim=ddim, cfg=cfg,
           horizon=horizon, alpha=alpha)  # fmt: skip


# The Step button's busy mark (aria-busy, styled by panels.app.PAGE_CSS), set and cleared in the page.
# It appears only when a step takes longer than window.stepBusyDelayMs (1 s unless set): a repaint of
# the page while the viewer draws costs the viewer's frame time on software WebGL, so a quick step
# changes nothing on the page but its result.
BUSY_ON = """() => {
  clearTimeout(window.stepBusyTimer);
  window.stepBusyTimer = setTimeout(() => document.getElementById('step')?.setAttribute('aria-busy', 'true'),
                                    window.stepBusyDelayMs ?? 1000);
}"""
BUSY_OFF = """() => {
  clearTimeout(window.stepBusyTimer);
  document.getElementById('step')?.removeAttribute('aria-busy');
}"""


def _reset_handler(wb: Workbench) -> Callable:
    """Reset with the page's source settings; another task or recording is a warning asking for Load."""

    @guard
    def reset(tab, *source):
        tab = tab_of(wb, tab)
        message = tab.reset_source(source_spec(*source))
        state, status, summary, point = step_values(tab)
        if message:
            gr.Warning(message.replace("**", ""))
            status = f"⚠️ {message}\n\n{status}"
        return state, status, summary, point, tab.current_instruction() or gr.skip()

    return reset


def _step_handler(wb: Workbench) -> Callable:
    @guard
    def step(tab):
        """One step; the viewer's bytes go out with it (a chained refresh would cost the page a round
        trip through the queue before the viewer could start drawing)."""
        tab = tab_of(wb, tab)
        tab.step(1)
        yield *step_values(tab), tab.viewer_bytes()

    return step


def _run_handler(wb: Workbench) -> Callable:
    """Run N or to the end (n None), streaming each step with the viewer's bytes and its sequence number."""

    @guard
    def run(tab, n, progress=gr.Progress()):
        """Streams each step to the page and the viewer; Pause (another request) stops it between steps."""
        tab = tab_of(wb, tab)
        done, planned = 0, 0
        for done, planned in tab.run(int(n) if n else None):
            progress((done, planned), desc="running (Pause stops at the step on screen)", unit="steps")
            state, status, summary, point = step_values(tab)
            running = f"{status}\n\n⏵ running: {done}/{planned} steps"
            yield state, running, summary, point, tab.viewer_bytes(), tab.sent
        state, status, summary, point = step_values(tab)
        end = "⏸ paused after" if tab.paused else "⏹ ran"
        yield state, f"{status}\n\n{end} {done}/{planned} steps", summary, point, tab.viewer_bytes(), tab.sent

    return run


def _branch_handler(wb: Workbench) -> Callable:
    @guard
    def branch(tab, name, instruction):
        tab = tab_of(wb, tab)
        tab.branch(name, instruction)
        return *step_values(tab), tab.current_instruction()  # the box shows what the branch asks

    return branch


def pause(tab) -> None:
    if tab is not None:
        tab.pause()


def shown(tab, sequence) -> None:
    """The page's echo of the step it shows (its function name is the event's API name, /shown)."""
    if tab is not None:
        tab.mark_shown(sequence)


def wire(ui: UI) -> None:
    wb = ui.workbench
    outputs = step_outputs(ui)
    with_instruction = [*outputs, ui["instruction"]]  # Reset and Branch also say what the policies ask now
    reset_inputs = [ui.state, *(ui[name] for name in SOURCE_WIDGETS)]
    ui.after_step(ui["reset"].click(_reset_handler(wb), reset_inputs, with_instruction, api_name="reset"))
    step_with_viewer = [*outputs, ui["viewer"]]
    # A step animates nothing but its result: Gradio's progress display over the outputs redraws the
    # page about 30 times a second, which on two cores delayed the viewer's frame by about 0.2 s
    # (benchmarks/bench_app.py). A slow step's button says it is busy instead, without animating.
    ui["step"].click(None, js=BUSY_ON, api_visibility="private")
    stepped = ui["step"].click(_step_handler(wb), ui.state, step_with_viewer, api_name="step",
                               show_progress="hidden")  # fmt: skip
    stepped.then(None, js=BUSY_OFF, api_visibility="private")  # also after a failed step
    ui.after_step(stepped)
    run, run_outputs = _run_handler(wb), [*outputs, ui["viewer"], ui["shown"]]
    ui.after_step(ui["run_n"].click(run, [ui.state, ui["n"]], run_outputs, api_name="run_n"))
    ui.after_step(ui["run_end"].click(run, [ui.state, gr.State(None)], run_outputs, api_name="run_to_end"))
    branch_inputs = [ui.state, ui["branch_name"], ui["branch_instruction"]]
    ui.after_step(ui["branch"].click(_branch_handler(wb), branch_inputs, with_instruction, api_name="branch"))
    # Pause and the page's echo must not queue behind the run they steer: they only set this tab's flags.
    ui["pause"].click(pause, ui.state, None, api_name="pause", queue=False)
    ui["shown"].change(shown, [ui.state, ui["shown"]], None, queue=False, show_progress="hidden")
