"""Write LeRobot datasets while recording: layout v3.0 by default, v2.1 on request (see `layout`).

Each `save_episode` makes the episode durable on disk: its data (and video) files are complete and the
metadata lists it, so a crash loses at most the episode being recorded.

Images are written as PNG embedded in the parquet (the HF `datasets` Image struct LeRobot uses for
dtype "image"): PNG is lossless, so a replay shows bit-exactly what the policy saw. dtype "video"
cameras are encoded with libx264/yuv420p (`video=True` in `default_features`): smaller but lossy.
Workbench extras ride along as JSON strings (dtype "string"): observation.ground_truth (a
records.GroundTruth) and observation.cameras (camera name -> Camera).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.episodes import codecs
from workbench.episodes.layout import (
    CAMERAS_KEY,
    CHUNKS_SIZE,
    GT_KEY,
    IMAGE_PREFIX,
    INDEX_FEATURES,
    TCP_KEY,
    V21,
)
from workbench.episodes.layout import (
    V2_DATA_PATH as DATA_PATH,
)
from workbench.episodes.layout import (
    V2_VIDEO_PATH as VIDEO_PATH,
)
from workbench.fileio import write_json_atomic
from workbench.records import Camera, GroundTruth, Observation

CODEBASE_VERSION = V21


def _append_jsonl(path: Path, obj: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(obj) + "\n")


class LeRobotDatasetWriter:
    """Record episodes frame by frame; each `save_episode` makes the episode durable on disk.

    `features` are LeRobot feature specs (see `default_features`); the index columns are added here.
    """

    def __init__(self, root: str | Path, fps: float, features: dict[str, dict], robot_type: str = "unknown"):
        self.root = Path(root)
        if (self.root / "meta" / "info.json").exists():
            raise FileExistsError(
                f"{self.root} already holds a dataset; pick a new directory or delete it first"
            )
        if "action" not in features:
            raise ValueError("features must include 'action' (LeRobot datasets always have one)")
        self.fps = float(fps)
        self.robot_type = robot_type
        self.features = {**features, **INDEX_FEATURES}
        self.tasks: dict[str, int] = {}
        self.num_episodes = 0
        self.total_frames = 0
        self._buffer: list[dict[str, Any]] = []
        (self.root / "meta").mkdir(parents=True, exist_ok=True)
        self._write_info()

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] in ("image", "video")]

    def add_frame(
        self,
        frame: dict[str, Any],
        ground_truth: GroundTruth | None = None,
        cameras: dict[str, Camera] | None = None,
    ) -> None:
        """frame: feature key -> value ([H, W, 3] uint8 images, float vectors); checked against the specs."""
        row: dict[str, Any] = {}
        for key, spec in self.features.items():
            if key in INDEX_FEATURES or key in (GT_KEY, CAMERAS_KEY):
                continue
            if key not in frame:
                raise ValueError(
                    f"frame is missing feature {key!r}; expected keys {sorted(frame)} to include it"
                )
            row[key] = self._check(key, spec, frame[key])
        if unknown := set(frame) - set(self.features):
            raise ValueError(f"frame has keys not declared in features: {sorted(unknown)}")
        if GT_KEY in self.features:
            row[GT_KEY] = codecs.ground_truth_to_json(ground_truth) if ground_truth else ""
        if CAMERAS_KEY in self.features:
            row[CAMERAS_KEY] = codecs.cameras_to_json(cameras) if cameras else ""
        self._buffer.append(row)

    def add_observation(self, obs: Observation, action: np.ndarray) -> None:
        """Record a workbench Observation and the action taken from it."""
        frame: dict[str, Any] = {IMAGE_PREFIX + name: img for name, img in obs.images.items()}
        frame["action"] = action
        for key, value in (("observation.state", obs.state), (TCP_KEY, obs.tcp_pose)):
            if key in self.features:
                if value is None:
                    raise ValueError(f"features declare {key} but the observation has none")
                frame[key] = value
        self.add_frame(frame, ground_truth=obs.ground_truth, cameras=obs.cameras or None)

    def _check(self, key: str, spec: dict, value: Any) -> Any:
        if spec["dtype"] in ("image", "video"):
            img = np.asarray(value)
            if img.dtype != np.uint8 or img.shape != tuple(spec["shape"]):
                raise ValueError(f"{key}: expected uint8 {tuple(spec['shape'])}, got {img.dtype} {img.shape}")
            return img
        if spec["dtype"] == "string":
            if not isinstance(value, str):
                raise ValueError(f"{key}: expected a str, got {type(value).__name__}")
            return value
        arr = np.asarray(value, dtype=spec["dtype"]).reshape(-1)
        if arr.shape != tuple(spec["shape"]):
            raise ValueError(f"{key}: expected shape {tuple(spec['shape'])}, got {np.shape(value)}")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError(f"{key}: values must be finite, got {arr}")
        return arr

    def save_episode(self, task: str, **meta: Any) -> int:
        """Write the buffered frames as one episode; returns its index. `meta` (JSON values, e.g.
        success=True, seed=0) is kept in the episode's episodes.jsonl line (LeRobot ignores extra keys)."""
        if not self._buffer:
            raise ValueError("no frames were added since the last save_episode")
        ep, n = self.num_episodes, len(self._buffer)
        if task not in self.tasks:
            self.tasks[task] = len(self.tasks)
            _append_jsonl(self.root / "meta" / "tasks.jsonl", {"task_index": self.tasks[task], "task": task})
        task_index = self.tasks[task]
        columns = self._columns(ep, n, task_index)
        data_path = self.root / DATA_PATH.format(episode_chunk=ep // CHUNKS_SIZE, episode_index=ep)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns, schema=self._schema()), data_path)
        for key in self.camera_keys:
            if self.features[key]["dtype"] == "video":
                self._write_video(key, ep, np.stack([r[key] for r in self._buffer]))
        _append_jsonl(
            self.root / "meta" / "episodes.jsonl", {**meta, "episode_index": ep, "tasks": [task], "length": n}
        )
        _append_jsonl(
            self.root / "meta" / "episodes_stats.jsonl", {"episode_index": ep, "stats": self._episode_stats()}
        )
        self.num_episodes += 1
        self.total_frames += n
        self._buffer = []
        self._write_info()
        return ep

    def finalize(self) -> Path:
        """Check nothing is left unsaved and write the final info.json; returns the root."""
        if self._buffer:
            raise ValueError(
                f"{len(self._buffer)} frames were added but not saved; call save_episode(task=...) first"
            )
        self._write_info()
        return self.root

    def _columns(self, ep: int, n: int, task_index: int) -> dict[str, Any]:
        cols: dict[str, Any] = {}
        for key, spec in self.features.items():
            if key in INDEX_FEATURES or spec["dtype"] == "video":
                continue
            values = [r[key] for r in self._buffer]
            if spec["dtype"] == "image":
                cols[key] = [
                    {"bytes": codecs.encode_png(v), "path": f"frame_{i:06d}.png"}
                    for i, v in enumerate(values)
                ]
            elif spec["dtype"] == "string":
                cols[key] = values
            else:
                cols[key] = np.stack(values)
        cols["timestamp"] = (np.arange(n) / self.fps).astype(np.float32)
        cols["frame_index"] = np.arange(n, dtype=np.int64)
        cols["episode_index"] = np.full(n, ep, dtype=np.int64)
        cols["index"] = np.arange(self.total_frames, self.total_frames + n, dtype=np.int64)
        cols["task_index"] = np.full(n, task_index, dtype=np.int64)
        # fixed-size list columns from [N, D] arrays
        for key, v in cols.items():
            if isinstance(v, np.ndarray) and v.ndim == 2:
                cols[key] = pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1])
        return cols

    def _schema(self) -> pa.Schema:
        fields, hf = [], {}
        for key, spec in self.features.items():
            if spec["dtype"] == "video":
                continue
            if spec["dtype"] == "image":
                fields.append(pa.field(key, pa.struct([("bytes", pa.binary()), ("path", pa.string())])))
                hf[key] = {"_type": "Image"}
            elif spec["dtype"] == "string":
                fields.append(pa.field(key, pa.string()))
                hf[key] = {"dtype": "string", "_type": "Value"}
            elif key in INDEX_FEATURES:
                fields.append(pa.field(key, pa.from_numpy_dtype(np.dtype(spec["dtype"]))))
                hf[key] = {"dtype": spec["dtype"], "_type": "Value"}
            else:
                n = int(np.prod(spec["shape"]))
                fields.append(pa.field(key, pa.list_(pa.from_numpy_dtype(np.dtype(spec["dtype"])), n)))
                hf[key] = {
                    "feature": {"dtype": spec["dtype"], "_type": "Value"},
                    "length": n,
                    "_type": "Sequence",
                }
        # the `datasets` library (which LeRobot loads parquet with) reads feature types from this metadata
        meta = {b"huggingface": json.dumps({"info": {"features": hf}}).encode()}
        return pa.schema(fields, metadata=meta)

    def _write_video(self, key: str, ep: int, frames: np.ndarray) -> None:
        path = self.root / VIDEO_PATH.format(episode_chunk=ep // CHUNKS_SIZE, video_key=key, episode_index=ep)
        self.features[key]["info"] = codecs.encode_video(path, frames, self.fps)

    def _episode_stats(self) -> dict[str, dict]:
        stats = {}
        for key, spec in self.features.items():
            if key in INDEX_FEATURES or spec["dtype"] == "string":
                continue
            values = np.stack([r[key] for r in self._buffer])
            stats[key] = (
                codecs.image_stats(values) if spec["dtype"] in ("image", "video") else codecs.stats(values)
            )
        return stats

    def _write_info(self) -> None:
        n_videos = sum(1 for k in self.camera_keys if self.features[k]["dtype"] == "video")
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": self.num_episodes,
            "total_frames": self.total_frames,
            "total_tasks": len(self.tasks),
            "total_videos": n_videos * self.num_episodes,
            "total_chunks": (self.num_episodes + CHUNKS_SIZE - 1) // CHUNKS_SIZE,
            "chunks_size": CHUNKS_SIZE,
            "fps": self.fps,
            "splits": {"train": f"0:{self.num_episodes}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if n_videos else None,
            "features": self.features,
        }
        write_json_atomic(self.root / "meta" / "info.json", info, indent=4)
