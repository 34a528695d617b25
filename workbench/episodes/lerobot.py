"""Read LeRobot datasets (layouts v2.0, v2.1 and v3.0, see `layout`) as replayable episodes.

`LeRobotDataset(root)` takes a dataset folder or a Hugging Face repo id ("owner/name") found in the local
LeRobot cache (`resolve_dataset`, locate.py); nothing is ever downloaded. It reads the metadata at once
(info.json, tasks, the episode list; checks.py checks each field) and an episode's frames only when asked
(`episode(i)`):

  * v2.x: the episode's own parquet file; video cameras from its own mp4 (frame t at timestamp t).
  * v3.0: the rows of its episode_index in a data file shared with other episodes; video cameras from
    the camera's mp4 of its chunk and file, shared too, at `from_timestamp` + the frame's timestamp.

Invariants: every file opened is resolved inside the root (path templates cannot point outside); an
episode's frames are in frame_index order and have images for every camera, an action, and a state;
every problem with the files raises DatasetFormatError (or FileNotFoundError) naming the file and field.
Images come back as [H, W, 3] uint8 RGB; PNG cameras are bit-exact, video cameras as PyAV decodes them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from workbench.episodes import codecs
from workbench.episodes.checks import (
    check_features,
    check_fps,
    check_int,
    check_template,
    episode_rows,
    is_number,
    read_info,
    read_jsonl,
    read_parquet,
    vectors,
)
from workbench.episodes.layout import (
    ACTION_KEY,
    CAMERA_DTYPES,
    CAMERAS_KEY,
    CHUNKS_SIZE,
    GT_KEY,
    IMAGE_PREFIX,
    READABLE_VERSIONS,
    STATE_KEY,
    TCP_KEY,
    V3_TASKS_PATH,
    V30,
    DatasetFormatError,
    default_features,
    feature_names,
    version_way_out,
)
from workbench.episodes.locate import REPO_ID, cached_datasets, lerobot_home, resolve_dataset, split_episode
from workbench.episodes.writer import LeRobotDatasetWriter
from workbench.records import Camera, GroundTruth, Observation

__all__ = [  # where callers import them (locate.py: where a dataset lives; layout.py, writer.py)
    "REPO_ID",
    "DatasetFormatError",
    "Episode",
    "EpisodeFrame",
    "LeRobotDataset",
    "LeRobotDatasetWriter",
    "default_features",
    "cached_datasets",
    "lerobot_home",
    "resolve_dataset",
    "split_episode",
]

# ---------------------------------------------------------------------------------------------
# Records read back
# ---------------------------------------------------------------------------------------------


@dataclass
class EpisodeFrame:
    frame_index: int
    timestamp: float
    images: dict[str, np.ndarray]  # camera name -> [H, W, 3] uint8
    action: np.ndarray  # [A]
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
    meta: dict[str, Any] = field(default_factory=dict)  # extra keys of its episodes metadata entry
    state_names: tuple[str, ...] = ()  # per dimension, from info.json ("0", "1", ... when unnamed)
    action_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def actions(self) -> np.ndarray:  # [N, A]
        return np.stack([f.action for f in self.frames])

    @property
    def states(self) -> np.ndarray | None:  # [N, S]
        return None if self.frames[0].state is None else np.stack([f.state for f in self.frames])

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
# Reader
# ---------------------------------------------------------------------------------------------


class LeRobotDataset:
    """Read a LeRobot dataset (v2.0, v2.1, v3.0) written by LeRobot or by `LeRobotDatasetWriter`."""

    def __init__(self, root: str | Path):
        self.root = resolve_dataset(root).resolve()
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            raise FileNotFoundError(
                f"{info_path} is missing: {root} is not a LeRobot dataset (expected meta/info.json)"
            )
        self.info = read_info(info_path)
        self.version = self.info.get("codebase_version")
        if self.version not in READABLE_VERSIONS:
            raise DatasetFormatError(
                f"{info_path}: 'codebase_version' is {self.version!r}, which this reader does not read; "
                + version_way_out(self.version)
            )
        self.fps = check_fps(info_path, self.info)
        self.features: dict[str, dict] = check_features(info_path, self.info)
        self.chunks_size = check_int(info_path, self.info, "chunks_size", CHUNKS_SIZE)
        self.data_path = check_template(info_path, self.info, "data_path")
        self.video_path = check_template(info_path, self.info, "video_path") if self.video_keys else None
        if self.version == V30:
            self.episodes = self._v3_episodes()
            self.tasks = self._v3_tasks()
        else:
            path = self._path("meta/episodes.jsonl")
            self.episodes = episode_rows(read_jsonl(path), path, "line")
            self.tasks = {
                t.get("task_index"): t.get("task") for t in read_jsonl(self._path("meta/tasks.jsonl"))
            }

    # -- metadata ---------------------------------------------------------------------------------

    def _v3_episodes(self) -> dict[int, dict]:
        files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise FileNotFoundError(
                f"{self.root / 'meta' / 'episodes'} holds no chunk-*/file-*.parquet: the v3.0 dataset's "
                "episode list is missing"
            )
        episodes: dict[int, dict] = {}
        for path in files:
            path = self._path(str(path.relative_to(self.root)))
            try:
                names = pq.read_schema(path).names
            except (pa.ArrowException, OSError) as e:
                raise DatasetFormatError(
                    f"cannot read {path}: {e}; the file is corrupt or not parquet"
                ) from e
            if "episode_index" not in names:
                raise DatasetFormatError(f"{path} has no 'episode_index' column (columns: {names[:8]}...)")
            table = read_parquet(path, columns=[c for c in names if not c.startswith("stats/")])
            episodes.update(episode_rows(table.to_pylist(), path, "row"))
        return dict(sorted(episodes.items()))

    def _v3_tasks(self) -> dict[int, str]:
        path = self._path(V3_TASKS_PATH)
        table = read_parquet(path)
        # LeRobot writes a pandas frame indexed by the task: the index lands in "task" or
        # "__index_level_0__" depending on how it was saved
        text_col = next((c for c in ("task", "__index_level_0__") if c in table.column_names), None)
        if "task_index" not in table.column_names or text_col is None:
            raise DatasetFormatError(
                f"{path} must have 'task_index' and 'task' columns, has {table.column_names}"
            )
        return dict(
            zip(table.column("task_index").to_pylist(), table.column(text_col).to_pylist(), strict=True)
        )

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        return sum(e["length"] for e in self.episodes.values())

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] in CAMERA_DTYPES]

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] == "video"]

    def names(self, key: str) -> tuple[str, ...]:
        """Per-dimension names of a vector feature (state, action) from info.json."""
        spec = self.features[key]
        return feature_names(spec, int(np.prod(spec.get("shape") or [1])))

    def task_of(self, i: int) -> str:
        """The first task of episode i, as its metadata lists it."""
        tasks = self.episodes[i].get("tasks") or [""]
        return str(tasks[0]) if isinstance(tasks, list) else str(tasks)

    def listing(self) -> list[tuple[int, str, int]]:
        """(episode index, task, length) of every episode, in index order (for a picker)."""
        return [(i, self.task_of(i), int(e["length"])) for i, e in self.episodes.items()]

    def stats(self) -> dict[int, dict]:
        """Per-episode statistics (v2.1 episodes_stats.jsonl); the global meta/stats.json (v2.0, v3.0)
        under key -1."""
        if self.version != V30 and (self.root / "meta" / "episodes_stats.jsonl").is_file():
            rows = read_jsonl(self._path("meta/episodes_stats.jsonl"))
            return {s["episode_index"]: s["stats"] for s in rows}
        return {-1: json.loads(self._path("meta/stats.json").read_text())}

    def __iter__(self) -> Iterator[Episode]:
        for i in self.episodes:
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

    def _format(self, template: str, **kw: Any) -> str:
        try:
            return template.format(**kw)
        except (KeyError, IndexError, ValueError) as e:
            raise DatasetFormatError(
                f"{self.root / 'meta' / 'info.json'}: path template {template!r} does not fit "
                f"layout {self.version} ({type(e).__name__}: {e})"
            ) from e

    # -- frames -----------------------------------------------------------------------------------

    def _data_file(self, i: int) -> Path:
        if self.version == V30:
            loc = {k: self._meta_int(i, f"data/{k}") for k in ("chunk_index", "file_index")}
            return self._path(self._format(self.data_path, **loc))
        chunk = i // self.chunks_size
        return self._path(self._format(self.data_path, episode_chunk=chunk, episode_index=i))

    def _meta_int(self, i: int, key: str) -> int:
        value = self.episodes[i].get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise DatasetFormatError(
                f"{self.root / 'meta' / 'episodes'}: episode {i} has no valid {key!r} (got {value!r})"
            )
        return value

    def episode(self, i: int) -> Episode:
        if i not in self.episodes:
            raise IndexError(f"episode {i} does not exist; this dataset has episodes {sorted(self.episodes)}")
        path = self._data_file(i)
        table = read_parquet(path, filters=[("episode_index", "=", i)] if self.version == V30 else None)
        cols = table.column_names
        for required in (ACTION_KEY, STATE_KEY, "frame_index", "timestamp"):
            if required not in cols:
                raise DatasetFormatError(f"{path} has no {required!r} column (columns: {cols})")
        if table.num_rows == 0:
            raise DatasetFormatError(f"{path} holds no rows of episode {i}")
        table = table.take(pc.sort_indices(table, [("frame_index", "ascending")]))
        n = table.num_rows
        timestamp = table.column("timestamp").to_numpy().astype(np.float64)
        images = {
            key.removeprefix(IMAGE_PREFIX): self._images(table, key, path, i, timestamp)
            for key in self.camera_keys
        }
        action = vectors(table, ACTION_KEY, path)
        state = vectors(table, STATE_KEY, path)
        tcp = vectors(table, TCP_KEY, path) if TCP_KEY in cols else None
        gt = table.column(GT_KEY).to_pylist() if GT_KEY in cols else [""] * n
        cams = table.column(CAMERAS_KEY).to_pylist() if CAMERAS_KEY in cols else [""] * n
        frame_index = table.column("frame_index").to_numpy()
        task_index = int(table.column("task_index")[0].as_py()) if "task_index" in cols else -1
        task = self.tasks.get(task_index) or self.task_of(i)
        frames = [
            EpisodeFrame(
                frame_index=int(frame_index[t]),
                timestamp=float(timestamp[t]),
                images={name: imgs[t] for name, imgs in images.items()},
                action=action[t],
                state=state[t],
                tcp_pose=None if tcp is None else tcp[t],
                ground_truth=codecs.ground_truth_from_json(gt[t]) if gt[t] else None,
                cameras=codecs.cameras_from_json(cams[t]) if cams[t] else {},
            )
            for t in range(n)
        ]
        meta = {
            k: v
            for k, v in self.episodes[i].items()
            if k not in ("episode_index", "tasks", "length")
            and not k.startswith(("data/", "videos/", "meta/", "dataset_"))
        }
        return Episode(
            index=i,
            task=task,
            fps=self.fps,
            frames=frames,
            meta=meta,
            state_names=self.names(STATE_KEY),
            action_names=self.names(ACTION_KEY),
        )

    def _images(
        self, table: pa.Table, key: str, data_file: Path, ep: int, timestamp: np.ndarray
    ) -> list[np.ndarray]:
        if self.features[key]["dtype"] == "video":
            path, start = self._video_file(key, ep)
            try:
                return codecs.decode_video_at(path, start + timestamp, self.fps)
            except ValueError as e:
                raise DatasetFormatError(f"episode {ep}, camera {key!r}: {e}") from e
        if key not in table.column_names:
            raise DatasetFormatError(
                f"{data_file}: camera column {key!r} is declared in info.json but missing from the parquet"
            )
        out = []
        for t, cell in enumerate(table.column(key).to_pylist()):
            img = codecs.decode_png(cell.get("bytes") if isinstance(cell, dict) else None)
            if img is None:
                raise DatasetFormatError(
                    f"{data_file}: {key!r} frame {t} of episode {ep} holds no decodable image "
                    "(corrupt PNG bytes)"
                )
            out.append(img)
        return out

    def _video_file(self, key: str, ep: int) -> tuple[Path, float]:
        """The mp4 holding episode ep of camera `key`, and where the episode starts in it (seconds)."""
        assert self.video_path is not None
        if self.version != V30:
            chunk = ep // self.chunks_size
            return self._path(
                self._format(self.video_path, episode_chunk=chunk, video_key=key, episode_index=ep)
            ), 0.0
        loc = {k: self._meta_int(ep, f"videos/{key}/{k}") for k in ("chunk_index", "file_index")}
        start = self.episodes[ep].get(f"videos/{key}/from_timestamp")
        if not is_number(start) or not math.isfinite(start) or start < 0:
            raise DatasetFormatError(
                f"{self.root / 'meta' / 'episodes'}: episode {ep} has no valid "
                f"'videos/{key}/from_timestamp' (got {start!r})"
            )
        return self._path(self._format(self.video_path, video_key=key, **loc)), float(start)
