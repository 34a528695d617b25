"""Session store: round trip, crash safety (SIGKILL mid-run), path safety, model-free replay, MP4."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import expected_entities, make_record

from workbench.sessions import SessionError, SessionStore, load_session, replay_to_rerun, session_dir
from workbench.viz.rerun_log import RerunLogger, rrd_entities_by_step
from workbench.viz.video import read_frames

REPO = Path(__file__).resolve().parents[1]


def _assert_same(a, b):
    assert a.step == b.step and a.branch == b.branch
    np.testing.assert_array_equal(a.observation.images["main"], b.observation.images["main"])
    assert a.observation.ground_truth == b.observation.ground_truth
    np.testing.assert_array_equal(a.executed_action, b.executed_action)
    np.testing.assert_array_equal(
        a.observation.cameras["main"].intrinsic, b.observation.cameras["main"].intrinsic
    )
    for name, pa in a.policies.items():
        pb = b.policies[name]
        assert pa.spatial == pb.spatial and pa.metrics == pb.metrics and pa.instruction == pb.instruction
        np.testing.assert_array_equal(pa.chunk.actions, pb.chunk.actions)
        assert pa.chunk.actions.dtype == pb.chunk.actions.dtype
        assert pa.chunk.ee_path_2d == pb.chunk.ee_path_2d
        np.testing.assert_array_equal(pa.chunk.attention["main"], pb.chunk.attention["main"])


def test_round_trip_is_exact(tmp_path):
    store = SessionStore(tmp_path)
    w = store.create("s1", {"source": "synthetic", "slots": ["A", "B"]})
    records = [make_record(s) for s in range(3)]
    for r in records:
        w.write(r)
    w.note({"kind": "instruction", "step": 2, "slot": "A", "text": "grab the carrot"})
    w.close()
    s = store.open("s1")
    assert s.notes == [] and len(s.records) == 3 and store.list() == ["s1"]
    assert s.meta["loaded"]["source"] == "synthetic" and s.meta["closed"] is True
    assert s.edits == [{"kind": "instruction", "step": 2, "slot": "A", "text": "grab the carrot"}]
    for a, b in zip(records, s.records, strict=True):
        _assert_same(a, b)
    assert s.records[0].info == {"success": False, "grasped": False, "dist": pytest.approx(0.25)}
    with pytest.raises(SessionError, match="already exists"):
        store.create("s1")


@pytest.mark.parametrize("bad", ["../escape", "a/b", "..", "", "/abs", ".hidden", "x" * 200])
def test_paths_stay_inside_the_root(tmp_path, bad):
    with pytest.raises(SessionError):
        session_dir(tmp_path, bad)


def test_torn_last_line_is_ignored_with_a_note(tmp_path):
    w = SessionStore(tmp_path).create("torn")
    for r in [make_record(s, policies=("A",)) for s in range(2)]:
        w.write(r)
    w.close()
    steps = tmp_path / "torn" / "steps.jsonl"
    with open(steps, "a") as f:
        f.write('{"step": 2, "branch": "ma')  # the process died in the middle of a line
    s = load_session(tmp_path / "torn")
    assert [r.step for r in s.records] == [0, 1]
    assert len(s.notes) == 1 and "incomplete" in s.notes[0]
    # a damaged line in the middle is not silently skipped
    lines = steps.read_text().split("\n")
    lines[0] = lines[0][:50]
    steps.write_text("\n".join(lines))
    with pytest.raises(SessionError, match="line 1 is corrupt"):
        load_session(tmp_path / "torn")


def test_lost_image_ends_the_session_there_and_reask_keeps_the_last_answer(tmp_path):
    w = SessionStore(tmp_path).create("img")
    records = [make_record(s, policies=("A",)) for s in range(3)]
    redo = make_record(1, policies=("A",), seed=99)  # the runner re-asked step 1
    for r in [records[0], records[1], redo, records[2]]:
        w.write(r)
    w.close()
    s = load_session(tmp_path / "img")
    steps = s.branch("main")
    assert [r.step for r in steps] == [0, 1, 2] and s.branches == ["main"]
    np.testing.assert_array_equal(steps[1].policies["A"].chunk.actions, redo.policies["A"].chunk.actions)
    (tmp_path / "img" / "images" / "main" / "000002_main.png").unlink()
    s = load_session(tmp_path / "img")
    assert [r.step for r in s.records] == [0, 1, 1] and "lost its image" in s.notes[0]


def test_sigkill_mid_run_keeps_every_complete_step(tmp_path):
    """A writer process is killed with SIGKILL while writing; reload gives all steps it finished."""
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(REPO / "tests")!r})
        from helpers import make_record
        from workbench.sessions import SessionStore
        w = SessionStore({str(tmp_path)!r}).create("crash")
        for s in range(10_000):
            w.write(make_record(s, policies=("A",)))
            print(s, flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO)
    done = []
    deadline = time.time() + 60
    while len(done) < 6 and time.time() < deadline:
        done.append(int(proc.stdout.readline()))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(done) >= 6, "the writer did not get going"
    s = load_session(tmp_path / "crash")
    steps = [r.step for r in s.records]
    # every step the writer reported finished is there, in order, and nothing is duplicated
    assert steps == list(range(len(steps))) and len(steps) >= len(done)
    assert json.loads((tmp_path / "crash" / "session.json").read_text())["closed"] is False


def _rrd_verify(path: Path) -> subprocess.CompletedProcess:
    """Rerun's own checker, the CLI installed with rerun-sdk in this environment."""
    cli = [sys.executable, "-c", "from rerun_cli.__main__ import main; main()"]
    return subprocess.run([*cli, "rrd", "verify", str(path)], capture_output=True, text=True, timeout=120)


