"""Recorded datasets in the app's core: any episode by "#index", repo ids from the local LeRobot cache,
the episode list for a picker, and a recording played to its end whatever --max-steps says."""

from __future__ import annotations

import shutil

import helpers
import pytest
from helpers import expected_entities, rrd_columns

from panels.state import AppConfig, AppError
from panels.state.core import RANDOM_POLICY, Workbench
from panels.state.specs import PolicySettings, SourceSpec
from workbench.episodes.lerobot import split_episode

FIXTURES = helpers.FIXTURES / "lerobot"


@pytest.fixture
def wb(tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / "v30_av1", data / "v30_av1")
    home = tmp_path / "home"
    shutil.copytree(FIXTURES / "v30_png", home / "someone" / "tiny")
    monkeypatch.setenv("HF_LEROBOT_HOME", str(home))
    return Workbench(
        AppConfig(
            data_dirs=[data], sessions_dir=tmp_path / "sessions", demo_checkpoint=tmp_path / "none",
            checkpoint_dirs=[tmp_path], max_steps=3,
        )
    )  # fmt: skip


def test_split_episode():
    assert split_episode("lerobot/pusht#12") == ("lerobot/pusht", 12)
    assert split_episode("/data/ds") == ("/data/ds", 0)
    assert split_episode("/data/a#b") == ("/data/a#b", 0)
    assert split_episode("#3") == ("#3", 0)


def test_recordings_list_cached_repo_ids_and_episodes(wb):
    recordings = wb.list_recordings()
    assert any(r.endswith("v30_av1") for r in recordings) and "someone/tiny" in recordings
    assert wb.list_episodes("v30_av1") == [
        (0, "pick up the red cube", 7),
        (1, "put the cube in the bowl", 5),
        (2, "pick up the red cube", 9),
    ]
    assert wb.list_episodes("someone/tiny#1")[1] == (1, "put the cube in the bowl", 5)


def test_make_source_opens_any_episode_by_folder_or_repo_id(wb):
    src = wb.make_source(SourceSpec(kind="episode", path="v30_av1#2"))
    assert len(src.observations) == 9 and src.state_names[0] == "x"
    src = wb.make_source(SourceSpec(kind="episode", path="someone/tiny#1"))
    assert src.observations[0].instruction == "put the cube in the bowl" and len(src.observations) == 5
    with pytest.raises(AppError, match="episode 5 does not exist"):
        wb.make_source(SourceSpec(kind="episode", path="v30_av1#5"))
    with pytest.raises(AppError, match="local LeRobot cache"):
        wb.make_source(SourceSpec(kind="episode", path="someone/absent"))


def test_a_recording_plays_to_its_end_past_max_steps(wb):
    tab = wb.new_tab()
    tab.load(SourceSpec(kind="episode", path="v30_av1#2"), [RANDOM_POLICY], PolicySettings(num_ddim_steps=1))
    assert wb.config.max_steps == 3 and tab.steps_left() == 8
    done = list(tab.run())
    assert done[-1] == (8, 8) and tab.done
    assert tab.records[-1].observation.state is not None


def test_episode_picker_lists_the_dataset_and_names_the_choice(wb):
    from panels import episodes

    labels, index = episodes.choices(wb, "someone/tiny#2")
    assert labels[1] == ("#1 · put the cube in the bowl · 5 frames", 1) and index == 2
    assert episodes.choices(wb, "not/there") == ([], None)
    assert episodes.choices(wb, None) == ([], None)


def test_the_page_has_the_episode_picker(wb):
    from panels import app

    blocks = app.build_app(wb.config)
    ids = [c.get("props", {}).get("elem_id") for c in blocks.config["components"]]
    assert "episode-pick" in ids


def test_state_is_logged_per_dimension_with_the_datasets_names(tmp_path):
    from workbench.records import StepRecord
    from workbench.sources import EpisodeSource
    from workbench.viz.rerun_log import RerunLogger, rrd_entities_by_step

    src = EpisodeSource.from_lerobot(FIXTURES / "v30_png", episode=1)
    rrd = tmp_path / "r.rrd"
    logger = RerunLogger(rrd_path=rrd, stream=False, state_names=src.state_names)
    records = [
        StepRecord(step=t, observation=o, recorded_action=a)
        for t, (o, a) in enumerate(zip(src.observations, src.actions, strict=True))
    ]
    for r in records:
        logger.write(r)
    logger.close()
    by_step = rrd_entities_by_step(rrd)
    assert all("state" in expected_entities(r) and expected_entities(r) <= by_step[r.step] for r in records)
    assert logger._series["state"] == ("x", "y", "z", "roll", "pitch", "yaw", "gripper", "pad")


