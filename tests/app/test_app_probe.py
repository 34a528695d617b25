"""The probe sweep and the Sessions panel's core, with the real runner, sim and a tiny random policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from panels.probe import COLUMNS, table_rows
from panels.state import AppConfig, AppError
from panels.state import sessions as app_sessions
from panels.state.core import Workbench
from panels.state.specs import PolicySettings, SourceSpec
from workbench.probe import ProbeError, ProbeSpec, prompt_of, run_probe
from workbench.viz.probe_figure import REASON_COLOURS, outcome, probe_figure


def _row(obj, prompt, seed, reason):
    return {"object": obj, "instruction": prompt.replace("<object>", obj), "prompt": prompt, "seed": seed,
            "success": reason == "success", "triage": reason}  # fmt: skip


def test_heat_map_is_a_full_grid_coloured_by_outcome():
    """Three objects x two instructions of the task's own phrasing make a 3 x 2 grid, not a diagonal."""
    reasons = {("cube", 0): "success", ("cube", 1): "reach", ("can", 0): "grasp", ("can", 1): "grasp",
               ("ball", 0): "grounding", ("ball", 1): "time"}  # fmt: skip
    rows = [_row(o, p, s, reasons[(o, s)]) for o in ("cube", "can", "ball") for p in ("pick <object>", "lift it")
            for s in (0, 1)]  # fmt: skip
    heat = probe_figure(rows).data[0]
    assert list(heat.y) == ["ball", "can", "cube"] and list(heat.x) == ["pick <object>", "lift it"]
    z = np.asarray(heat.z, dtype=float)
    assert z.shape == (3, 2) and not np.isnan(z).any()  # every object x instruction pair is a cell
    names = list(heat.colorbar.ticktext)
    assert names[int(z[1, 0])] == "grasp"  # can: grasp on both seeds
    assert names[int(z[2, 0])] == "success"  # cube: a tie (success 1, reach 1) goes to success
    assert heat.text[2][0] == "1/2<br>reach 1" and heat.text[0][1] == "0/2<br>grounding 1, time 1"
    # each reason has its own colour band where its z value falls
    scale = [tuple(c) for c in heat.colorscale]
    for i, name in enumerate(names):
        norm = (i + 0.5) / len(names)  # zmin -0.5 .. zmax n - 0.5
        band = [col for (lo, col), (hi, _) in zip(scale[::2], scale[1::2], strict=True) if lo <= norm <= hi]
        assert band == [REASON_COLOURS[name]]
    assert len(set(REASON_COLOURS.values())) == len(REASON_COLOURS)
    assert outcome({"success": False}) == "unknown"  # rows from before triage
    assert "no episodes" in probe_figure([]).layout.annotations[0].text


def test_prompt_generalises_the_object_of_the_tasks_own_instruction():
    assert prompt_of("", "pick up the red cube", "red cube") == "pick up the <object>"
    assert prompt_of("lift it", "lift it", "red cube") == "lift it"
    assert prompt_of("", "grab that", "red cube") == "(the task's own)"
    assert (
        prompt_of("", "move purple ball near red can", "purple ball", "red can")
        == "move <object> near <target>"
    )


@pytest.fixture(scope="module")
def workbench(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("probe")
    return Workbench(
        AppConfig(sessions_dir=root / "sessions", demo_checkpoint=root / "none", checkpoint_dirs=[root])
    )


@pytest.mark.slow
def test_probe_runs_every_episode_and_saves_them(workbench):
    policy, _, notes = workbench.load_policy("")
    assert "RANDOM" in notes[0]
    spec = ProbeSpec(task="tabletop_pick", objects=["", "red cube"][:1], instructions=["", "lift the object"],
                     seeds=[0], max_steps=2, num_ddim_steps=2)  # fmt: skip
    seen = []
    result = run_probe(
        spec,
        policy,
        sessions_root=workbench.config.sessions_dir,
        progress=lambda d, t, r: seen.append((d, t)),
    )
    assert seen == [(1, 2), (2, 2)]
    assert [r.instruction for r in result.rows][1] == "lift the object"
    assert all(r.steps <= 2 for r in result.rows)
    # each row triaged (2 steps of a random policy: a failure with its numbers), seconds to 0.1 s
    assert all(r.triage in ("grounding", "reach", "grasp", "time") and r.why for r in result.rows)
    assert all(r.evidence["min_tcp_to_object"] > 0 for r in result.rows)
    assert all(r.seconds == round(r.seconds, 1) for r in result.rows)
    # 2 steps of a task that allows many more: each row says the probe's cap ended it, not the task
    assert all(r.capped and "2-step cap" in r.why for r in result.rows)
    # the grid's columns: the task's own instruction with the object generalised, and the typed one
    assert "<object>" in result.rows[0].prompt and result.rows[0].object not in result.rows[0].prompt
    assert result.rows[1].prompt == "lift the object"
    table = table_rows(result.as_dicts())
    assert [row[COLUMNS.index("triage")] for row in table] == [r.triage for r in result.rows]
    tab = workbench.new_tab()
    app_sessions.replay(tab, result.rows[0].session)  # a row opens with no model
    assert tab.runner is None and len(tab.records) == result.rows[0].steps + 1
    assert len(tab.viewer_bytes()) > 1000
    with pytest.raises(ProbeError):
        ProbeSpec(task="tabletop_pick", objects=[""], instructions=[""], seeds=[])


@pytest.mark.slow
def test_save_replay_export(workbench):
    tab = workbench.new_tab()
    tab.load(SourceSpec(task="tabletop_pick"), [""], PolicySettings(num_ddim_steps=2))
    tab.step(1)
    path = app_sessions.save(tab)
    other = workbench.new_tab()
    app_sessions.replay(other, path.name)
    assert [r.step for r in other.records] == [0, 1]
    assert app_sessions.export(other, path.name, "mp4").stat().st_size > 1000
    assert app_sessions.export(other, path.name, "rrd").suffix == ".rrd"
    with pytest.raises(AppError, match="not a saved session|inside the allowed"):
        app_sessions.replay(other, "nope")
    with pytest.raises(AppError, match="outside"):
        app_sessions.replay(other, "/etc")


def test_status_line_says_why_the_episode_failed():
    from panels.state.summary import status_markdown
    from workbench.records import Observation, PolicyStep, StepRecord

    def record(step, tcp, truncated=False):
        obs = Observation(images={"cam": np.zeros((8, 8, 3), np.uint8)}, instruction="pick the cube")
        return StepRecord(step, obs, {"A": PolicyStep("A", "pick the cube")}, truncated=truncated,
                          info={"tcp_to_object": tcp, "object_to_goal": 0.02, "success": False})  # fmt: skip

    tab = Workbench(AppConfig()).new_tab()
    tab.records = [record(k, 0.2 - 0.001 * k) for k in range(6)]
    assert tab.outcome_line() == "" and "Why it failed" not in status_markdown(tab)  # still running
    tab.records.append(record(6, 0.19, truncated=True))
    assert "Why it failed: **reach** — the gripper never reached the object" in status_markdown(tab)
    assert "closest 19.0 cm" in tab.outcome_line()
