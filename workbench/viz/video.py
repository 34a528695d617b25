"""Video export of steps with overlays drawn: H.264 MP4 that browsers play. Also usable as a live sink.

Encoding: libx264 through PyAV, yuv420p, `+faststart` (the index before the data, so a browser starts
playing before the whole file has arrived), one frame per step at the source's control rate
(`control_rate`: 5 Hz for the built-in sim). Chromium and Firefox both play H.264 in MP4.

Frame layout ([H', W', 3] RGB, H' and W' even):
    the main camera image at its own resolution, upscaled by a whole factor (nearest) until it is at
    least MIN_HEIGHT pixels tall, never downscaled; on it the ground truth (dashed, one label per
    object, on its true box), the expert's path (grey), every policy's spatial answer (solid, its slot
    colour; names no true box carries are labelled once) and its action rollout (dots);
    below it a caption band: the step, branch and instruction, a colour legend, and at the episode's
    end its outcome (workbench/triage.py).
Line widths and font sizes scale with the frame's height (`Style.for_height`), so labels stay readable
at every camera size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from workbench.records import StepRecord
from workbench.spatial import Box, Geometry, Point, Trace
from workbench.viz.overlay import EXPERT, GROUND_TRUTH, TARGET, policy_color

MIN_HEIGHT = 480  # frames are upscaled by a whole factor to at least this many pixels tall
CODEC = "libx264"
PIX_FMT = "yuv420p"
CRF = 18  # x264 quality (lower is better; 18 is visually lossless for these frames)
DEFAULT_RATE = 5.0  # Hz, when the source's control rate is not known
FONT = cv2.FONT_HERSHEY_SIMPLEX
RGB = tuple[int, int, int]
WHITE: RGB = (255, 255, 255)
BAND: RGB = (20, 20, 20)
OUTCOME_ROWS = 2  # caption rows kept for the episode's outcome on the last frame


@dataclass(frozen=True)
class Style:
    """Line widths and font sizes for a frame of a given height (all in pixels of that frame)."""

    line: int
    font_scale: float
    font_thickness: int
    dot: int

    @classmethod
    def for_height(cls, height: int) -> Style:
        u = max(1.0, height / MIN_HEIGHT)  # 1 at 480 px, 2 at 960 px
        return cls(line=max(2, round(2 * u)), font_scale=0.6 * u, font_thickness=max(1, round(1.5 * u)),
                   dot=max(3, round(3 * u)))  # fmt: skip

    def text_size(self, text: str) -> tuple[int, int, int]:
        """(width, height above the baseline, depth below it) of `text` in this style."""
        (w, h), base = cv2.getTextSize(text, FONT, self.font_scale, self.font_thickness)
        return w, h, base


def upscale_factor(height: int, min_height: int = MIN_HEIGHT) -> int:
    """The whole factor that brings an image `height` pixels tall to at least `min_height` (>= 1)."""
    if height < 1:
        raise ValueError(f"image height must be positive, got {height}")
    return max(1, math.ceil(min_height / height))


def _ascii(text: str) -> str:
    """OpenCV's Hershey fonts draw ASCII only."""
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in str(text))


def _fit(text: str, style: Style, width: int) -> str:
    text = _ascii(text)
    while text and style.text_size(text)[0] > width:
        text = text[:-2] + "~" if len(text) > 2 else ""
    return text


def _pt(x: float, y: float, k: float) -> tuple[int, int]:
    return int(round(x * k)), int(round(y * k))


def _dashed_rect(img: np.ndarray, box: Box, k: float, color: RGB, style: Style) -> None:
    (x1, y1), (x2, y2) = _pt(box.x1, box.y1, k), _pt(box.x2, box.y2, k)
    dash = 4 * style.line
    for a, b in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = max(abs(b[0] - a[0]), abs(b[1] - a[1]))
        for s in range(0, length, 2 * dash):
            t0, t1 = s / max(length, 1), min(s + dash, length) / max(length, 1)
            p0 = (round(a[0] + (b[0] - a[0]) * t0), round(a[1] + (b[1] - a[1]) * t0))
            p1 = (round(a[0] + (b[0] - a[0]) * t1), round(a[1] + (b[1] - a[1]) * t1))
            cv2.line(img, p0, p1, color, style.line, cv2.LINE_AA)


