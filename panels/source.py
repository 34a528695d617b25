"""Source panel: checkpoint A (and an optional B to compare), and what to step through: a built-in
task, a recorded episode or saved session, or a SimplerEnv task when SimplerEnv runs here."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import gradio as gr

from panels.common import UI, guard, show_warnings, step_values, tab_of
from panels.state.core import RANDOM_POLICY, Workbench
from panels.state.specs import MODES, PolicySettings, SourceSpec
from workbench.compat import MAPPINGS
from workbench.sim.catalog import OBJECT_SPLITS

KINDS = {"sim": "built-in sim", "episode": "recorded episode / session", "simpler": "SimplerEnv"}


def render(ui: UI) -> None:
    wb = ui.workbench
    checkpoints = wb.list_checkpoints() or [RANDOM_POLICY]
    tasks = wb.list_tasks()
    recordings = wb.list_recordings()
    simpler_ok, simpler_why = wb.simpler_status()
    kinds = [(label, k) for k, label in KINDS.items() if k != "simpler" or simpler_ok]
    with gr.Accordion("Source (folds after Load; open it to change the object and Reset)", open=True,
                      elem_id="source-box") as box:  # fmt: skip
        named = checkpoint_choices(checkpoints)  # shown by name, the value is the path
        ckpt = gr.Dropdown(named, value=wb.default_checkpoint() or checkpoints[0], label="Checkpoint (A)", elem_id="ckpt-a",
                           allow_custom_value=True, info="pick one, or type a path inside the allowed folders")  # fmt: skip
        with gr.Row():
            ckpt_b = gr.Dropdown([("", ""), *named], value="", label="Compare with (optional B)", elem_id="ckpt-b",
                                 allow_custom_value=True, scale=2)  # fmt: skip
            mode = gr.Radio(list(MODES), value="shared", label="A/B mode", scale=1,
                            info="shared: A drives, B is asked on the same frames; independent: each drives its own")  # fmt: skip
        kind = gr.Radio(kinds, value="sim", label="Source", elem_id="source-kind")
        task = gr.Dropdown(
            tasks, value=tasks[0] if tasks else None, label="Built-in task", allow_custom_value=True
        )
        with gr.Row():
            seed = gr.Number(0, precision=0, label="Seed", minimum=0, elem_id="seed")
            split = gr.Radio(OBJECT_SPLITS, value="seen", label="Objects", elem_id="split",
                             info="seen: in the demonstrations; unseen: in none, named in grounding data; "
                             "novel: in no data at all")  # fmt: skip
        obj = gr.Dropdown(["", *wb.list_objects("seen")], value="", label="Object (or type a custom one)",
                          allow_custom_value=True, elem_id="object",
                          info="Load or Reset applies object, split and seed")  # fmt: skip
        episode = gr.Dropdown(recordings, value=recordings[0] if recordings else None, visible=False,
                              label="Recorded episode or saved session", allow_custom_value=True,
                              info="LeRobot folders and sessions inside --data-dirs; or type a path")  # fmt: skip
        simpler_tasks = wb.simpler_tasks()
        simpler_task = gr.Dropdown(simpler_tasks, value=simpler_tasks[0] if simpler_tasks else None,
                                   label="SimplerEnv task", visible=False)  # fmt: skip
        simpler_note = "SimplerEnv: available." if simpler_ok else f"SimplerEnv is not offered: {simpler_why}"
        gr.Markdown(f"<small>{simpler_note}</small>", elem_id="simpler-status")
        state_mapping = gr.Dropdown(MAPPING_CHOICES, value="", label="Robot state mapping", elem_id="state-mapping",
                                    info="how the source's robot state feeds the checkpoint; Load says what it used")  # fmt: skip
        load = gr.Button("Load", variant="primary", elem_id="load")
    ui.add(source_box=box, ckpt=ckpt, ckpt_b=ckpt_b, mode=mode, kind=kind, task=task, seed=seed, split=split, obj=obj,
           episode=episode, simpler_task=simpler_task, state_mapping=state_mapping, load=load)  # fmt: skip


# "" lets Load use the source's state when it fits and say so; otherwise the user names a mapping.
MAPPING_CHOICES = [
    ("automatic: the fitting mapping, named at Load", ""),
    *((f"{k}: {v}", k) for k, v in MAPPINGS.items()),
]


def checkpoint_choices(paths: list[str]) -> list[tuple[str, str]]:
    """(name, path) per checkpoint: the field shows the folder's name, not a truncated absolute path;
    a name found in two folders gets its parent folder added."""
    names = [Path(p).name for p in paths]
    return [
        (n if names.count(n) == 1 else f"{n} ({Path(p).parent.name})", p)
        for n, p in zip(names, paths, strict=True)
    ]


def source_spec(kind, task, seed, split, obj, episode, simpler_task) -> SourceSpec:
    """The source the page's widgets describe (Load builds it; Reset applies what it can of it)."""
    return SourceSpec(kind=kind, task=(simpler_task if kind == "simpler" else task) or "", seed=seed or 0,
                      object=(obj or "").strip(), split=split or "seen", path=episode or "")  # fmt: skip


