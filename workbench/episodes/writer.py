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
import os
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
    V2_DATA_PATH,
    V2_VIDEO_PATH,
    V3_DATA_PATH,
    V3_EPISODES_PATH,
    V3_TASKS_PATH,
    V3_VIDEO_PATH,
    V30,
    WRITABLE_VERSIONS,
)
from workbench.fileio import write_json_atomic
from workbench.records import Camera, GroundTruth, Observation

CODEBASE_VERSION = V30  # what new datasets are written as; V21 on request
STATS = ("min", "max", "mean", "std", "count")


def _append_jsonl(path: Path, obj: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(obj) + "\n")


class LeRobotDatasetWriter:
    """Record episodes frame by frame; each `save_episode` makes the episode durable on disk.

    `features` are LeRobot feature specs (see `default_features`); the index columns are added here.
    version "v3.0" (default): one data file (and one mp4 per video camera) per episode, named by the
    v3.0 templates, so saving never rewrites an earlier episode's files; the episode list
    (meta/episodes/chunk-000/file-000.parquet, with per-episode stats columns), meta/tasks.parquet and
    meta/stats.json are rewritten atomically at each save. version "v2.1": LeRobot 0.3's layout.
    """

    def __init__(
        self,
        root: str | Path,
        fps: float,
        features: dict[str, dict],
        robot_type: str = "unknown",
        version: str = CODEBASE_VERSION,
    ):
        if version not in WRITABLE_VERSIONS:
            raise ValueError(f"version must be one of {WRITABLE_VERSIONS}, got {version!r}")
        self.version = version
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
        self._rows: list[dict[str, Any]] = []  # v3.0: the episode list, one row per saved episode
        self._stats: list[dict[str, dict]] = []  # per saved episode
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
        """Write the buffered frames as one episode; returns its index. `meta` (JSON scalars, e.g.
        success=True, seed=0) is kept in the episode's metadata entry (LeRobot ignores extra keys)."""
        if not self._buffer:
            raise ValueError("no frames were added since the last save_episode")
        ep, n = self.num_episodes, len(self._buffer)
        new_task = task not in self.tasks
        if new_task:
            self.tasks[task] = len(self.tasks)
        columns = self._columns(ep, n, self.tasks[task])
        stats = self._episode_stats()
        loc = {"chunk_index": ep // CHUNKS_SIZE, "file_index": ep % CHUNKS_SIZE}
        if self.version == V30:
            data_path = self.root / V3_DATA_PATH.format(**loc)
        else:
            data_path = self.root / V2_DATA_PATH.format(episode_chunk=loc["chunk_index"], episode_index=ep)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns, schema=self._schema()), data_path)
        for key in self.camera_keys:
            if self.features[key]["dtype"] == "video":
                self._write_video(key, ep, np.stack([r[key] for r in self._buffer]))
        entry = {**meta, "episode_index": ep, "tasks": [task], "length": n}
        if self.version == V30:
            self._save_v3_meta(entry, loc, stats)
        else:
            if new_task:
                _append_jsonl(
                    self.root / "meta" / "tasks.jsonl", {"task_index": self.tasks[task], "task": task}
                )
            _append_jsonl(self.root / "meta" / "episodes.jsonl", entry)
            _append_jsonl(self.root / "meta" / "episodes_stats.jsonl", {"episode_index": ep, "stats": stats})
        self.num_episodes += 1
        self.total_frames += n
        self._buffer = []
        self._write_info()
        return ep

    def _save_v3_meta(self, entry: dict[str, Any], loc: dict[str, int], stats: dict[str, dict]) -> None:
        n = entry["length"]
        row = {
            **entry,
            "data/chunk_index": loc["chunk_index"],
            "data/file_index": loc["file_index"],
            "dataset_from_index": self.total_frames,
            "dataset_to_index": self.total_frames + n,
        }
        for key in self.camera_keys:
            if self.features[key]["dtype"] == "video":
                row |= {f"videos/{key}/{k}": v for k, v in loc.items()}
                row |= {f"videos/{key}/from_timestamp": 0.0, f"videos/{key}/to_timestamp": n / self.fps}
        for key, feature_stats in stats.items():
            row |= {f"stats/{key}/{k}": feature_stats[k] for k in STATS}
        row |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
        self._rows.append(row)
        self._stats.append(stats)
        _write_parquet_atomic(
            self.root / V3_EPISODES_PATH.format(chunk_index=0, file_index=0), _rows_table(self._rows)
        )
        tasks = pa.table(
            {"task_index": pa.array(list(self.tasks.values()), pa.int64()), "task": list(self.tasks)}
        )
        # the pandas index LeRobot's pd.read_parquet expects: the task text
        pandas_meta = {"index_columns": ["task"], "column_indexes": [], "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ], "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__}}  # fmt: skip
        tasks = tasks.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
        _write_parquet_atomic(self.root / V3_TASKS_PATH, tasks)
        write_json_atomic(self.root / "meta" / "stats.json", codecs.aggregate_stats(self._stats), indent=4)

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
        if self.version == V30:
            path = self.root / V3_VIDEO_PATH.format(
                video_key=key, chunk_index=ep // CHUNKS_SIZE, file_index=ep % CHUNKS_SIZE
            )
        else:
            path = self.root / V2_VIDEO_PATH.format(
                episode_chunk=ep // CHUNKS_SIZE, video_key=key, episode_index=ep
            )
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
        v3 = self.version == V30
        info = {
            "codebase_version": self.version,
            "robot_type": self.robot_type,
            "total_episodes": self.num_episodes,
            "total_frames": self.total_frames,
            "total_tasks": len(self.tasks),
            **({} if v3 else {"total_videos": n_videos * self.num_episodes}),
            **({} if v3 else {"total_chunks": (self.num_episodes + CHUNKS_SIZE - 1) // CHUNKS_SIZE}),
            "chunks_size": CHUNKS_SIZE,
            **({"data_files_size_in_mb": 100, "video_files_size_in_mb": 200} if v3 else {}),
            "fps": self.fps,
            "splits": {"train": f"0:{self.num_episodes}"},
            "data_path": V3_DATA_PATH if v3 else V2_DATA_PATH,
            "video_path": (V3_VIDEO_PATH if v3 else V2_VIDEO_PATH) if n_videos else None,
            "features": self.features,
        }
        write_json_atomic(self.root / "meta" / "info.json", info, indent=4)


def _rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows whose keys may differ (extra metadata given to some episodes only) -> one table; a key a
    row lacks is null there (from_pylist alone would take the first row's keys)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows])


def _write_parquet_atomic(path: Path, table: pa.Table) -> None:
    """Write next to `path`, then rename over it: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
