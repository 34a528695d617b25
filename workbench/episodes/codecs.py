"""How episode frames become bytes and back: PNG images, mp4 videos, JSON extras, LeRobot statistics."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from workbench.records import Camera, GroundTruth
from workbench.spatial import Box, Point, Trace

# --- images ------------------------------------------------------------------------------------


def encode_png(image: np.ndarray) -> bytes:
    """[H, W, 3] uint8 RGB -> PNG bytes (lossless)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def decode_png(data: bytes | None) -> np.ndarray | None:
    """PNG (or any image) bytes -> [H, W, 3] uint8 RGB; None when the bytes hold no image."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def encode_video(path: Path, frames: np.ndarray, fps: float) -> dict:
    """[N, H, W, 3] uint8 -> an h264 mp4 (yuv420p, CRF 18: close, not lossless); returns LeRobot's
    video info for the feature spec."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1:3]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.height, stream.width, stream.pix_fmt = h, w, "yuv420p"
        stream.options = {"crf": "18", "g": "2"}
        for img in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode())  # flush the encoder
    return {
        "video.height": h,
        "video.width": w,
        "video.codec": "h264",
        "video.pix_fmt": "yuv420p",
        "video.is_depth_map": False,
        "video.fps": fps,
        "video.channels": 3,
        "has_audio": False,
    }


def decode_video(path: Path) -> list[np.ndarray]:
    """Every frame of an mp4 as [H, W, 3] uint8 RGB; ValueError if it cannot be decoded."""
    import av

    try:
        with av.open(str(path)) as container:
            return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except av.FFmpegError as e:
        raise ValueError(f"cannot decode {path}: {e}") from e


def decode_video_at(path: Path, times: np.ndarray, fps: float) -> list[np.ndarray]:
    """The frames of an mp4 shown at `times` (seconds, ascending) as [H, W, 3] uint8 RGB.

    Seeks to the key frame before times[0] and decodes forward to times[-1] only, so an episode in
    the middle of a long file shared by many episodes costs its own frames (plus one GOP). Each time
    takes the decoded frame nearest to it, which must lie within half a frame period; ValueError
    (naming the file) otherwise or when the file cannot be decoded.
    """
    import av

    tol = 0.5 / fps
    out: list[np.ndarray] = []
    best: tuple[float, av.VideoFrame] | None = None  # (distance, frame) nearest to times[len(out)]
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if times[0] > tol and stream.time_base is not None:
                container.seek(int(max(0.0, times[0] - tol) / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                ft = float(frame.time if frame.time is not None else frame.pts * stream.time_base)
                while len(out) < len(times):
                    target = float(times[len(out)])
                    if best is not None and abs(ft - target) >= best[0]:  # moving away: keep the best
                        out.append(best[1].to_ndarray(format="rgb24"))
                        best = None
                        continue
                    if abs(ft - target) <= tol:
                        best = (abs(ft - target), frame)
                    break
                if len(out) == len(times) or ft > float(times[-1]) + tol:
                    break
    except av.FFmpegError as e:
        raise ValueError(f"cannot decode {path}: {e}") from e
    if best is not None and len(out) < len(times):
        out.append(best[1].to_ndarray(format="rgb24"))
    if len(out) < len(times):
        missing = float(times[len(out)])
        raise ValueError(
            f"{path} has no frame at {missing:.3f} s (within {tol:.3f} s); it holds fewer frames than "
            f"the episode's {len(times)} or its timestamps do not match the metadata"
        )
    return out


# --- JSON extras: ground truth and cameras -------------------------------------------------------


def ground_truth_to_json(gt: GroundTruth) -> str:
    return json.dumps(asdict(gt))


def ground_truth_from_json(text: str) -> GroundTruth:
    d = json.loads(text)
    trace = d.get("expert_trace")
    return GroundTruth(
        objects=[Box(**b) for b in d.get("objects", [])],
        key_points=[Point(**p) for p in d.get("key_points", [])],
        target=Box(**d["target"]) if d.get("target") else None,
        object_label=d.get("object_label", d.get("source_label", "")),  # source_label: the older name
        target_label=d.get("target_label", ""),
        expert_trace=Trace(tuple(tuple(p) for p in trace["points"]), trace.get("label", ""))
        if trace
        else None,
    )


def cameras_to_json(cameras: dict[str, Camera]) -> str:
    return json.dumps(
        {
            k: {
                "intrinsic": c.intrinsic.tolist(),
                "extrinsic": c.extrinsic.tolist(),
                "width": c.width,
                "height": c.height,
            }
            for k, c in cameras.items()
        }
    )


def cameras_from_json(text: str) -> dict[str, Camera]:
    cams = json.loads(text).items()
    return {
        k: Camera(np.asarray(c["intrinsic"]), np.asarray(c["extrinsic"]), c["width"], c["height"])
        for k, c in cams
    }


# --- LeRobot statistics ------------------------------------------------------------------------


def stats(x: np.ndarray) -> dict[str, list]:
    """LeRobot per-feature statistics over axis 0 of [N, ...]."""
    x = x.astype(np.float64)
    return {
        "min": x.min(0).tolist(),
        "max": x.max(0).tolist(),
        "mean": x.mean(0).tolist(),
        "std": x.std(0).tolist(),
        "count": [len(x)],
    }


def aggregate_stats(episodes: list[dict[str, dict]]) -> dict[str, dict]:
    """Per-episode stats -> dataset stats (meta/stats.json): min of mins, max of maxes, the
    count-weighted mean, and the pooled std (within- plus between-episode variance)."""
    out: dict[str, dict] = {}
    for key in episodes[0]:
        count = np.array([e[key]["count"][0] for e in episodes], dtype=np.float64)
        w = count.reshape(-1, *[1] * np.ndim(episodes[0][key]["mean"])) / count.sum()
        mean = np.array([e[key]["mean"] for e in episodes])
        std = np.array([e[key]["std"] for e in episodes])
        total_mean = (w * mean).sum(0)
        var = (w * (std**2 + (mean - total_mean) ** 2)).sum(0)
        out[key] = {
            "min": np.min([e[key]["min"] for e in episodes], axis=0).tolist(),
            "max": np.max([e[key]["max"] for e in episodes], axis=0).tolist(),
            "mean": total_mean.tolist(),
            "std": np.sqrt(var).tolist(),
            "count": [int(count.sum())],
        }
    return out


def image_stats(images: np.ndarray) -> dict[str, list]:
    """[N, H, W, 3] uint8 -> per-channel stats in [0, 1], shaped [3, 1, 1] as LeRobot stores them.
    Estimated on every 4th pixel row and column (LeRobot subsamples images for stats too)."""
    s = stats(images[:, ::4, ::4].reshape(-1, 3).astype(np.float32) / 255.0)
    return {k: [[[c]] for c in s[k]] for k in ("min", "max", "mean", "std")} | {"count": [len(images)]}
