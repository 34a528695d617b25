"""What the viewer draws is what the status names: branch, re-ask with the box, reset with the page's
source settings, pause at the step on screen, outcomes in words (no browser; real sim, tiny policy)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from helpers import CHECKPOINTS

from panels.state import AppConfig
from panels.state.core import Workbench
from panels.state.specs import PolicySettings, SourceSpec
from panels.state.summary import outcome, status_markdown
from workbench.records import Observation, PolicyStep, StepRecord
from workbench.viz import blueprints
from workbench.viz.rerun_log import rrd_entities_by_step

pytestmark = pytest.mark.slow
FAST = PolicySettings(num_ddim_steps=2)


@pytest.fixture
def tab(tmp_path):
    torch.set_num_threads(1)
    wb = Workbench(AppConfig(sessions_dir=tmp_path / "s", demo_checkpoint=tmp_path / "none",
                             checkpoint_dirs=[tmp_path]))  # fmt: skip
    tab = wb.new_tab()
    tab.load(SourceSpec(kind="sim", task="tabletop_pick", seed=0), [""], FAST)
    tab.take_notes()
    yield tab
    tab.close()


def test_after_a_branch_the_viewer_draws_the_branch(tab, tmp_path):
    import rerun as rr

    rrd = tmp_path / "view.rrd"
    rr.set_sinks(rr.FileSink(str(rrd)), tab.logger._stream, recording=tab.logger.rec)  # keep a copy on disk
    tab.step(3)
    tab.branch("yellow", "move the yellow cube near the red can")
    tab.step(2)
    record = tab.last_record
    assert (record.branch, record.step) == ("yellow", 5)
    ((title, origin),) = blueprints.camera_views(tab.blueprint_for())
    assert origin == "/branches/yellow/world/camera" and "branch yellow" in title
    status = status_markdown(tab)
    assert "branch `yellow`, from `main` at step 3" in status and "move the yellow cube" in status
    assert "[random-tiny · branch yellow]" in status  # the page names what the viewer draws
    # side by side with one policy: the branch beside the line it came from, each titled
    tab.send_blueprint("side by side")
    views = blueprints.camera_views(tab.blueprint_for())
    assert [o for _, o in views] == ["/branches/yellow/world/camera", "/world/camera"]
    tab.logger.rec.flush()
    steps = rrd_entities_by_step(rrd)
    answer = "branches/yellow/world/camera/random-tiny/rollout"
    assert all(answer in steps[k] for k in range(6))  # the shared path 0..2 was logged under the branch
    assert "world/camera/random-tiny/rollout" not in steps.get(5, set())  # main never reached step 5


def test_reask_asks_what_the_box_says(tab):
    tab.step(1)
    record, warnings = tab.reask("  pick up   the red can ")
    assert warnings == [] and record.step == 1
    assert tab.current_instruction() == "pick up the red can"
    assert all(ps.instruction == "pick up the red can" for ps in tab.last_record.policies.values())
    assert tab.edits[-1] == {"kind": "reask", "step": 1, "instruction": "pick up the red can"}
    tab.reask("")  # an empty box re-asks the current instruction
    assert tab.current_instruction() == "pick up the red can"


def test_reset_applies_object_split_and_seed_or_asks_for_load(tab):
    from workbench.sim import catalog

    unseen = next(o.name for o in catalog.objects(split="unseen") if getattr(o, "kind", "object") != "target")
    tab.step(2)
    before = tab.logger.recording_id
    message = tab.reset_source(
        SourceSpec(kind="sim", task="tabletop_pick", seed=4, split="unseen", object=unseen)
    )
    assert message == ""
    record = tab.last_record
    assert record.step == 0 and tab.source.seed == 4
    assert record.observation.ground_truth.object_label == unseen
    assert unseen in record.observation.instruction
    # a new episode is a new recording: the old episode's steps 1..2 cannot show at the viewer's cursor
    assert tab.logger.recording_id != before and tab.runner.sinks == [tab.logger]
    other_task = next(t for t in Workbench(tab.config).list_tasks() if t != "tabletop_pick")
    message = tab.reset_source(SourceSpec(kind="sim", task=other_task))
    assert "press **Load**" in message and other_task in message
    assert tab.source.task == "tabletop_pick"  # nothing changed


def test_pause_stops_at_the_step_the_page_shows(tab):
    """A page that shows steps slowly: the run waits for its echo, so Pause stops where it is."""
    tab.mark_shown(0)  # a page is attached (it echoes what it shows)
    shown_step = {}
    stop_at = 3

    def page(seq_step):
        seq, step = seq_step
        shown_step[seq] = step
        if step == stop_at:
            tab.pause()  # the user sees step 3 and presses Pause ...
        tab.mark_shown(seq)  # ... while the page echoes it

    for _done, _planned in tab.run(20):
        page((tab.sent, tab.last_record.step))
    assert tab.last_record.step == stop_at and tab.paused


def test_an_unpaced_run_is_not_held_back(tab):
    """No page ever echoes (an API client): the run goes on after one short wait."""
    seen = [tab.last_record.step for _ in tab.run(4, first_echo=0.01)]
    assert seen == [1, 2, 3, 4]


def test_pause_from_another_thread_while_waiting_for_the_page(tab):
    tab.mark_shown(0)
    run = tab.run(10, page_wait=60)
    next(run)  # step 1 streamed; the page never echoes it
    threading.Timer(0.2, tab.pause).start()
    assert list(run) == [] and tab.last_record.step == 1  # Pause ends the wait, no step beyond


def _record(step, *, success=False, truncated=False, terminated=False, text="[]"):
    from workbench.spatial import SpatialAnswer

    obs = Observation(images={"cam": __import__("numpy").zeros((8, 8, 3), "uint8")}, instruction="pick")
    ps = PolicyStep("vanilla-tiny", "pick", SpatialAnswer(text, [], (8, 8), [] if text else ["empty answer"]))
    return StepRecord(step, obs, {"vanilla-tiny": ps}, terminated=terminated, truncated=truncated,
                      info={"success": success})  # fmt: skip


def test_outcomes_are_words():
    assert outcome(_record(3)) == ""
    assert outcome(_record(3, success=True, terminated=True)) == "✅ success"
    assert outcome(_record(80, truncated=True)) == "❌ failed: time limit"
    assert outcome(_record(9, terminated=True)) == "❌ failed"
    assert outcome(_record(9, truncated=True), recorded=True) == "⏹ end of the recording"


def test_a_model_without_spatial_answers_says_so(tmp_path):

    vanilla = CHECKPOINTS / "vanilla-tiny"
    if not vanilla.is_dir():
        pytest.skip("the bundled vanilla-tiny checkpoint is not here")
    wb = Workbench(AppConfig(sessions_dir=tmp_path / "s", checkpoint_dirs=[vanilla.parent]))
    tab = wb.new_tab()
    tab.load(SourceSpec(kind="sim", task="tabletop_pick", seed=0), [str(vanilla)], FAST)
    try:
        assert tab.writes_no_answer("vanilla-tiny")
        assert tab.runner.slots[0].spatial_query is None  # not asked: it would write nothing readable
        tab.step(1)
        assert tab.records[-1].policies["vanilla-tiny"].spatial is None
        status = status_markdown(tab)
        assert (
            "not asked for a spatial answer (trained without one" in status and "could not read" not in status
        )
    finally:
        tab.close()


def test_names_are_readable(tab):
    from panels.source import checkpoint_choices
    from panels.state.sessions import session_name

    assert checkpoint_choices(["/a/b/st4vla-tiny", "/x/one/tiny", "/x/two/tiny"]) == [
        ("st4vla-tiny", "/a/b/st4vla-tiny"), ("tiny (one)", "/x/one/tiny"), ("tiny (two)", "/x/two/tiny"),
    ]  # fmt: skip
    name = session_name(tab, when=0.0)
    assert name.startswith("random-tiny-tabletop_pick-seed0-1970") and "/" not in name
    # independent A/B lanes are named after their policy: a view title does not say it twice
    assert blueprints.view_name("st4vla-tiny", "st4vla-tiny") == "st4vla-tiny"
    assert blueprints.view_name("st4vla-tiny", "b1/st4vla-tiny") == "st4vla-tiny · branch b1"
    tabs = blueprints.side_by_side(["A", "B"], branches=["A", "B"]).root_container.contents[1]
    titles = [v.name for v in tabs.contents]
    assert "actions · A" in titles and "actions · B" in titles


def test_attention_switch_draws_the_current_step_at_once(tab, tmp_path):
    import rerun as rr

    rrd = tmp_path / "attention.rrd"
    rr.set_sinks(rr.FileSink(str(rrd)), tab.logger._stream, recording=tab.logger.rec)
    tab.step(1)
    tab.set_attention(True)
    tab.logger.rec.flush()
    assert "world/camera/random-tiny/attention" in rrd_entities_by_step(rrd)[1]


def _bundled(name):

    path = CHECKPOINTS / name
    if not path.is_dir():
        pytest.skip(f"the bundled {name} checkpoint is not here")
    return path


def test_counterfactual_box_changes_the_chunk_and_its_own_answer_does_not(tmp_path):
    import rerun as rr

    from panels.state import AppError
    from panels.state.counterfactual import run_counterfactual

    st4vla = _bundled("st4vla-tiny")
    wb = Workbench(AppConfig(sessions_dir=tmp_path / "s", checkpoint_dirs=[st4vla.parent]))
    tab = wb.new_tab()
    tab.load(SourceSpec(kind="sim", task="tabletop_pick", seed=0), [str(st4vla)], FAST)
    try:
        rrd = tmp_path / "cf.rrd"
        rr.set_sinks(rr.FileSink(str(rrd)), tab.logger._stream, recording=tab.logger.rec)
        own = next(g for g in tab.last_record.policies["st4vla-tiny"].spatial.geometry if hasattr(g, "x2"))
        same = run_counterfactual(tab, f"{own.x1}, {own.y1}, {own.x2}, {own.y2}")
        assert np.allclose(same.edited_first, same.original_first, atol=1e-5)  # only the answer differs
        far = run_counterfactual(tab, "5, 5, 40, 40")
        assert not np.allclose(far.edited_first, far.original_first, atol=1e-4)
        assert "first action moved by" in far.markdown() and tab.edits[-1]["kind"] == "counterfactual"
        tab.logger.rec.flush()
        assert "world/camera/st4vla-tiny/counterfactual/box" in rrd_entities_by_step(rrd)[0]
        tab.step(1)  # the edit was about one frame: cleared at the next
        tab.logger.rec.flush()
        assert "world/camera/st4vla-tiny/counterfactual/box" in rrd_entities_by_step(rrd, clears=True)[1]
        with pytest.raises(AppError, match="inside the"):
            run_counterfactual(tab, "0, 0, 9999, 10")
        with pytest.raises(AppError, match="four numbers"):
            run_counterfactual(tab, "left half")
    finally:
        tab.close()
    vanilla = _bundled("vanilla-tiny")
    tab = Workbench(AppConfig(sessions_dir=tmp_path / "s", checkpoint_dirs=[vanilla.parent])).new_tab()
    tab.load(SourceSpec(kind="sim", task="tabletop_pick", seed=0), [str(vanilla)], FAST)
    try:
        with pytest.raises(AppError, match="does not act on its own spatial answer"):
            run_counterfactual(tab, "5, 5, 40, 40")
    finally:
        tab.close()


def test_layers_can_be_switched_off(tab):
    tab.set_layers(["answer"])  # ground truth and rollout off
    view = tab.blueprint_for().root_container.contents[0]
    text = " ".join(view.contents)
    assert "- /world/camera/ground_truth/**" in text and "- /world/camera/random-tiny/rollout" in text
    assert "- /world/camera/random-tiny/spatial/**" not in text
    from panels.state import AppError

    with pytest.raises(AppError, match="Unknown layers"):
        tab.set_layers(["clouds"])
