"""Instruction panel: live edit, re-ask without stepping, paraphrase suggestions, the user's clicked point."""

from __future__ import annotations

import gradio as gr

from panels.common import UI, guard, show_warnings, step_outputs, step_values, tab_of
from panels.state.counterfactual import run_counterfactual


def viewer_push(tab):
    """Stream what was logged since the last push (the counterfactual's box and rollout)."""
    data = tab.viewer_bytes() if tab is not None else b""
    if data:
        yield data


def render(ui: UI) -> None:
    with gr.Group():
        instruction = gr.Textbox(label="Instruction", lines=2, elem_id="instruction",
                                 info="applies from the next step; Re-ask asks what this box says, on the current frame")  # fmt: skip
        with gr.Row():
            apply = gr.Button("Set instruction", elem_id="set-instruction")
            reask = gr.Button("Re-ask", elem_id="reask")
            suggest = gr.Button("Paraphrases")
        paraphrases = gr.Radio(
            [], label="Paraphrases from the instruction bank (click to use)", visible=False
        )
        point_info = gr.Markdown(elem_id="point-info")
    with gr.Accordion("Counterfactual: act on your box", open=False, elem_id="counterfactual-box"):
        cf_box = gr.Textbox(label="Box x1, y1, x2, y2 (camera pixels)", placeholder="e.g. 120, 80, 160, 120",
                            elem_id="cf-box",
                            info="for a model that acts on its own spatial answer: its action on this frame "
                            "if it had answered this box")  # fmt: skip
        cf_run = gr.Button("Act on this box", elem_id="cf-run")
        cf_out = gr.Markdown(elem_id="cf-result")
    ui.add(cf_box=cf_box, cf_run=cf_run, cf_out=cf_out)
    ui.add(instruction=instruction, set_instruction=apply, reask=reask, suggest=suggest, paraphrases=paraphrases,
           point_info=point_info)  # fmt: skip


def wire(ui: UI) -> None:
    wb = ui.workbench
    outputs = step_outputs(ui)

    @guard
    def set_instruction(tab, text):
        tab = tab_of(wb, tab)
        show_warnings(tab.set_instruction(text))
        gr.Info("Instruction set: it applies from the next step (or press Re-ask).")
        return step_values(tab)

    @guard
    def reask(tab, text):
        """Re-ask with what the box says (set first when it changed), on the current frame."""
        tab = tab_of(wb, tab)
        _, warnings = tab.reask(text)
        show_warnings(warnings)
        return step_values(tab)

    @guard
    def suggest(tab):
        options = tab_of(wb, tab).paraphrases()
        if not options:
            gr.Warning("No paraphrases in the instruction bank for this instruction.")
        return gr.update(choices=options, value=None, visible=bool(options))

    ui["set_instruction"].click(
        set_instruction, [ui.state, ui["instruction"]], outputs, api_name="set_instruction"
    )
    ui.after_step(ui["reask"].click(reask, [ui.state, ui["instruction"]], outputs, api_name="reask"))
    ui["suggest"].click(suggest, ui.state, ui["paraphrases"], api_name="paraphrases")

    @guard
    def counterfactual(tab, box):
        tab = tab_of(wb, tab)
        return tab, run_counterfactual(tab, box).markdown()

    ui["cf_run"].click(counterfactual, [ui.state, ui["cf_box"]], [ui.state, ui["cf_out"]],
                       api_name="counterfactual").success(viewer_push, ui.state, ui["viewer"])  # fmt: skip

    def use_paraphrase(evt: gr.SelectData):
        return evt.value

    ui["paraphrases"].select(use_paraphrase, None, ui["instruction"])
