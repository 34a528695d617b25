"""LeRobot datasets written by the workbench (v3.0 by default, v2.1 on request): write two episodes, read them back exactly, and refuse bad datasets clearly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import REPO

from workbench.episodes import DatasetFormatError, LeRobotDataset, LeRobotDatasetWriter, default_features
from workbench.records import Camera, GroundTruth, Observation
from workbench.spatial import Box, Point, Trace

CAMS = {"image": (48, 64), "wrist": (32, 32)}


def _frame(rng: np.random.Generator) -> dict:
    return {
        "observation.images.image": rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
        "observation.images.wrist": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
        "observation.state": rng.normal(size=8).astype(np.float32),
        "action": rng.normal(size=7).astype(np.float32),
    }


def _gt(t: int) -> GroundTruth:
    return GroundTruth(
        objects=[Box(1.0, 2.0, 30.5, 40.0, "carrot"), Box(5.0, 5.0, 9.0, 9.0, "plate")],
        key_points=[Point(10.0 + t, 12.0, "carrot")],
        target=Box(5.0, 5.0, 9.0, 9.0, "plate"),
        object_label="carrot",
        target_label="plate",
        expert_trace=Trace(((1.0, 2.0), (3.5, 4.0 + t)), "gripper"),
    )


CAMERA = Camera(np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]), np.eye(4), 64, 48)


def data_file(root: Path, ep: int) -> Path:
    """The parquet file the writer puts episode `ep` in (one file per episode in both layouts)."""
    info = json.loads((root / "meta/info.json").read_text())
    if info["codebase_version"] == "v3.0":
        return root / f"data/chunk-000/file-{ep:03d}.parquet"
    return root / f"data/chunk-000/episode_{ep:06d}.parquet"


@pytest.fixture(params=["v3.0", "v2.1"])
def written(tmp_path: Path, request):
    """Two episodes (5 and 3 frames) of random images and actions; returns (root, frames per episode)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "ds"
    writer = LeRobotDatasetWriter(
        root, fps=5, features=default_features(CAMS), robot_type="franka", version=request.param
    )
    episodes = []
    for ep, length in enumerate((5, 3)):
        frames = [_frame(rng) for _ in range(length)]
        for t, f in enumerate(frames):
            writer.add_frame(f, ground_truth=_gt(t), cameras={"image": CAMERA})
        assert writer.save_episode(task=f"put the carrot on plate {ep}") == ep
        episodes.append(frames)
    writer.finalize()
    return root, episodes


def test_round_trip_is_exact(written):
    root, episodes = written
    ds = LeRobotDataset(root)
    assert ds.num_episodes == 2 and ds.num_frames == 8
    assert ds.camera_keys == ["observation.images.image", "observation.images.wrist"]
    for ep, frames in enumerate(episodes):
        episode = ds.episode(ep)
        assert episode.task == f"put the carrot on plate {ep}"
        assert len(episode) == len(frames)
        for t, (got, want) in enumerate(zip(episode.frames, frames, strict=True)):
            assert got.frame_index == t
            assert got.timestamp == pytest.approx(t / 5)
            assert np.array_equal(got.images["image"], want["observation.images.image"])  # PNG: bit-exact
            assert np.array_equal(got.images["wrist"], want["observation.images.wrist"])
            assert np.array_equal(got.action, want["action"])
            assert np.array_equal(got.state, want["observation.state"])
            assert got.ground_truth == _gt(t)
            assert np.array_equal(got.cameras["image"].intrinsic, CAMERA.intrinsic)
        obs = episode.observation(1)
        assert obs.instruction == episode.task and obs.main_camera == "image"
        assert episode.actions.shape == (len(frames), 7)


