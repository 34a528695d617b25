"""Training reads demonstrations in either layout the writer offers (v3.0 by default, v2.1) the same."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.episodes import LeRobotDataset, LeRobotDatasetWriter, default_features
from workbench.records import GroundTruth
from workbench.spatial import Box, Point
from workbench.train.data import CAMERA, DataConfig, SceneConfig, load_frames


def _write(root, version: str) -> None:
    rng = np.random.default_rng(7)
    w = LeRobotDatasetWriter(
        root,
        fps=5,
        features=default_features({CAMERA: (24, 32)}, state_dim=9, tcp_pose=True),
        version=version,
    )
    for ep, n in enumerate((3, 4)):
        for t in range(n):
            frame = {
                f"observation.images.{CAMERA}": rng.integers(0, 256, (24, 32, 3), dtype=np.uint8),
                "observation.state": rng.normal(size=9),
                "observation.tcp_pose": rng.normal(size=7),
                "action": np.r_[rng.normal(size=6), 1.0],
            }
            gt = GroundTruth(objects=[Box(1, 2, 10, 12, "cube")], key_points=[Point(5, 7 + t, "cube")])
            w.add_frame(frame, ground_truth=gt)
        w.save_episode(task=f"pick the cube {ep}", seed=ep, success=True)
    w.finalize()


def test_load_frames_reads_v21_and_v30_alike(tmp_path):
    _write(tmp_path / "v30", "v3.0")
    _write(tmp_path / "v21", "v2.1")
    assert LeRobotDataset(tmp_path / "v30").version == "v3.0"
    assert LeRobotDataset(tmp_path / "v21").version == "v2.1"
    a, b = load_frames(tmp_path / "v30", 32, 4), load_frames(tmp_path / "v21", 32, 4)
    assert len(a) == len(b) == 7
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.chunk, y.chunk)
        assert (x.instruction, x.episode) == (y.instruction, y.episode)
        assert x.ground_truth == y.ground_truth and np.array_equal(x.tcp_pose, y.tcp_pose)
    assert LeRobotDataset(tmp_path / "v30").episode(1).meta == {"seed": 1, "success": True}


def test_the_simulators_writer_defaults_to_v30():
    assert DataConfig().lerobot_version == "v3.0" and SceneConfig().lerobot_version == "v3.0"
    with pytest.raises(ValueError, match="version must be one of"):
        LeRobotDatasetWriter("/nonexistent/x", fps=5, features=default_features({}), version="v2.0")
