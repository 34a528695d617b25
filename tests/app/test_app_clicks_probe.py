"""Click-to-prompt, probe cancel / open-episode, A/B plots and --demo through the app's core (no
browser). The click payload is the JSON gradio_rerun 0.39 forwards from the viewer, parsed by
gradio_rerun's own SelectionChange event class, exactly as the page's handler receives it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gradio_rerun.events import SelectionChange
from helpers import REPO

from panels import app
from panels.state import AppConfig, AppError
from panels.state import sessions as app_sessions
from panels.state.clicks import branch_of, click_from_items
from panels.state.core import Workbench
from panels.state.specs import PolicySettings, SourceSpec
from panels.state.summary import point_markdown
from workbench.probe import ProbeSpec
from workbench.records import ActionChunk, Observation, PolicyStep, StepRecord
from workbench.spatial import Box, SpatialAnswer
from workbench.viz import plots


def selection(entity_path: str, position: list[float] | None, kind: str = "entity") -> SelectionChange:
    """A selection_change event as the viewer sends it (gradio_rerun passes the raw JSON string)."""
    item = {"type": kind, "entity_path": entity_path, "instance_id": None, "view_name": "cam",
            "position": position}  # fmt: skip
    if kind == "view":
        item = {"type": "view", "view_id": "abc", "view_name": "actions"}
    payload = {"type": "selection_change", "application_id": "st4vla-workbench", "recording_id": "tab-1",
               "segment_id": None, "items": [item]}  # fmt: skip
    return SelectionChange(None, json.dumps(payload))


def test_click_payload_becomes_a_point_on_the_right_lane():
    click = click_from_items(selection("/world/camera/image", [12.5, 30.0, 0.0]).payload.items)
    assert (click.x, click.y, click.branch) == (12.5, 30.0, "main")
    click = click_from_items(selection("/branches/tiny-b/world/camera/image", [1.0, 2.0, 0.0]).payload.items)
    assert click.branch == "tiny-b"
    assert branch_of("/branches/b1\\/tiny/world/camera/image") == "b1/tiny"  # rerun escapes '/' in a part
    assert click_from_items(selection("/actions/executed", [1.0, 2.0]).payload.items) is None  # a plot
    assert click_from_items(selection("", None, kind="view").payload.items) is None  # a whole view
    assert click_from_items(selection("/world/camera/image", None).payload.items) is None  # no position


def _record(step: int = 3) -> StepRecord:
    obs = Observation(images={"main": np.zeros((100, 200, 3), np.uint8)}, instruction="pick the cube")
    box = SpatialAnswer('{"label": "cube", "bbox_2d": [10, 20, 30, 40]}', [Box(10, 20, 30, 40, "cube")])
    ps = PolicyStep(policy="A", instruction="pick the cube", spatial=box, executed=np.zeros(7))
    return StepRecord(step=step, observation=obs, policies={"A": ps}, executed_action=np.zeros(7))


def test_click_reports_distance_and_inside_and_is_kept_as_an_edit():
    tab = Workbench(AppConfig()).new_tab()
    tab.records = [_record()]
    click = click_from_items(selection("/world/camera/A/spatial/boxes", [26.0, 28.0, 0.0]).payload.items)
    tab.mark_point(click.x, click.y, branch=click.branch)
    assert tab.point_report() == {"A": {"distance": pytest.approx(6.32, abs=0.01), "inside": True}}
    assert "6.3 px" in point_markdown(tab) and "inside its box" in point_markdown(tab)
    assert tab.edits[-1]["kind"] == "user_point" and tab.edits[-1]["x"] == 26.0


@pytest.fixture(scope="module")
def workbench(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("clicks")
    return Workbench(AppConfig(sessions_dir=root / "sessions", demo_checkpoint=root / "none",
                               checkpoint_dirs=[root], camera_width=160, camera_height=120))  # fmt: skip


@pytest.mark.slow
def test_saved_click_is_drawn_and_reported_on_replay(workbench):
    from workbench.viz.rerun_log import rrd_entities_by_step

    tab = workbench.new_tab()
    tab.load(SourceSpec(task="tabletop_pick"), [""], PolicySettings(num_ddim_steps=2))
    tab.step(1)
    tab.mark_point(40.0, 50.0)
    tab.step(1)  # the dot marks step 1 only: it is cleared at step 2
    path = app_sessions.save(tab)
    edits = json.loads((path / "session.json").read_text())["edits"]
    clicks = [(e["step"], e["branch"], e["x"], e["y"]) for e in edits if e["kind"] == "user_point"]
    assert clicks == [(1, "main", 40.0, 50.0)]  # saved in session.json
    assert "world/camera/random-tiny/user_point" in rrd_entities_by_step(path / "recording.rrd")[1]
    assert (
        "world/camera/random-tiny/user_point" in rrd_entities_by_step(path / "recording.rrd", clears=True)[2]
    )
    other = workbench.new_tab()
    app_sessions.replay(other, path.name)
    assert other.runner is None and other.replayed == path.name
    assert (other.user_point.x, other.user_point.y, other.user_point.step) == (40.0, 50.0, 1)
    assert "Your point: (40, 50) at step 1" in point_markdown(other)
    with pytest.raises(AppError, match="outside the 160x120"):
        other.mark_point(500.0, 5.0)


@pytest.mark.slow
def test_probe_cancel_and_open_a_failed_row(workbench):
    tab = workbench.new_tab()
    with pytest.raises(AppError, match="No checkpoint B"):
        tab.probe(ProbeSpec(task="tabletop_pick", objects=[""], instructions=[""], seeds=[0]), "B")
    spec = ProbeSpec(task="tabletop_pick", objects=[""], instructions=[""], seeds=[0, 1, 2, 3], max_steps=2,
                     num_ddim_steps=2, width=160, height=120)  # fmt: skip
    result = tab.probe(spec, "A", progress=lambda done, total, row: tab.cancel_probe())
    assert result.stopped and len(result.rows) == 1 and len(tab.probe_rows) == 1  # cancelled after one
    failed = [i for i, r in enumerate(tab.probe_rows) if not r["success"]]
    assert failed, "a random policy should not succeed in 2 steps"
    name = app_sessions.open_probe_row(tab, tab.probe_rows, failed[0])
    assert tab.replayed == name and tab.runner is None
    assert [r.step for r in tab.records] == [0, 1, 2] and len(tab.viewer_bytes()) > 1000
    # the replay carries the probed checkpoint's name, not the probe's slot name "policy"
    assert tab.policy_names == ["random-tiny"] and set(tab.records[0].policies) == {"random-tiny"}
    with pytest.raises(AppError, match="No probe row 7"):
        app_sessions.open_probe_row(tab, tab.probe_rows, 7)


def _ab_records() -> list[StepRecord]:
    out = []
    for s in range(3):
        obs = Observation(images={"main": np.zeros((8, 8, 3), np.uint8)}, instruction="pick")
        pol = {
            n: PolicyStep(n, "pick", chunk=ActionChunk(np.zeros((4, 7)), np.full((4, 7), base + s)))
            for n, base in (("A", 1.0), ("B", 10.0))
        }
        out.append(StepRecord(step=s, observation=obs, policies=pol, executed_action=np.full(7, float(s))))
    return out


def test_action_figure_shows_both_policies():
    fig = plots.action_figure(_ab_records())
    dx = {t.name: t for t in fig.data if (t.yaxis or "y") == "y"}
    assert list(dx["predicted (A)"].y) == [1.0, 2.0, 3.0] and list(dx["predicted (B)"].y) == [
        10.0,
        11.0,
        12.0,
    ]
    assert (
        list(dx["predicted chunk (B)"].x) == [2, 3, 4, 5] and list(dx["predicted chunk (B)"].y) == [12.0] * 4
    )
    assert list(dx["executed (A drives)"].y) == [0.0, 1.0, 2.0]  # shared: A's ensembled action is executed


def test_demo_flag_and_a_missing_demo_session(tmp_path):
    cfg = app.parse_args(["--demo", "sample"])
    assert cfg.demo_session == "sample"
    bad = AppConfig(sessions_dir=tmp_path, data_dirs=[tmp_path], demo_session="nope", port=7990)
    with pytest.raises(AppError, match="nope"):
        app.launch(bad, block=False)
    assert app.main(["--demo", "nope", "--sessions-dir", str(tmp_path), "--data-dirs", str(tmp_path)]) == 2


def test_sample_session_ships_and_replays_with_no_model():
    sample = REPO / "sessions" / "sample"
    assert sum(f.stat().st_size for f in sample.rglob("*") if f.is_file()) < 3_000_000
    wb = Workbench(AppConfig(checkpoint_dirs=[sample.parent / "no-checkpoints"]))
    tab = wb.new_tab()
    steps = list(app_sessions.play(tab, "sample"))
    assert steps[-1] == len(tab.records) >= 10 and wb._policies == {}  # no model loaded
    assert tab.user_point is not None and len(tab.policy_names) == 2


def _component(blocks, elem_id: str) -> dict | None:
    return next(
        (c for c in blocks.config["components"] if c.get("props", {}).get("elem_id") == elem_id), None
    )


def test_app_opens_on_the_demo_checkpoint_when_it_exists(tmp_path):
    from workbench.policy import ST4VLAPolicy, tiny_config

    ckpts = tmp_path / "ckpts"
    ST4VLAPolicy.from_config(tiny_config()).save(ckpts / "st4vla-tiny")
    ST4VLAPolicy.from_config(tiny_config()).save(ckpts / "another")
    with_demo = app.build_app(AppConfig(checkpoint_dirs=[ckpts], demo_checkpoint=ckpts / "st4vla-tiny"))
    assert _component(with_demo, "random-weights-warning") is None  # no warning
    assert _component(with_demo, "ckpt-a")["props"]["value"] == str((ckpts / "st4vla-tiny").resolve())
    without = app.build_app(AppConfig(checkpoint_dirs=[ckpts], demo_checkpoint=tmp_path / "missing"))
    assert "A starts on another" in _component(without, "random-weights-warning")["props"]["value"]


def test_simpler_choice_is_offered_when_the_probe_says_it_runs(monkeypatch, tmp_path):
    monkeypatch.setattr(Workbench, "simpler_status", lambda self: (True, ""))
    blocks = app.build_app(AppConfig(checkpoint_dirs=[tmp_path]))
    kinds = [v for _, v in _component(blocks, "source-kind")["props"]["choices"]]
    assert kinds == ["sim", "episode", "simpler"]
    assert _component(blocks, "simpler-status")["props"]["value"] == "<small>SimplerEnv: available.</small>"


@pytest.mark.slow
def test_recorded_episode_plots_predicted_against_recorded(workbench):
    tab = workbench.new_tab()
    sample = REPO / "assets" / "episodes" / "sample"
    workbench.config.data_dirs.append(sample.parent.resolve())
    tab.load(SourceSpec(kind="episode", path=str(sample)), [""], PolicySettings(num_ddim_steps=2))
    tab.step(2)
    fig = plots.action_figure(tab.records)
    recorded = next(t for t in fig.data if t.name == "recorded" and (t.yaxis or "y") == "y")
    assert list(recorded.x) == [0, 1, 2]
    assert np.allclose(recorded.y, [r.recorded_action[0] for r in tab.records])
    assert any(t.name == "predicted chunk (random-tiny)" for t in fig.data)
    assert tab.steps_left() == len(tab.runner.lanes[0].source.observations) - 1 - 2
