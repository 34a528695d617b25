"""MP4 export of steps with overlays drawn (OpenCV VideoWriter, mp4v). Also usable as a live sink."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from workbench.records import StepRecord
from workbench.viz.overlay import draw_step


class VideoSink:
    """Sink protocol: write(record), close(). Frames are the main camera with overlays, upscaled by `scale`.

    Only records of one branch are written (a branched run would otherwise jump back in time).
    """

    def __init__(self, path: str | Path, *, fps: float = 5.0, scale: int = 2, branch: str = "main") -> None:
        self.path = Path(path)
        if self.path.suffix.lower() != ".mp4":
            raise ValueError(f"video path must end in .mp4, got {self.path.name}")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps, self.scale, self.branch = fps, scale, branch
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, record: StepRecord) -> None:
        if record.branch != self.branch:
            return
        frame = draw_step(record, scale=self.scale)  # [H, W, 3] RGB
        h, w = frame.shape[:2]
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise RuntimeError(f"OpenCV could not open an mp4v writer at {self.path}")
            self._size = (w, h)
        elif (w, h) != self._size:
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


def write_mp4(records: Iterable[StepRecord], path: str | Path, *, fps: float = 5.0, scale: int = 2) -> Path:
    records = list(records)
    if not records:
        raise ValueError("write_mp4 needs at least one step record")
    sink = VideoSink(path, fps=fps, scale=scale, branch=records[0].branch)
    try:
        for r in records:
            sink.write(r)
    finally:
        sink.close()
    return sink.path


def read_frames(path: str | Path) -> list[np.ndarray]:
    """Decode an MP4 back into RGB frames (for tests and thumbnails)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames
