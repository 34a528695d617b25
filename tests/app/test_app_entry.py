"""The app's entry point and where its folders come from: flags, then --home / $WORKBENCH_HOME, then the
checkout the app runs from (when it holds assets/), then the current folder; `workbench app` reaches the
app through its entry point, not through a file of the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from panels.app import parse_args
from panels.state import AppConfig
from panels.state.config import DEMO_NAME, HOME_ENV, default_home
from workbench import cli

REPO = Path(__file__).resolve().parents[2]


def test_folders_default_to_the_checkout_when_it_has_assets(monkeypatch):
    monkeypatch.delenv(HOME_ENV, raising=False)
    assert default_home() == REPO
    config = parse_args([])
    assert config.checkpoint_dirs == [REPO / "assets" / "checkpoints"]
    assert config.demo_checkpoint == REPO / "assets" / "checkpoints" / DEMO_NAME
    assert (
        config.data_dirs == [REPO / "assets", REPO / "sessions"] and config.sessions_dir == REPO / "sessions"
    )
    assert AppConfig().checkpoint_dirs == config.checkpoint_dirs


def test_home_flag_env_and_explicit_flags(monkeypatch, tmp_path):
    home, other = tmp_path / "home", tmp_path / "other"
    config = parse_args(["--home", str(home), "--sessions-dir", str(other)])
    assert config.checkpoint_dirs == [home / "assets" / "checkpoints"]
    assert config.demo_checkpoint == home / "assets" / "checkpoints" / DEMO_NAME
    assert config.data_dirs == [home / "assets", home / "sessions"]
    assert config.sessions_dir == other  # a flag given wins over --home
    monkeypatch.setenv(HOME_ENV, str(home))
    assert default_home() == home and AppConfig().sessions_dir == home / "sessions"
    config = parse_args(["--demo-checkpoint", str(other / "ckpt"), "--data-dirs", str(other)])
    assert config.demo_checkpoint == other / "ckpt" and config.data_dirs == [other]
    assert config.checkpoint_dirs == [home / "assets" / "checkpoints"]


def test_workbench_app_reaches_the_app_through_its_entry_point(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["app", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: workbench app") and "--home" in out and "--demo-checkpoint" in out
