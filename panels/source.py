"""Source panel: checkpoint(s) and what to step through (built-in task, recorded episode)."""

from __future__ import annotations

import gradio as gr

from panels.common import UI, guard, show_warnings, tab_of
from workbench.appcore.core import RANDOM_POLICY, Workbench
from workbench.appcore.summary import point_markdown, status_markdown, step_summary
from workbench.appcore.tab import PolicySettings, SourceSpec


def render(ui: UI) -> None:
    wb = ui.workbench
    checkpoints = wb.list_checkpoints() or [RANDOM_POLICY]
    tasks = wb.list_tasks()
    with gr.Accordion("Source", open=True):
        ckpt = gr.Dropdown(checkpoints, value=wb.default_checkpoint() or checkpoints[0], label="Checkpoint",
                           allow_custom_value=True, info="pick one, or type a path inside the allowed folders")  # fmt: skip
        ckpt_b = gr.Dropdown(
            ["", *checkpoints], value="", label="Compare with (optional B)", allow_custom_value=True
        )
        kind = gr.Radio(["sim", "episode"], value="sim", label="Source")
        task = gr.Dropdown(
            tasks, value=tasks[0] if tasks else None, label="Built-in task", allow_custom_value=True
        )
        with gr.Row():
            seed = gr.Number(0, precision=0, label="Seed", minimum=0)
            split = gr.Radio(["seen", "unseen"], value="seen", label="Objects")
        obj = gr.Dropdown(["", *wb.list_objects("seen")], value="", label="Object (or type a custom one)",
                          allow_custom_value=True)  # fmt: skip
        episode = gr.Textbox(label="Recorded episode path", placeholder="inside --data-dirs", visible=False)
        load = gr.Button("Load", variant="primary", elem_id="load")
    ui.add(
        ckpt=ckpt,
        ckpt_b=ckpt_b,
        kind=kind,
        task=task,
        seed=seed,
        split=split,
        obj=obj,
        episode=episode,
        load=load,
    )


def _load(
    wb: Workbench, tab, ckpt, ckpt_b, kind, task, seed, split, obj, episode, ddim, cfg, horizon, alpha, instr
):
    tab = tab_of(wb, tab)
    settings = PolicySettings(int(ddim), float(cfg), int(horizon), float(alpha))
    source = SourceSpec(kind=kind, task=task or "", seed=int(seed or 0), object=(obj or "").strip(), split=split,
                        path=episode or "")  # fmt: skip
    tab.load(source, [ckpt or "", *([ckpt_b] if ckpt_b else [])], settings)
    show_warnings(tab.take_notes())
    record = tab.last_record
    instruction = record.observation.instruction if record else instr
    return tab, status_markdown(tab), step_summary(record), instruction, point_markdown(tab)


def wire(ui: UI) -> None:
    wb = ui.workbench
    ui["kind"].change(lambda k: (gr.update(visible=k == "sim"), gr.update(visible=k == "episode")),
                      ui["kind"], [ui["task"], ui["episode"]])  # fmt: skip
    ui["split"].change(
        lambda s: gr.update(choices=["", *wb.list_objects(s)], value=""), ui["split"], ui["obj"]
    )
    inputs = [ui.state, ui["ckpt"], ui["ckpt_b"], ui["kind"], ui["task"], ui["seed"], ui["split"], ui["obj"],
              ui["episode"], ui["ddim"], ui["cfg"], ui["horizon"], ui["alpha"], ui["instruction"]]  # fmt: skip
    outputs = [ui.state, ui["status"], ui["summary"], ui["instruction"], ui["point_info"]]
    ev = ui["load"].click(guard(lambda *a: _load(wb, *a)), inputs, outputs, api_name="load")
    ui.after_step(ev)
