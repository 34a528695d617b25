"""Recorded episodes as LeRobot datasets (layout v2.1): write them while recording, read them back to replay.

On-disk layout (LeRobot `codebase_version` "v2.1"; "v2.0", which has meta/stats.json instead of
meta/episodes_stats.jsonl, is read too):

    <root>/meta/info.json              codebase_version, robot_type, fps, totals, path templates, features
    <root>/meta/episodes.jsonl         one line per episode: {"episode_index", "tasks": [str], "length"}
    <root>/meta/tasks.jsonl            one line per task: {"task_index", "task"}
    <root>/meta/episodes_stats.jsonl   one line per episode: {"episode_index", "stats": {feature: {min, max,
                                       mean, std, count}}} (images: per channel in [0, 1], shape [3, 1, 1])
    <root>/data/chunk-000/episode_000000.parquet
        observation.state [S] float32, action [7] float32, timestamp float32, frame_index int64,
        episode_index int64, index int64 (global frame index), task_index int64,
        observation.images.<cam>  struct<bytes: binary, path: string> (dtype "image": embedded PNG),
        optional: observation.tcp_pose [7] float32 (xyz + quaternion wxyz), and workbench extras as
        JSON strings (dtype "string"):
        observation.ground_truth (a records.GroundTruth), observation.cameras (camera name -> Camera).
    <root>/videos/chunk-000/observation.images.<cam>/episode_000000.mp4   (only for dtype "video")

Images are written as PNG embedded in the parquet (the HF `datasets` Image struct LeRobot uses for
dtype "image"): PNG is lossless, so a replay shows bit-exactly what the policy saw, and decoding it needs
no codec whose output may vary between FFmpeg builds. LeRobot datasets whose cameras are dtype "video"
(mp4, one file per episode and camera) are read with PyAV; the writer can produce them too
(`video=True`, libx264/yuv420p: smaller but lossy, so replays are close, not exact).

Every file the reader opens is resolved inside `root`: path templates in info.json cannot point outside.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.episodes import codecs
from workbench.fileio import write_json_atomic
from workbench.records import Camera, GroundTruth, Observation

CODEBASE_VERSION = "v2.1"
READABLE_VERSIONS = ("v2.0", "v2.1")
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
IMAGE_PREFIX = "observation.images."
TCP_KEY = "observation.tcp_pose"
GT_KEY = "observation.ground_truth"
CAMERAS_KEY = "observation.cameras"
# Columns every frame has; the writer fills them, so callers never pass them.
INDEX_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}


class DatasetFormatError(ValueError):
    """The files exist but are not a dataset this module can read (wrong version, corrupt, inconsistent)."""


def default_features(
    cameras: dict[str, tuple[int, int]],
    state_dim: int = 8,
    action_dim: int = 7,
    video: bool = False,
    tcp_pose: bool = False,
) -> dict[str, dict]:
    """LeRobot feature specs for cameras {name: (height, width)}, a state vector, a 7-D action, the
    optional TCP pose, and the ground-truth / camera extras."""
    features: dict[str, dict] = {}
    for name, (h, w) in cameras.items():
        features[IMAGE_PREFIX + name] = {
            "dtype": "video" if video else "image",
            "shape": [h, w, 3],
            "names": ["height", "width", "channel"],
        }
    features["observation.state"] = {"dtype": "float32", "shape": [state_dim], "names": None}
    if tcp_pose:
        features[TCP_KEY] = {
            "dtype": "float32",
            "shape": [7],
            "names": ["x", "y", "z", "qw", "qx", "qy", "qz"],
        }
    features["action"] = {"dtype": "float32", "shape": [action_dim], "names": None}
    features[GT_KEY] = {"dtype": "string", "shape": [1], "names": None}
    features[CAMERAS_KEY] = {"dtype": "string", "shape": [1], "names": None}
    return features


# ---------------------------------------------------------------------------------------------
# Records read back
# ---------------------------------------------------------------------------------------------


@dataclass
class EpisodeFrame:
    frame_index: int
    timestamp: float
    images: dict[str, np.ndarray]  # camera name -> [H, W, 3] uint8
    action: np.ndarray  # [7]
    state: np.ndarray | None = None  # [S]
    tcp_pose: np.ndarray | None = None  # [7] world xyz + quaternion (w, x, y, z)
    ground_truth: GroundTruth | None = None
    cameras: dict[str, Camera] = field(default_factory=dict)


@dataclass
class Episode:
    index: int
    task: str  # the instruction
    fps: float
    frames: list[EpisodeFrame]
    meta: dict[str, Any] = field(default_factory=dict)  # extra keys of its episodes.jsonl line

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def actions(self) -> np.ndarray:  # [N, 7]
        return np.stack([f.action for f in self.frames])

    def observation(self, i: int) -> Observation:
        """Frame i as the Observation every source produces (the runner replays these)."""
        f = self.frames[i]
        return Observation(
            images=f.images,
            instruction=self.task,
            cameras=f.cameras,
            state=f.state,
            tcp_pose=f.tcp_pose,
            ground_truth=f.ground_truth,
        )


# ---------------------------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise DatasetFormatError(f"{path} is not valid JSON lines ({e}); the dataset is corrupt") from e


class LeRobotDataset:
    """Read a LeRobot v2.x dataset written by `LeRobotDatasetWriter` or by LeRobot itself."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset directory {root} does not exist")
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            raise FileNotFoundError(
                f"{info_path} is missing: {root} is not a LeRobot dataset (expected meta/info.json)"
            )
        try:
            self.info = json.loads(info_path.read_text())
        except json.JSONDecodeError as e:
            raise DatasetFormatError(f"{info_path} is not valid JSON ({e})") from e
        version = self.info.get("codebase_version")
        if version not in READABLE_VERSIONS:
            raise DatasetFormatError(
                f"{root} has LeRobot layout {version!r}; this reader reads {READABLE_VERSIONS} "
                "(convert v3.0 datasets back with LeRobot's conversion script, or re-record)"
            )
        self.fps = float(self.info["fps"])
        self.features: dict[str, dict] = self.info["features"]
        self.episodes = {e["episode_index"]: e for e in _read_jsonl(self._path("meta/episodes.jsonl"))}
        self.tasks = {t["task_index"]: t["task"] for t in _read_jsonl(self._path("meta/tasks.jsonl"))}

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        return sum(e["length"] for e in self.episodes.values())

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] in ("image", "video")]

    def stats(self) -> dict[int, dict]:
        """Per-episode statistics (v2.1 episodes_stats.jsonl); v2.0's global stats.json under key -1."""
        if (self.root / "meta" / "episodes_stats.jsonl").is_file():
            return {
                s["episode_index"]: s["stats"] for s in _read_jsonl(self._path("meta/episodes_stats.jsonl"))
            }
        return {-1: json.loads(self._path("meta/stats.json").read_text())}

    def __iter__(self) -> Iterator[Episode]:
        for i in sorted(self.episodes):
            yield self.episode(i)

    def _path(self, relative: str) -> Path:
        """Resolve a path from the metadata, refusing anything outside the root."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise DatasetFormatError(
                f"{relative!r} points outside the dataset root {self.root}; refusing to read it"
            )
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing from the dataset")
        return path

    def episode(self, i: int) -> Episode:
        if i not in self.episodes:
            raise IndexError(f"episode {i} does not exist; this dataset has episodes {sorted(self.episodes)}")
        chunk = i // int(self.info.get("chunks_size", CHUNKS_SIZE))
        path = self._path(self.info["data_path"].format(episode_chunk=chunk, episode_index=i))
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as e:
            raise DatasetFormatError(f"cannot read {path}: {e}; the file is corrupt or not parquet") from e
        cols = table.column_names
        for required in ("action", "frame_index", "timestamp"):
            if required not in cols:
                raise DatasetFormatError(f"{path} has no {required!r} column (columns: {cols})")
        n = table.num_rows
        images = {self._camera_name(k): self._images(table, k, chunk, i, n) for k in self.camera_keys}
        action = _vectors(table, "action")
        state = _vectors(table, "observation.state") if "observation.state" in cols else None
        tcp = _vectors(table, TCP_KEY) if TCP_KEY in cols else None
        gt = table.column(GT_KEY).to_pylist() if GT_KEY in cols else [""] * n
        cams = table.column(CAMERAS_KEY).to_pylist() if CAMERAS_KEY in cols else [""] * n
        frame_index = table.column("frame_index").to_numpy()
        timestamp = table.column("timestamp").to_numpy()
        task_index = int(table.column("task_index")[0].as_py()) if "task_index" in cols else 0
        task = self.tasks.get(task_index) or (self.episodes[i].get("tasks") or [""])[0]
        frames = [
            EpisodeFrame(
                frame_index=int(frame_index[t]),
                timestamp=float(timestamp[t]),
                images={name: imgs[t] for name, imgs in images.items()},
                action=action[t],
                state=None if state is None else state[t],
                tcp_pose=None if tcp is None else tcp[t],
                ground_truth=codecs.ground_truth_from_json(gt[t]) if gt[t] else None,
                cameras=codecs.cameras_from_json(cams[t]) if cams[t] else {},
            )
            for t in range(n)
        ]
        meta = {k: v for k, v in self.episodes[i].items() if k not in ("episode_index", "tasks", "length")}
        return Episode(index=i, task=task, fps=self.fps, frames=frames, meta=meta)

    @staticmethod
    def _camera_name(key: str) -> str:
        return key.removeprefix(IMAGE_PREFIX)

    def _images(self, table: pa.Table, key: str, chunk: int, ep: int, n: int) -> list[np.ndarray]:
        if self.features[key]["dtype"] == "video":
            path = self._path(
                self.info["video_path"].format(episode_chunk=chunk, video_key=key, episode_index=ep)
            )
            try:
                frames = codecs.decode_video(path)
            except ValueError as e:
                raise DatasetFormatError(str(e)) from e
            if len(frames) < n:
                raise DatasetFormatError(f"{path} has {len(frames)} frames, the episode has {n}")
            return frames[:n]
        if key not in table.column_names:
            raise DatasetFormatError(
                f"camera column {key!r} is declared in info.json but missing from the parquet"
            )
        out = []
        for t, cell in enumerate(table.column(key).to_pylist()):
            img = codecs.decode_png(cell.get("bytes") if isinstance(cell, dict) else None)
            if img is None:
                raise DatasetFormatError(f"{key} frame {t} of episode {ep} holds no decodable image")
            out.append(img)
        return out


def _vectors(table: pa.Table, key: str) -> np.ndarray:
    """A list column -> [N, D] float32 array."""
    col = table.column(key).combine_chunks()
    if not pa.types.is_list(col.type) and not pa.types.is_fixed_size_list(col.type):
        return col.to_numpy(zero_copy_only=False).astype(np.float32)[:, None]
    rows = col.to_pylist()
    if len({len(r) for r in rows}) > 1:
        raise DatasetFormatError(f"column {key!r} has rows of different lengths")
    return np.asarray(rows, dtype=np.float32)