# The source widgets, in source_spec's order (Load and Reset read them).
SOURCE_WIDGETS = ("kind", "task", "seed", "split", "obj", "episode", "simpler_task")


@dataclass
class LoadForm:
    """What Load reads from the page, one field per widget (named as in the UI registry, in the order
    Gradio passes them)."""

    ckpt: str
    ckpt_b: str
    mode: str
    kind: str
    task: str
    seed: int
    split: str
    obj: str
    episode: str
    simpler_task: str
    ddim: int
    cfg: float
    horizon: int
    alpha: float
    instruction: str
    state_mapping: str = ""  # last: API clients that leave it out get the automatic choice

    def source(self) -> SourceSpec:
        spec = source_spec(
            self.kind, self.task, self.seed, self.split, self.obj, self.episode, self.simpler_task
        )
        spec.state_mapping = self.state_mapping or ""
        return spec

    def settings(self) -> PolicySettings:
        return PolicySettings(int(self.ddim), float(self.cfg), int(self.horizon), float(self.alpha))

    def checkpoints(self) -> list[str]:
        """Checkpoint A ("" = the demo checkpoint), then B when one is chosen."""
        return [self.ckpt or "", *([self.ckpt_b] if self.ckpt_b else [])]


LOAD_WIDGETS = tuple(f.name for f in fields(LoadForm))


def load(wb: Workbench, tab, form: LoadForm):
    tab = tab_of(wb, tab)
    tab.load(form.source(), form.checkpoints(), form.settings(), mode=form.mode or "shared")
    show_warnings(tab.take_notes())
    record = tab.last_record
    instruction = record.observation.instruction if record else form.instruction
    state, status, summary, point = step_values(tab)
    return state, status, summary, instruction, point


def wire(ui: UI) -> None:
    wb = ui.workbench

    def show(k):
        sim = k == "sim"
        return (gr.update(visible=sim), gr.update(visible=sim), gr.update(visible=k == "episode"),
                gr.update(visible=k == "simpler"))  # fmt: skip

    ui["kind"].change(show, ui["kind"], [ui["task"], ui["obj"], ui["episode"], ui["simpler_task"]])
    ui["split"].change(
        lambda s: gr.update(choices=["", *wb.list_objects(s)], value=""), ui["split"], ui["obj"]
    )
    inputs = [ui.state, *(ui[name] for name in LOAD_WIDGETS)]  # Gradio passes them positionally
    outputs = [ui.state, ui["status"], ui["summary"], ui["instruction"], ui["point_info"], ui["viewer"]]

    @guard
    def load_and_show(tab, *values):
        """Load; the viewer's first bytes go out with the reply, as Step's do (panels.controls)."""
        replies = load(wb, tab, LoadForm(*values))
        yield *replies, replies[0].viewer_bytes()

    ev = ui["load"].click(load_and_show, inputs, outputs, api_name="load")
    ui.after_step(ev)
    ev.success(lambda: gr.Accordion(open=False), None, ui["source_box"], show_progress="hidden")
