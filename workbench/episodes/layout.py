"""LeRobot dataset layouts (v2.0, v2.1, v3.0): path templates, feature specs and the format error.

Shared by the reader (`lerobot.py`) and the writer (`writer.py`); nothing here touches the disk.

v2.x: one parquet file per episode, one mp4 per episode and camera, JSON-lines metadata:
    meta/info.json, meta/episodes.jsonl, meta/tasks.jsonl, meta/episodes_stats.jsonl (v2.1) or
    meta/stats.json (v2.0)
    data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet
    videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4

v3.0: files that hold many episodes, parquet metadata:
    meta/info.json, meta/tasks.parquet (task_index, task), meta/stats.json
    meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet   one row per episode:
        episode_index, tasks [str], length, data/chunk_index, data/file_index, dataset_from_index,
        dataset_to_index, videos/<key>/{chunk_index, file_index, from_timestamp, to_timestamp},
        stats/<feature>/{min, max, mean, std, count}, ...
    data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet          rows of many episodes
    videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4  many episodes back to back;
        an episode's frame t sits at from_timestamp + t / fps of its file
"""

from __future__ import annotations

V20, V21, V30 = "v2.0", "v2.1", "v3.0"
READABLE_VERSIONS = (V20, V21, V30)
WRITABLE_VERSIONS = (V21, V30)
CHUNKS_SIZE = 1000

V2_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V2_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V3_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_TASKS_PATH = "meta/tasks.parquet"

IMAGE_PREFIX = "observation.images."
STATE_KEY = "observation.state"
ACTION_KEY = "action"
TCP_KEY = "observation.tcp_pose"
GT_KEY = "observation.ground_truth"
CAMERAS_KEY = "observation.cameras"
CAMERA_DTYPES = ("image", "video")
# Columns every frame has; the writer fills them, so callers never pass them.
INDEX_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}


class DatasetFormatError(ValueError):
    """The files exist but are not a dataset this module can read (wrong version, corrupt, inconsistent).
    The message names the file (and the field) at fault."""


def version_way_out(version: object) -> str:
    """What a user can do with a dataset of a layout this package does not read."""
    if isinstance(version, str) and version.startswith("v1"):
        return (
            "convert it to v2.0 with LeRobot 0.3.x (python -m lerobot.datasets.v2.convert_dataset_v1_to_v2 "
            "--repo-id <id>), then open it again"
        )
    return (
        f"LeRobot layouts {', '.join(READABLE_VERSIONS)} are read; a newer layout needs a newer "
        "workbench. Re-export the dataset with a LeRobot release that writes v3.0 (0.4 to 0.6)"
    )


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
    features[STATE_KEY] = {"dtype": "float32", "shape": [state_dim], "names": None}
    if tcp_pose:
        features[TCP_KEY] = {
            "dtype": "float32",
            "shape": [7],
            "names": ["x", "y", "z", "qw", "qx", "qy", "qz"],
        }
    features[ACTION_KEY] = {"dtype": "float32", "shape": [action_dim], "names": None}
    features[GT_KEY] = {"dtype": "string", "shape": [1], "names": None}
    features[CAMERAS_KEY] = {"dtype": "string", "shape": [1], "names": None}
    return features


def feature_names(spec: dict, dim: int) -> tuple[str, ...]:
    """Per-dimension names of a vector feature: its "names" (a list, or LeRobot's {"motors": [...]}
    form), else "0", "1", ... when absent or of the wrong length."""
    names = spec.get("names")
    if isinstance(names, dict) and len(names) == 1:
        names = next(iter(names.values()))
    if isinstance(names, list) and len(names) == dim and all(isinstance(n, str) for n in names):
        return tuple(names)
    return tuple(str(i) for i in range(dim))
