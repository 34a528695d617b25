"""The probe sweep and the Sessions panel's core, with the real runner, sim and a tiny random policy."""

from __future__ import annotations

import pytest
import torch

from workbench.appcore import AppConfig, AppError
from workbench.appcore import sessions as app_sessions
from workbench.appcore.core import Workbench
from workbench.appcore.tab import PolicySettings, SourceSpec
from workbench.probe import ProbeError, ProbeSpec, run_probe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workbench(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("probe")
    return Workbench(
        AppConfig(sessions_dir=root / "sessions", demo_checkpoint=root / "none", checkpoint_dirs=[root])
    )


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
    tab = workbench.new_tab()
    app_sessions.replay(tab, result.rows[0].session)  # a row opens with no model
    assert tab.runner is None and len(tab.records) == result.rows[0].steps + 1
    assert len(tab.viewer_bytes()) > 1000
    with pytest.raises(ProbeError):
        ProbeSpec(task="tabletop_pick", objects=[""], instructions=[""], seeds=[])


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
