"""Datasets written by the real lerobot package (tests/fixtures/lerobot: 0.3.3 -> v2.1, 0.6.1 -> v3.0,
PNG and AV1 cameras) read back exactly; damaged copies refused with errors naming the file and field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import helpers
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from workbench.episodes import DatasetFormatError, LeRobotDataset, resolve_dataset
from workbench.episodes.lerobot import lerobot_home
from workbench.sources import EpisodeSource

FIXTURES = helpers.FIXTURES / "lerobot"
NAMES = ("v21_png", "v21_av1", "v30_png", "v30_av1")


def _expected(name: str) -> tuple[dict, dict[str, np.ndarray]]:
    meta = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    with np.load(FIXTURES / f"{name}.expected.npz") as z:
        return meta, dict(z)


@pytest.mark.parametrize("name", NAMES)
def test_lerobot_written_dataset_reads_exactly(name):
    """Lengths, tasks, states and actions exact; PNG images bit-exact against what add_frame got; AV1
    frames identical (max difference 0) to the frames lerobot itself decodes from the same files."""
    meta, expected = _expected(name)
    ds = LeRobotDataset(FIXTURES / name)
    assert ds.version == ("v3.0" if name.startswith("v30") else "v2.1")
    assert ds.fps == meta["fps"]
    assert ds.listing() == [(e, m["task"], m["length"]) for e, m in enumerate(meta["episodes"])]
    assert ds.names("observation.state") == tuple(meta["state_names"])
    assert ds.names("action") == tuple(meta["action_names"])
    for e, m in enumerate(meta["episodes"]):
        ep = ds.episode(e)
        assert (ep.task, len(ep)) == (m["task"], m["length"])
        assert [f.frame_index for f in ep.frames] == list(range(m["length"]))
        assert np.array_equal(ep.states, expected[f"state_{e}"])
        assert np.array_equal(ep.actions, expected[f"action_{e}"])
        assert ep.state_names == tuple(meta["state_names"])
        for cam, (h, w) in meta["cameras"].items():
            got = np.stack([f.images[cam] for f in ep.frames])
            assert got.shape == (m["length"], h, w, 3) and got.dtype == np.uint8
            if meta["use_videos"]:
                assert np.array_equal(got, expected[f"decoded_{cam}_{e}"]), f"episode {e} {cam}"
                # lossy AV1 stays close to what was recorded
                assert np.abs(got.astype(int) - expected[f"images_{cam}_{e}"]).mean() < 5
            else:
                assert np.array_equal(got, expected[f"images_{cam}_{e}"]), f"episode {e} {cam}"


def test_v30_episodes_share_files_and_start_mid_video():
    """The fixture is what the reader must handle: one data file and one mp4 per camera for all
    episodes, later episodes at a non-zero from_timestamp."""
    ds = LeRobotDataset(FIXTURES / "v30_av1")
    assert {(e["data/chunk_index"], e["data/file_index"]) for e in ds.episodes.values()} == {(0, 0)}
    starts = [e["videos/observation.images.front/from_timestamp"] for e in ds.episodes.values()]
    assert starts[0] == 0 and starts[1] == pytest.approx(0.7) and starts[2] == pytest.approx(1.2)
    assert len(list((FIXTURES / "v30_av1/videos/observation.images.front").rglob("*.mp4"))) == 1


def test_episodes_iterate_in_order_and_source_replays_any_episode():
    ds = LeRobotDataset(FIXTURES / "v30_png")
    assert [ep.index for ep in ds] == [0, 1, 2]
    src = EpisodeSource.from_lerobot(FIXTURES / "v30_av1", episode=2)
    assert len(src.observations) == 9 and src.observations[0].instruction == "pick up the red cube"
    assert src.state_names == ("x", "y", "z", "roll", "pitch", "yaw", "gripper", "pad")
    assert src.action_names[0] == "dx"
    _, expected = _expected("v30_av1")
    assert np.array_equal(src.actions[8], expected["action_2"][8])
    with pytest.raises(IndexError, match=r"episodes \[0, 1, 2\]"):
        ds.episode(3)


# -- the local cache, by repo id -----------------------------------------------------------------


def test_repo_id_from_the_lerobot_home(tmp_path, monkeypatch):
    home = tmp_path / "lerobot_home"
    shutil.copytree(FIXTURES / "v30_png", home / "someone/tiny_v30")
    monkeypatch.setenv("HF_LEROBOT_HOME", str(home))
    assert lerobot_home() == home
    assert resolve_dataset("someone/tiny_v30") == home / "someone/tiny_v30"
    assert LeRobotDataset("someone/tiny_v30").episode(1).task == "put the cube in the bowl"
    monkeypatch.delenv("HF_LEROBOT_HOME")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert lerobot_home() == tmp_path / "hf" / "lerobot"


def test_repo_id_from_the_hub_cache_snapshot(tmp_path, monkeypatch):
    """LeRobot >= 0.5 downloads into <home>/hub/datasets--owner--name/snapshots/<sha>, ref "v3.0"."""
    repo = tmp_path / "hub" / "datasets--someone--tiny"
    shutil.copytree(FIXTURES / "v30_av1", repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "v3.0").write_text("abc123")
    monkeypatch.setenv("HF_LEROBOT_HOME", str(tmp_path))
    assert resolve_dataset("someone/tiny") == repo / "snapshots" / "abc123"
    assert LeRobotDataset("someone/tiny").num_episodes == 3


def test_unknown_repo_id_says_where_it_looked_and_downloads_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_LEROBOT_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"someone/absent.*local LeRobot cache.*hf download"):
        LeRobotDataset("someone/absent")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LeRobotDataset(tmp_path / "no" / "such" / "folder")
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "info.json").write_text("{}")  # the cache root itself is never a dataset
    for name in ("someone/..", "someone/."):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            resolve_dataset(name)


# -- damaged copies: each error names the file and the field ------------------------------------


@pytest.fixture(params=["v30_png", "v21_png"])
def copy(request, tmp_path) -> Path:
    root = tmp_path / request.param
    shutil.copytree(FIXTURES / request.param, root)
    return root


def _edit_info(root: Path, **changes) -> None:
    path = root / "meta/info.json"
    info = json.loads(path.read_text())
    for key, value in changes.items():
        if value is _DROP:
            info.pop(key)
        else:
            info[key] = value
    path.write_text(json.dumps(info))


_DROP = object()


def test_info_not_utf8(copy):
    (copy / "meta/info.json").write_bytes(b'{"fps": "\xff\xfe"}')
    with pytest.raises(DatasetFormatError, match=r"info.json is not UTF-8"):
        LeRobotDataset(copy)


@pytest.mark.parametrize("text", ["[1, 2]", '"v3.0"', "null"])
def test_info_not_an_object(copy, text):
    (copy / "meta/info.json").write_text(text)
    with pytest.raises(DatasetFormatError, match=r"info.json must hold a JSON object"):
        LeRobotDataset(copy)


@pytest.mark.parametrize("fps", [_DROP, 0, -5, float("nan"), "10", None, True])
def test_bad_fps(copy, fps):
    _edit_info(copy, fps=fps)  # NaN is written as the bare NaN token Python's json reads back
    with pytest.raises(DatasetFormatError, match=r"info.json.*'fps'"):
        LeRobotDataset(copy)


def test_features_missing(copy):
    _edit_info(copy, features=_DROP)
    with pytest.raises(DatasetFormatError, match=r"info.json has no 'features'"):
        LeRobotDataset(copy)


def test_feature_without_dtype(copy):
    info = json.loads((copy / "meta/info.json").read_text())
    del info["features"]["observation.state"]["dtype"]
    (copy / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetFormatError, match=r"info.json: feature 'observation.state' has no 'dtype'"):
        LeRobotDataset(copy)


@pytest.mark.parametrize(
    ("drop", "what"),
    [
        (("action",), "no 'action'"),
        (("observation.state",), "no 'observation.state'"),
        (("observation.images.front", "observation.images.wrist"), "no camera"),
    ],
)
def test_info_declares_no_action_state_or_camera(copy, drop, what):
    info = json.loads((copy / "meta/info.json").read_text())
    for key in drop:
        del info["features"][key]
    (copy / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetFormatError, match=rf"info.json: 'features' declares {what}"):
        LeRobotDataset(copy)


@pytest.mark.parametrize("value", [0, -1, "1000", 1.5])
def test_bad_chunks_size(copy, value):
    _edit_info(copy, chunks_size=value)
    with pytest.raises(DatasetFormatError, match=r"info.json: 'chunks_size' must be a positive integer"):
        LeRobotDataset(copy)


def test_data_path_missing(copy):
    _edit_info(copy, data_path=_DROP)
    with pytest.raises(DatasetFormatError, match=r"info.json has no 'data_path'"):
        LeRobotDataset(copy)


def test_episode_row_without_episode_index(copy):
    if copy.name.startswith("v30"):
        path = copy / "meta/episodes/chunk-000/file-000.parquet"
        table = pq.read_table(path)
        pq.write_table(table.drop_columns(["episode_index"]), path)
        match = r"file-000.parquet has no 'episode_index' column"
    else:
        path = copy / "meta/episodes.jsonl"
        lines = path.read_text().splitlines()
        row = json.loads(lines[1])
        del row["episode_index"]
        path.write_text("\n".join([lines[0], json.dumps(row), *lines[2:]]) + "\n")
        match = r"episodes.jsonl line 2: 'episode_index' must be a non-negative integer"
    with pytest.raises(DatasetFormatError, match=match):
        LeRobotDataset(copy)


def test_corrupt_png_names_the_parquet_file(copy):
    path = sorted((copy / "data").rglob("*.parquet"))[0]  # holds episode 0
    table = pq.read_table(path)
    i = table.schema.get_field_index("observation.images.wrist")
    cells = table.column(i).to_pylist()
    cells[0]["bytes"] = cells[0]["bytes"][:40]  # a truncated PNG
    table = table.set_column(i, table.schema.field(i), pa.array(cells, type=table.schema.field(i).type))
    pq.write_table(table, path)
    with pytest.raises(
        DatasetFormatError, match=rf"{path.name}: 'observation.images.wrist' frame 0 of episode 0"
    ):
        LeRobotDataset(copy).episode(0)


def test_corrupt_v30_data_file_names_it(tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(FIXTURES / "v30_png", root)
    path = root / "data/chunk-000/file-000.parquet"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DatasetFormatError, match=r"file-000.parquet.*corrupt"):
        LeRobotDataset(root).episode(1)


def test_truncated_v30_video_names_the_mp4(tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(FIXTURES / "v30_av1", root)
    rows_path = root / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(rows_path)
    col = "videos/observation.images.front/from_timestamp"
    i = table.schema.get_field_index(col)
    table = table.set_column(i, col, pa.array([0.0, 0.7, 5.0]))  # episode 2 past the end of the file
    pq.write_table(table, rows_path)
    ds = LeRobotDataset(root)
    assert len(ds.episode(1)) == 5
    with pytest.raises(
        DatasetFormatError, match=r"observation.images.front.*file-000.mp4 has no frame at 5.000 s"
    ):
        ds.episode(2)