def _label(img: np.ndarray, text: str, x: int, y: int, color: RGB, style: Style, taken: list) -> None:
    """Text on a dark plate, its bottom-left near (x, y), inside the image and moved up (then down)
    off the plates already in `taken` (a list of (x1, y1, x2, y2) it appends to)."""
    text = _ascii(text)
    w, h, base = style.text_size(text)
    x = int(np.clip(x, 0, max(0, img.shape[1] - w - 4)))
    step = h + base + 6

    def clear(y: int) -> bool:
        r = (x, y - h - 4, x + w + 4, y + base + 2)
        return not any(r[0] < t[2] and t[0] < r[2] and r[1] < t[3] and t[1] < r[3] for t in taken)

    lo, hi = h + 4, img.shape[0] - base - 2
    tries = [int(np.clip(y + d * step, lo, hi)) for n in range(6) for d in ((-n, n) if n else (0,))]
    y = next((t for t in tries if clear(t)), tries[0])
    taken.append((x, y - h - 4, x + w + 4, y + base + 2))
    cv2.rectangle(img, (x, y - h - 4), (x + w + 4, y + base + 2), BAND, -1)
    cv2.putText(img, text, (x + 2, y), FONT, style.font_scale, color, style.font_thickness, cv2.LINE_AA)


def _draw(img: np.ndarray, g: Geometry, k: float, color: RGB, style: Style, dashed: bool = False) -> None:
    if isinstance(g, Box):
        if dashed:
            _dashed_rect(img, g, k, color, style)
        else:
            cv2.rectangle(img, _pt(g.x1, g.y1, k), _pt(g.x2, g.y2, k), color, style.line, cv2.LINE_AA)
    elif isinstance(g, Point) and np.isfinite(g.x) and np.isfinite(g.y):
        cv2.circle(img, _pt(g.x, g.y, k), style.dot + 1, color, -1, cv2.LINE_AA)
    elif isinstance(g, Trace):
        pts = [_pt(x, y, k) for x, y in g.points if np.isfinite(x) and np.isfinite(y)]
        if len(pts) >= 2:
            cv2.polylines(img, [np.int32(pts).reshape(-1, 1, 2)], False, color, style.line, cv2.LINE_AA)


def _label_once(img, g: Geometry, k: float, color: RGB, style: Style, seen: dict[str, tuple]) -> None:
    """One label per object name per frame (`seen`: name -> its plate), above its box or point."""
    if not g.label or g.label in seen or not isinstance(g, Box | Point):
        return
    x, y = (g.x1, g.y1) if isinstance(g, Box) else (g.x, g.y)
    taken = list(seen.values())
    _label(img, g.label, round(x * k), round(y * k) - style.line - 2, color, style, taken)
    seen[g.label] = taken[-1]


def draw_image(record: StepRecord, k: int, style: Style) -> np.ndarray:
    """The main camera image upscaled by k with truth, answers and rollouts drawn: [H*k, W*k, 3]."""
    obs = record.observation
    image = np.asarray(obs.images[obs.main_camera])
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"video frames need an [H, W, 3] uint8 image, got {image.shape} {image.dtype}")
    out = cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST) if k > 1 else image.copy()
    labelled: dict[str, tuple] = {}  # name -> where its label plate is
    gt = obs.ground_truth
    if gt is not None:
        if gt.expert_trace is not None:
            _draw(out, gt.expert_trace, k, EXPERT, style)
        for box in gt.objects:
            colour = TARGET if gt.target_label and box.label == gt.target_label else GROUND_TRUTH
            _draw(out, box, k, colour, style, dashed=True)
    for i, ps in enumerate(record.policies.values()):
        colour = policy_color(i)
        geometry = list(ps.spatial.geometry) if ps.spatial is not None else []
        for g in geometry:
            _draw(out, g, k, colour, style)
        if ps.chunk is not None and ps.chunk.ee_path_2d is not None:
            for x, y in ps.chunk.ee_path_2d.points:
                if np.isfinite(x) and np.isfinite(y):
                    cv2.circle(out, _pt(x, y, k), style.dot, colour, -1, cv2.LINE_AA)
    if gt is not None:  # truth labels first: an object's name shows once, on its true box
        for box in gt.objects:
            colour = TARGET if gt.target_label and box.label == gt.target_label else GROUND_TRUTH
            _label_once(out, box, k, colour, style, labelled)
    for i, ps in enumerate(record.policies.values()):  # then names only a policy's answer gives
        for g in ps.spatial.geometry if ps.spatial is not None else []:
            _label_once(out, g, k, policy_color(i), style, labelled)
    return out