def test_layout_is_lerobot(written):
    root, episodes = written
    info = json.loads((root / "meta/info.json").read_text())
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (2, 8, 2)
    assert info["splits"] == {"train": "0:2"}
    table = pq.read_table(data_file(root, 1))
    for col in (
        "observation.state",
        "action",
        "timestamp",
        "frame_index",
        "episode_index",
        "index",
        "task_index",
    ):
        assert col in table.column_names
    # the global index continues across episodes; the image cell is the HF datasets Image struct
    assert table.column("index").to_pylist() == [5, 6, 7]
    assert table.column("episode_index").to_pylist() == [1, 1, 1]
    cell = table.column("observation.images.image")[0].as_py()
    assert cell["bytes"][:8] == b"\x89PNG\r\n\x1a\n"
    assert b"huggingface" in table.schema.metadata
    if info["codebase_version"] == "v2.1":
        episodes_meta = [json.loads(x) for x in (root / "meta/episodes.jsonl").read_text().splitlines()]
        assert episodes_meta[1] == {"episode_index": 1, "tasks": ["put the carrot on plate 1"], "length": 3}
        stats = LeRobotDataset(root).stats()
        actions = np.stack([f["action"] for f in episodes[0]])
        assert np.allclose(stats[0]["action"]["mean"], actions.mean(0), atol=1e-6)
        assert np.array(stats[0]["observation.images.image"]["mean"]).shape == (3, 1, 1)
        return
    assert info["codebase_version"] == "v3.0" and info["data_path"].endswith("file-{file_index:03d}.parquet")
    rows = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [(r["episode_index"], r["tasks"], r["length"]) for r in rows] == [
        (0, ["put the carrot on plate 0"], 5),
        (1, ["put the carrot on plate 1"], 3),
    ]
    assert (rows[1]["dataset_from_index"], rows[1]["dataset_to_index"], rows[1]["data/file_index"]) == (
        5,
        8,
        1,
    )
    tasks = pq.read_table(root / "meta/tasks.parquet").to_pydict()
    assert tasks == {"task_index": [0, 1], "task": ["put the carrot on plate 0", "put the carrot on plate 1"]}
    actions = np.stack([f["action"] for e in episodes for f in e])
    stats = LeRobotDataset(root).stats()[-1]
    assert np.allclose(stats["action"]["mean"], actions.mean(0), atol=1e-6)
    assert np.allclose(stats["action"]["std"], actions.std(0), atol=1e-6)
    assert np.allclose(rows[0]["stats/action/mean"], np.stack([f["action"] for f in episodes[0]]).mean(0))


def test_same_task_shares_an_index(tmp_path):
    rng = np.random.default_rng(1)
    writer = LeRobotDatasetWriter(tmp_path / "ds", fps=10, features=default_features(CAMS))
    for _ in range(2):
        writer.add_frame(_frame(rng))
        writer.save_episode(task="same")
    ds = LeRobotDataset(writer.finalize())
    assert ds.tasks == {0: "same"}
    assert ds.episode(1).task == "same" and ds.episode(1).frames[0].ground_truth is None


def test_add_observation_and_episode_meta(tmp_path):
    rng = np.random.default_rng(2)
    f = _frame(rng)
    tcp = np.array([0.4, -0.1, 0.2, 1.0, 0.0, 0.0, 0.0], dtype=np.float32)
    obs = Observation(
        images={"image": f["observation.images.image"], "wrist": f["observation.images.wrist"]},
        instruction="x",
        cameras={"image": CAMERA},
        tcp_pose=tcp,
        state=f["observation.state"],
        ground_truth=_gt(0),
    )
    writer = LeRobotDatasetWriter(tmp_path / "ds", fps=10, features=default_features(CAMS, tcp_pose=True))
    writer.add_observation(obs, f["action"])
    writer.save_episode(task="x", success=True, seed=3)
    episode = LeRobotDataset(writer.finalize()).episode(0)
    assert episode.meta == {"success": True, "seed": 3}
    back = episode.observation(0)
    assert np.array_equal(back.images["wrist"], f["observation.images.wrist"]) and back.ground_truth == _gt(0)
    assert np.array_equal(back.tcp_pose, tcp) and np.array_equal(
        back.cameras["image"].intrinsic, CAMERA.intrinsic
    )
    with pytest.raises(ValueError, match="tcp_pose"):
        writer.add_observation(Observation(images=obs.images, instruction="x", state=obs.state), f["action"])


@pytest.mark.parametrize(
    ("version", "video_file"),
    [
        ("v2.1", "videos/chunk-000/observation.images.image/episode_000000.mp4"),
        ("v3.0", "videos/observation.images.image/chunk-000/file-000.mp4"),
    ],
)
def test_video_cameras_round_trip_closely(tmp_path, version, video_file):
    """dtype "video" (mp4 via PyAV): lossy, so smooth images come back close, not exact."""
    yy, xx = np.mgrid[0:48, 0:64]
    frames = []
    writer = LeRobotDatasetWriter(
        tmp_path / "ds", fps=10, features=default_features({"image": (48, 64)}, video=True), version=version
    )
    for t in range(6):
        img = np.stack([(xx * 4 + t * 10) % 256, yy * 5, np.full_like(xx, 128)], -1).astype(np.uint8)
        frames.append(img)
        writer.add_frame(
            {"observation.images.image": img, "observation.state": np.zeros(8), "action": np.ones(7)}
        )
    writer.save_episode(task="video")
    ds = LeRobotDataset(writer.finalize())
    assert (tmp_path / "ds" / video_file).is_file()
    ep = ds.episode(0)
    assert len(ep) == 6
    for got, want in zip(ep.frames, frames, strict=True):
        assert got.images["image"].shape == (48, 64, 3)
        assert np.abs(got.images["image"].astype(int) - want).mean() < 6


