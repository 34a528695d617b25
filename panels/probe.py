"""Probe panel: a background sweep (objects x paraphrases x seeds) with checkpoint A or B, in the app's
process or on Ray (a local Ray, or a cluster by address; workbench/sweep.py), with progress and a Cancel
button. The table and the heat map fill in as episodes finish (the handler yields a row at a time), each
row with its failure triage (workbench/triage.py); selecting a row opens that episode's session."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import asdict

import gradio as gr

from panels.common import UI, guard, step_outputs, step_values, tab_of
from panels.state import AppError
from panels.state import sessions as app_sessions
from panels.state.core import Workbench
from workbench.probe import ProbeError, ProbeSpec
from workbench.sweep import LOCAL
from workbench.viz.probe_figure import probe_figure

COLUMNS = ["object", "instruction", "seed", "success", "triage", "why", "steps", "seconds", "session"]


def table_rows(rows: list[dict]) -> list[list]:
    """The probe's rows (ProbeRow dicts) as the table shows them, in COLUMNS order."""
    return [[r.get(c, "") for c in COLUMNS] for r in rows]


def render(ui: UI) -> None:
    wb = ui.workbench
    with gr.Row():
        objects = gr.Dropdown(wb.list_objects("seen") + wb.list_objects("unseen"), multiselect=True,
                              label="Objects (empty = the task's own)", allow_custom_value=True)  # fmt: skip
        instructions = gr.Textbox(label="Instructions, one per line (empty = the task's own)", lines=3)
    with gr.Row():
        seeds = gr.Textbox("0, 1", label="Seeds (comma separated)")
        max_steps = gr.Number(40, precision=0, minimum=1, maximum=1000, label="Max steps per episode")
        which = gr.Radio(
            ["A", "B"], value="A", label="Checkpoint", info="the A or B chosen in Source (Load first)"
        )
    with gr.Row():
        on_ray = gr.Checkbox(False, label="Run on Ray", elem_id="probe-on-ray",
                             info="episodes at once, each worker loading the checkpoint once")  # fmt: skip
        address = gr.Textbox("", label="Ray address (empty: a Ray on this machine)",
                             placeholder="auto, or ray://host:10001", elem_id="probe-ray-address")  # fmt: skip
        workers = gr.Number(2, precision=0, minimum=1, maximum=256, label="Workers (episodes at once)")
    with gr.Row():
        run = gr.Button("Run probe", variant="primary", elem_id="probe-run")
        cancel = gr.Button("Cancel probe", variant="stop", elem_id="probe-cancel")
    table = gr.Dataframe(headers=COLUMNS, label="Episodes (select a row to open it in the viewer)",
                         interactive=False, elem_id="probe-table")  # fmt: skip
    plot = gr.Plot(label="Outcome (success or why it failed)")
    ui.add(probe_objects=objects, probe_instructions=instructions, probe_seeds=seeds, probe_max_steps=max_steps,
           probe_which=which, probe_run=run, probe_cancel=cancel, probe_table=table, probe_plot=plot,
           probe_on_ray=on_ray, probe_ray_address=address, probe_workers=workers)  # fmt: skip


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in str(text or "").replace(";", ",").split(",") if s.strip()]
    except ValueError as e:
        raise AppError(f"Seeds must be whole numbers separated by commas, e.g. '0, 1, 2' ({e}).") from e


def ray_from_page(on_ray: bool, address: str, workers) -> tuple[str | None, int]:
    """(the Ray address for workbench.sweep: None in this process, LOCAL or the typed one; workers)."""
    if not on_ray:
        return None, 1
    try:
        count = int(workers or 1)
    except (TypeError, ValueError) as e:
        raise AppError(f"Workers must be a whole number >= 1, got {workers!r}.") from e
    if count < 1:
        raise AppError(f"Workers must be a whole number >= 1, got {workers!r}.")
    return (str(address or "").strip() or LOCAL), count


def spec_from_page(tab, tasks, objects, instructions, seeds, max_steps, task, split) -> ProbeSpec:
    """The probe the page's widgets describe; `tasks` are the built-in tasks the server offers."""
    lines = [" ".join(line.split()) for line in str(instructions or "").splitlines()]
    task = task if task in tasks else (tab.source.task if tab.source.task in tasks else tasks[0])
    try:
        return ProbeSpec(task=task, objects=list(objects or []), instructions=[t for t in lines if t],
                         seeds=_seeds(seeds), split=split, max_steps=int(max_steps or 40),
                         num_ddim_steps=int(tab.settings.num_ddim_steps))  # fmt: skip
    except ProbeError as e:
        raise AppError(f"Probe: {e}.") from e