def _wrap(text: str, style: Style, width: int, n: int) -> list[str]:
    """`text` in exactly n lines of at most `width` pixels, broken at spaces (blank lines pad it; the
    last line is cut with '~' if it is still too long)."""
    lines, words = [], _ascii(text).split()
    while words and len(lines) < n - 1:
        k = len(words)
        while k > 1 and style.text_size(" ".join(words[:k]))[0] > width:
            k -= 1
        lines.append(" ".join(words[:k]))
        words = words[k:]
    lines.append(_fit(" ".join(words), style, width))
    return lines + [""] * (n - len(lines))


def caption_band(record: StepRecord, width: int, style: Style, outcome: str = "") -> np.ndarray:
    """[h, width, 3]: step, branch and instruction; the colour legend (wrapped to the width); the
    outcome in OUTCOME_ROWS rows (kept blank without one, so every frame of a video has the same
    height). Text too long for its line is cut with '~'."""
    instruction = next((ps.instruction for ps in record.policies.values()), record.observation.instruction)
    branch = "" if record.branch == "main" else f"  [{record.branch}]"
    legend = [("truth (dashed)", GROUND_TRUTH)]
    gt = record.observation.ground_truth
    if gt is not None and gt.target_label:
        legend.append(("target", TARGET))
    if gt is not None and gt.expert_trace is not None:
        legend.append(("expert path", EXPERT))
    legend += [(name, policy_color(i)) for i, name in enumerate(record.policies)]
    _, h, base = style.text_size("Ag")
    pad = max(4, h // 2)
    # rows of (x, text, colour, swatch?) placed left to right, legend entries wrapping
    rows: list[list[tuple[int, str, RGB, bool]]] = [
        [(pad, _fit(f"step {record.step}{branch}  {instruction}", style, width - 2 * pad), WHITE, False)]
    ]
    rows.append([])
    x = pad
    for text, colour in legend:
        text = _fit(text, style, width - 3 * pad - h)
        w = h + pad // 2 + style.text_size(text)[0]
        if rows[-1] and x + w > width - pad:
            rows.append([])
            x = pad
        rows[-1].append((x, text, colour, True))
        x += w + 2 * pad
    for line in _wrap(outcome, style, width - 2 * pad, OUTCOME_ROWS):  # rows kept blank without one
        rows.append([(pad, line, WHITE, False)] if line else [])
    row_h = h + base + pad
    band = np.full((pad + row_h * len(rows), width, 3), BAND, np.uint8)
    for n, row in enumerate(rows):
        y = pad + n * row_h + h
        for x, text, colour, swatch in row:
            if swatch:
                cv2.rectangle(band, (x, y - h), (x + h, y), colour, -1)
                x += h + pad // 2
            cv2.putText(band, text, (x, y), FONT, style.font_scale, colour, style.font_thickness, cv2.LINE_AA)
    return band


def compose_frame(record: StepRecord, *, min_height: int = MIN_HEIGHT, outcome: str = "") -> np.ndarray:
    """One video frame of a step (see the module doc): [H', W', 3] uint8 RGB with H', W' even."""
    obs = record.observation
    height = np.asarray(obs.images[obs.main_camera]).shape[0]
    k = upscale_factor(height, min_height)
    style = Style.for_height(height * k)
    image = draw_image(record, k, style)
    frame = np.concatenate([image, caption_band(record, image.shape[1], style, outcome)], axis=0)
    return _even(frame)


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad by one row / column of the band colour where a side is odd (yuv420p needs even sizes)."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), constant_values=BAND[0])


class VideoSink:
    """Sink protocol: write(record), close(). Only records of one branch are written (a branched run
    would otherwise jump back in time). The first frame fixes the size; later frames of another size
    are resized to it."""

    def __init__(self, path: str | Path, *, fps: float = DEFAULT_RATE, branch: str = "main",
                 min_height: int = MIN_HEIGHT) -> None:  # fmt: skip
        self.path = Path(path)
        if self.path.suffix.lower() != ".mp4":
            raise ValueError(f"video path must end in .mp4, got {self.path.name}")
        if not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number (the source's control rate in Hz), got {fps!r}")
        self.fps, self.branch, self.min_height = float(fps), branch, int(min_height)
        self._container: Any = None
        self._stream: Any = None
        self._size: tuple[int, int] | None = None  # (width, height)
        self.frames = 0

    def write(self, record: StepRecord, outcome: str = "") -> None:
        if record.branch != self.branch:
            return
        frame = compose_frame(record, min_height=self.min_height, outcome=outcome)
        h, w = frame.shape[:2]
        if self._container is None:
            self._open(w, h)
        elif (w, h) != self._size:
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        import av

        for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self._container.mux(packet)
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), "w", options={"movflags": "+faststart"})
        rate = Fraction(self.fps).limit_denominator(1001)
        self._stream = self._container.add_stream(CODEC, rate=rate, options={"crf": str(CRF)})
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, PIX_FMT
        self._size = (width, height)

    def close(self) -> None:
        if self._container is not None:
            for packet in self._stream.encode():  # flush the encoder's delayed frames
                self._container.mux(packet)
            self._container.close()
            self._container = None