def test_every_camera_of_a_recording_is_logged_and_has_a_view(wb, tmp_path):
    from workbench.viz.rerun_log import rrd_entities_by_step

    tab = wb.new_tab()
    tab.load(SourceSpec(kind="episode", path="v30_av1#1"), [RANDOM_POLICY], PolicySettings(num_ddim_steps=1))
    tab.step(1)
    record = tab.records[-1]
    assert list(record.observation.images) == ["front", "wrist"]
    origins = [v.origin for v in _views(tab.blueprint_for())]
    assert "/world/cameras/wrist" in [str(o) for o in origins]
    rrd = tmp_path / "two.rrd"
    from workbench.viz.rerun_log import RerunLogger

    logger = RerunLogger(rrd_path=rrd, stream=False)
    logger.write(record)
    logger.close()
    assert {"world/camera/image", "world/cameras/wrist"} <= rrd_entities_by_step(rrd)[record.step]


def _views(blueprint):
    out, stack = [], [blueprint.root_container]
    while stack:
        item = stack.pop()
        if hasattr(item, "origin"):
            out.append(item)
        stack.extend(getattr(item, "contents", None) or [])
    return out


@pytest.mark.slow
def test_the_app_plays_a_v30_episode_by_folder_and_by_repo_id_to_its_end(tmp_path):
    """Through the page's own API (gradio_client against the app launched in-process): the
    lerobot-written v3.0 dataset from its folder and from the cache by repo id, any episode, played to
    its last frame past --max-steps."""
    import os

    from gradio_client import Client

    from panels import app

    data, home = tmp_path / "data", tmp_path / "home"
    shutil.copytree(FIXTURES / "v30_av1", data / "v30_av1")
    shutil.copytree(FIXTURES / "v30_png", home / "someone" / "tiny")
    old = os.environ.get("HF_LEROBOT_HOME")
    os.environ["HF_LEROBOT_HOME"] = str(home)
    config = AppConfig(port=7940, data_dirs=[data], sessions_dir=tmp_path / "sessions", max_steps=3,
                       checkpoint_dirs=[tmp_path], demo_checkpoint=tmp_path / "none")  # fmt: skip
    demo, url = app.launch(config, block=False)
    try:
        c = Client(url, verbose=False)
        for recording, task, last in (("v30_av1#2", "pick up the red cube", 8), ("someone/tiny#1", "put the cube in the bowl", 4)):  # fmt: skip
            args = dict(ckpt="", ckpt_b="", mode="shared", kind="episode", task="", seed=0, split="seen",
                        obj="", episode=recording, simpler_task=None, ddim=1, cfg=1.5, horizon=7, alpha=0.1,
                        instruction="")  # fmt: skip
            _, summary, instruction, _, _ = c.predict(*args.values(), api_name="/load")
            assert summary["step"] == 0 and instruction == task
            _, summary, _, _, _ = c.predict(api_name="/run_to_end")
            assert summary["step"] == last  # not cut at --max-steps 3
    finally:
        demo.close()
        if old is None:
            os.environ.pop("HF_LEROBOT_HOME", None)
        else:
            os.environ["HF_LEROBOT_HOME"] = old


def test_the_viewer_labels_a_recorded_action_as_the_dataset_does(wb, tmp_path):
    """The fixture was written by the real lerobot package; its info.json names the action's dimensions
    (dx dy dz drx dry drz gripper), which are not the workbench's own names (rx ry rz)."""
    tab = wb.new_tab()
    tab.load(SourceSpec(kind="episode", path="v30_av1#2"), [RANDOM_POLICY], PolicySettings(num_ddim_steps=1))
    tab.step(1)
    path = tmp_path / "viewer.rrd"
    path.write_bytes(tab.viewer_bytes())
    names = {e: c["SeriesLines:names"][0] for e, c in rrd_columns(path).items() if "SeriesLines:names" in c}
    assert names["actions/recorded"] == ["dx", "dy", "dz", "drx", "dry", "drz", "gripper"]
    assert names["actions/executed"][3:6] == ["rx", "ry", "rz"]
    tab.release()