def test_sigkilled_recording_is_repaired_on_load_and_verifies(tmp_path):
    """A process records steps to a session and its .rrd and is SIGKILLed mid-run: the .rrd then has no
    footer (`rerun rrd verify` refuses it); loading the session repairs it, it verifies, and it holds
    every step the writer finished."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO / "tests")!r})
        from helpers import make_record
        from workbench.sessions import SessionStore
        from workbench.viz.rerun_log import RerunLogger
        w = SessionStore({str(tmp_path)!r}).create("crash")
        log = RerunLogger(rrd_path=w.rrd_path, stream=False)
        for s in range(10_000):
            r = make_record(s, policies=("A",))
            w.write(r)
            log.write(r)
            print(s, flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO)
    done = []
    deadline = time.time() + 60
    while len(done) < 5 and time.time() < deadline:
        done.append(int(proc.stdout.readline()))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(done) >= 5, "the writer did not get going"
    rrd = tmp_path / "crash" / "recording.rrd"
    before = _rrd_verify(rrd)
    assert before.returncode != 0 or "fail" in (before.stdout + before.stderr).lower()
    assert "footer" in (before.stdout + before.stderr).lower()
    s = load_session(tmp_path / "crash")
    assert any("recording.rrd had no footer" in n for n in s.notes), s.notes
    after = _rrd_verify(rrd)
    assert after.returncode == 0 and "verified without error" in (after.stdout + after.stderr), after
    steps = set(rrd_entities_by_step(rrd))
    assert set(done) <= steps <= {r.step for r in s.records}
    assert load_session(tmp_path / "crash").notes == []  # repaired once; nothing left to say


def test_a_recording_being_written_is_not_touched(tmp_path):
    w = SessionStore(tmp_path).create("live")
    log = RerunLogger(rrd_path=w.rrd_path, stream=False)
    r = make_record(0)
    w.write(r)
    log.write(r)
    size = w.rrd_path.stat().st_size
    s = load_session(tmp_path / "live")
    assert any("still being written" in n for n in s.notes) and w.rrd_path.stat().st_size == size
    with pytest.raises(ValueError, match="being written by another Rerun logger"):
        RerunLogger(rrd_path=w.rrd_path, stream=False)
    log.close()
    w.close()
    assert load_session(tmp_path / "live").notes == []  # closed: it has its footer
    assert _rrd_verify(w.rrd_path).returncode == 0


def test_replay_without_a_model_gives_the_same_entities(tmp_path):
    w = SessionStore(tmp_path).create("rp")
    live = RerunLogger(rrd_path=w.rrd_path, stream=False)
    records = [make_record(s) for s in range(3)] + [make_record(2, branch="b1")]
    for r in records:
        w.write(r)
        live.write(r)
    live.close()
    w.close()
    s = load_session(tmp_path / "rp")
    replay_to_rerun(s, rrd_path=tmp_path / "replay.rrd")
    original, replayed = rrd_entities_by_step(w.rrd_path), rrd_entities_by_step(tmp_path / "replay.rrd")
    # replay adds the edit log only; every data entity matches step by step
    assert {k: v - {"log/events"} for k, v in replayed.items()} == original
    assert original[2] == expected_entities(records[2]) | expected_entities(records[3])


def test_export_mp4_from_a_session(tmp_path):
    from workbench.sessions import export_mp4

    w = SessionStore(tmp_path).create("vid")
    for r in [make_record(s, policies=("A",)) for s in range(4)]:
        w.write(r)
    w.close()
    out = export_mp4(load_session(tmp_path / "vid"), tmp_path / "vid.mp4", fps=4)
    assert len(read_frames(out)) == 4
    with pytest.raises(SessionError, match="no steps on branch"):
        export_mp4(load_session(tmp_path / "vid"), tmp_path / "x.mp4", branch="nope")


def test_the_shipped_sample_session_reads_its_older_ground_truth_label():
    """sessions/sample was written when the object to move was ground truth's "source_label"."""
    assert '"source_label"' in (REPO / "sessions" / "sample" / "steps.jsonl").read_text()
    s = load_session(REPO / "sessions" / "sample")
    gt = s.records[0].observation.ground_truth
    assert gt.object_label and gt.object_label in {b.label for b in gt.objects}
    assert gt.object_label in s.records[0].observation.instruction


@pytest.mark.slow
def test_sample_session_is_written_by_a_real_run(tmp_path):
    from workbench.sample import write_sample_session

    path = write_sample_session(tmp_path, "sample", steps=2)
    s = load_session(path)
    assert [r.step for r in s.records] == [0, 1, 2] and s.meta["closed"] and s.notes == []
    by_step = rrd_entities_by_step(path / "recording.rrd")
    assert all(expected_entities(r) <= by_step[r.step] for r in s.records)