def write_mp4(records: Iterable[StepRecord], path: str | Path, *, fps: float = DEFAULT_RATE,
              min_height: int = MIN_HEIGHT) -> Path:  # fmt: skip
    """Write one branch's steps (the first record's) as an H.264 MP4; the last frame says how the
    episode ended (success, or the failure triage) when it ended."""
    from workbench.triage import lineage

    records = list(records)
    if not records:
        raise ValueError("write_mp4 needs at least one step record")
    sink = VideoSink(path, fps=fps, branch=records[0].branch, min_height=min_height)
    mine = [r for r in records if r.branch == sink.branch]
    ending = _ending(lineage(records, sink.branch))
    try:
        for r in mine:
            sink.write(r, outcome=ending if r is mine[-1] else "")
    finally:
        sink.close()
    return sink.path


def _ending(records: list[StepRecord]) -> str:
    """The last frame's outcome row: "success at step N", "failed at step N: reason - numbers", or ""
    (still running, or no ground truth to say why)."""
    from workbench.triage import episode_verdict

    verdict = episode_verdict(records)
    if verdict is None or verdict.reason == "unknown":
        return ""
    if verdict.reason == "success":
        return f"success at step {next(r.step for r in records if r.info.get('success'))}"
    return f"failed at step {records[-1].step}: {verdict.reason} ({verdict.sentence().split(': ', 1)[-1]})"


def control_rate(source: dict | None) -> float:
    """The control rate (Hz) of a session's source (session.json's loaded.source): the built-in sim's,
    a SimplerEnv task's robot's, or a LeRobot recording's fps; DEFAULT_RATE when it cannot be told."""
    source = source or {}
    kind = source.get("kind")
    if kind == "sim":
        from workbench.sim.tabletop import SimConfig

        return float(SimConfig().control_hz)
    if kind == "simpler" and source.get("task"):
        from workbench.sim.simpler import _robot_defaults

        return float(_robot_defaults(source["task"])[1])
    if kind == "episode" and source.get("path"):
        return _recording_rate(Path(source["path"]))
    return DEFAULT_RATE


def _recording_rate(path: Path) -> float:
    import json

    for folder in (path, *path.parents[:2]):
        info = folder / "meta" / "info.json"
        if info.is_file():
            fps = json.loads(info.read_text()).get("fps")
            return float(fps) if isinstance(fps, int | float) and fps > 0 else DEFAULT_RATE
        session = folder / "session.json"
        if session.is_file():
            return control_rate(json.loads(session.read_text()).get("loaded", {}).get("source"))
    return DEFAULT_RATE


def read_frames(path: str | Path) -> list[np.ndarray]:
    """Decode a video back into RGB frames [H, W, 3] (for tests and thumbnails)."""
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cannot open video {path}: no such file")
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