def _start_sweep(tab, spec: ProbeSpec, which: str, ray: str | None, workers: int) -> tuple[queue.Queue, dict]:
    """Run the tab's probe in a thread: each row arrives on the queue as its episode finishes, then None;
    the dict then holds the sweep's "result", or the "error" it raised (to raise in the handler)."""
    arrived: queue.Queue = queue.Queue()
    box: dict = {}

    def sweep():
        try:
            box["result"] = tab.probe(spec, which, progress=lambda d, t, row: arrived.put(row),
                                      ray=ray, workers=workers)  # fmt: skip
        except BaseException as e:  # raised in the handler's thread
            box["error"] = e
        finally:
            arrived.put(None)

    threading.Thread(target=sweep, name="probe-sweep", daemon=True).start()
    return arrived, box


def _row_progress(row, done: int, total: int) -> str:
    """The progress line after a row: how many episodes are done, and this one's outcome."""
    outcome = "success" if row.success else ("could not run" if row.status != "ok" else row.triage)
    return f"{done}/{total}: {row.object} seed {row.seed} -> {outcome}"


def _announce_end(tab, result, total: int) -> None:
    """The page's messages once the sweep is over: the tab's notes, a cancel, episodes that could not run."""
    for note in tab.take_notes():
        gr.Warning(note)
    if result.stopped:
        gr.Info(f"Probe cancelled after {len(result.rows)} of {total} episodes.")
    failed = sum(r.status != "ok" for r in result.rows)
    if failed:
        gr.Warning(f"{failed} episodes could not run (retried once); their rows say why.")


def _probe_handler(wb: Workbench) -> Callable:
    @guard
    def probe(tab, objects, instructions, seeds, max_steps, task, split, which, on_ray, address, workers,
              progress=gr.Progress()):  # fmt: skip
        tab = tab_of(wb, tab)
        spec = spec_from_page(tab, wb.list_tasks(), objects, instructions, seeds, max_steps, task, split)
        ray, count = ray_from_page(on_ray, address, workers)
        where = "in this process" if ray is None else f"on Ray ({ray}, {count} workers)"
        progress(0, desc=f"{spec.total} episodes {where}")
        arrived, box = _start_sweep(tab, spec, which or "A", ray, count)
        rows: list[dict] = []
        while (row := arrived.get()) is not None:
            rows.append(asdict(row))
            tab.probe_rows = list(rows)  # a row selected now opens what the table shows
            progress(len(rows) / spec.total, desc=_row_progress(row, len(rows), spec.total))
            yield tab, table_rows(rows), probe_figure(rows)
        if "error" in box:
            raise box["error"]
        _announce_end(tab, box["result"], spec.total)
        rows = tab.probe_rows
        yield tab, table_rows(rows), probe_figure(rows)

    return probe


def _open_row_handler(wb: Workbench) -> Callable:
    @guard
    def open_row(tab, evt: gr.SelectData):
        tab = tab_of(wb, tab)
        row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        app_sessions.open_probe_row(tab, tab.probe_rows, int(row))
        return step_values(tab)

    return open_row


def cancel(tab) -> None:
    if tab is not None:
        tab.cancel_probe()


PROBE_INPUTS = ("probe_objects", "probe_instructions", "probe_seeds", "probe_max_steps", "task", "split",
                "probe_which", "probe_on_ray", "probe_ray_address", "probe_workers")  # fmt: skip


def wire(ui: UI) -> None:
    wb = ui.workbench
    ui["probe_run"].click(
        _probe_handler(wb),
        [ui.state, *(ui[name] for name in PROBE_INPUTS)],
        [ui.state, ui["probe_table"], ui["probe_plot"]],
        api_name="probe",
        concurrency_limit=1,
    )
    ui["probe_cancel"].click(cancel, ui.state, None, api_name="cancel_probe", queue=False)
    ui.after_step(ui["probe_table"].select(_open_row_handler(wb), ui.state, step_outputs(ui)))
