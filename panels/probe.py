"""Probe panel: a background sweep (objects x paraphrases x seeds) with progress, then a success
table and plot; selecting a row opens that episode's saved session in the viewer."""

from __future__ import annotations

import gradio as gr

from panels.common import UI, guard, tab_of
from workbench.appcore import sessions as app_sessions
from workbench.appcore.summary import point_markdown, status_markdown, step_summary
from workbench.probe import ProbeSpec, run_probe
from workbench.viz.plots import success_figure

COLUMNS = ["object", "instruction", "seed", "success", "steps", "seconds", "session"]


def render(ui: UI) -> None:
    wb = ui.workbench
    with gr.Row():
        objects = gr.Dropdown(wb.list_objects("seen") + wb.list_objects("unseen"), multiselect=True,
                              label="Objects (empty = the task's own)", allow_custom_value=True)  # fmt: skip
        instructions = gr.Textbox(label="Instructions, one per line (empty = the task's own)", lines=3)
    with gr.Row():
        seeds = gr.Textbox("0, 1", label="Seeds (comma separated)")
        max_steps = gr.Number(40, precision=0, minimum=1, maximum=1000, label="Max steps per episode")
        run = gr.Button("Run probe", variant="primary")
    table = gr.Dataframe(headers=COLUMNS, label="Episodes (select a row to open it)", interactive=False)
    plot = gr.Plot(label="Success")
    ui.add(probe_objects=objects, probe_instructions=instructions, probe_seeds=seeds, probe_max_steps=max_steps,
           probe_run=run, probe_table=table, probe_plot=plot)  # fmt: skip


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in str(text or "").replace(";", ",").split(",") if s.strip()]
    except ValueError as e:
        raise gr.Error(f"Seeds must be whole numbers separated by commas, e.g. '0, 1, 2' ({e}).") from e


def wire(ui: UI) -> None:
    wb = ui.workbench

    @guard
    def probe(tab, objects, instructions, seeds, max_steps, task, split, progress=gr.Progress()):
        tab = tab_of(wb, tab)
        lines = [" ".join(line.split()) for line in str(instructions or "").splitlines()]
        spec = ProbeSpec(task=task or (wb.list_tasks() or [""])[0], objects=list(objects or []),
                         instructions=[t for t in lines if t], seeds=_seeds(seeds), split=split,
                         max_steps=int(max_steps or 40), num_ddim_steps=int(tab.settings.num_ddim_steps))  # fmt: skip
        policy, _, notes = wb.load_policy(tab.checkpoints[0] if tab.checkpoints else "")
        for note in notes:
            gr.Warning(note)
        progress(0, desc=f"{spec.total} episodes")

        def report(done, total, row):
            progress(done / total, desc=f"{done}/{total}: {row.object} seed {row.seed} -> "
                                        f"{'success' if row.success else 'fail'}")  # fmt: skip

        result = run_probe(spec, policy, sessions_root=wb.config.sessions_dir, progress=report)
        rows = result.as_dicts()
        table = [[r[c] for c in COLUMNS] for r in rows]
        return tab, table, success_figure(rows)

    @guard
    def open_row(tab, evt: gr.SelectData, table):
        tab = tab_of(wb, tab)
        row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        session = table.iloc[row]["session"] if hasattr(table, "iloc") else table[row][-1]
        app_sessions.replay(tab, str(session))
        return tab, status_markdown(tab), step_summary(tab.last_record), point_markdown(tab)

    ui["probe_run"].click(
        probe,
        [ui.state, ui["probe_objects"], ui["probe_instructions"], ui["probe_seeds"], ui["probe_max_steps"],
         ui["task"], ui["split"]],
        [ui.state, ui["probe_table"], ui["probe_plot"]],
        api_name="probe", concurrency_limit=1,
    )  # fmt: skip
    outputs = [ui.state, ui["status"], ui["summary"], ui["point_info"]]
    ui.after_step(ui["probe_table"].select(open_row, [ui.state, ui["probe_table"]], outputs))