# -- bad input --------------------------------------------------------------------------------


def test_writer_rejects_bad_frames(tmp_path):
    rng = np.random.default_rng(3)
    writer = LeRobotDatasetWriter(tmp_path / "ds", fps=10, features=default_features(CAMS))
    f = _frame(rng)
    with pytest.raises(ValueError, match="observation.images.image"):
        writer.add_frame({**f, "observation.images.image": f["observation.images.image"].astype(np.float32)})
    with pytest.raises(ValueError, match="action"):
        writer.add_frame({**f, "action": np.zeros(6)})
    with pytest.raises(ValueError, match="finite"):
        writer.add_frame({**f, "action": np.full(7, np.nan)})
    with pytest.raises(ValueError, match="missing feature"):
        writer.add_frame({k: v for k, v in f.items() if k != "observation.state"})
    with pytest.raises(ValueError, match="not declared"):
        writer.add_frame({**f, "extra": 1})
    with pytest.raises(ValueError, match="no frames"):
        writer.save_episode(task="nothing")
    writer.add_frame(f)
    with pytest.raises(ValueError, match="save_episode"):
        writer.finalize()
    with pytest.raises(FileExistsError):
        LeRobotDatasetWriter(tmp_path / "ds", fps=10, features=default_features(CAMS))


def test_missing_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LeRobotDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="meta/info.json"):
        LeRobotDataset(tmp_path / "empty")


@pytest.mark.parametrize(("version", "way_out"), [("v1.6", "convert_dataset_v1_to_v2"), ("v4.0", "newer")])
def test_unsupported_version_names_a_way_out(written, version, way_out):
    root, _ = written
    info = json.loads((root / "meta/info.json").read_text())
    (root / "meta/info.json").write_text(json.dumps({**info, "codebase_version": version}))
    with pytest.raises(DatasetFormatError, match=rf"info.json: 'codebase_version' is '{version}'.*{way_out}"):
        LeRobotDataset(root)


def test_corrupt_parquet(written):
    root, _ = written
    path = data_file(root, 1)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    ds = LeRobotDataset(root)
    assert len(ds.episode(0)) == 5  # the intact episode still reads
    with pytest.raises(DatasetFormatError, match="corrupt"):
        ds.episode(1)


def test_missing_episode_file_and_index(written):
    root, _ = written
    data_file(root, 0).unlink()
    ds = LeRobotDataset(root)
    with pytest.raises(FileNotFoundError, match=data_file(root, 0).name):
        ds.episode(0)
    with pytest.raises(IndexError, match="episodes"):
        ds.episode(7)


def test_paths_stay_inside_root(written, tmp_path):
    root, _ = written
    outside = tmp_path / "secret.parquet"
    outside.write_bytes(data_file(root, 0).read_bytes())
    info = json.loads((root / "meta/info.json").read_text())
    info["data_path"] = "../secret.parquet"
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetFormatError, match="outside"):
        LeRobotDataset(root).episode(0)


def test_corrupt_image_bytes(tmp_path):
    rng = np.random.default_rng(4)
    writer = LeRobotDatasetWriter(tmp_path / "ds", fps=10, features=default_features(CAMS))
    writer.add_frame(_frame(rng))
    writer.save_episode(task="x")
    path = data_file(tmp_path / "ds", 0)
    table = pq.read_table(path)
    i = table.schema.get_field_index("observation.images.wrist")
    broken = table.column(i).to_pylist()
    broken[0]["bytes"] = b"not a png"
    import pyarrow as pa

    table = table.set_column(i, table.schema.field(i), pa.array(broken, type=table.schema.field(i).type))
    pq.write_table(table, path)
    with pytest.raises(DatasetFormatError, match="decodable"):
        LeRobotDataset(tmp_path / "ds").episode(0)


def test_shipped_sample_episode():
    """assets/episodes/sample: one expert episode of the built-in sim (scripts/make_sample_episode.py)."""
    root = REPO / "assets" / "episodes" / "sample"
    ds = LeRobotDataset(root)
    assert ds.num_episodes == 1
    episode = ds.episode(0)
    assert episode.meta["success"] is True and len(episode) > 5
    obs = episode.observation(0)
    assert obs.images[obs.main_camera].shape == (224, 224, 3)
    gt = obs.ground_truth
    # written when the object to move was "source_label": it reads as object_label
    assert gt is not None and gt.object_label and gt.object_label in episode.task
    assert obs.cameras[obs.main_camera].width == 224 and obs.tcp_pose.shape == (7,)
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 2_000_000
