"""Log StepRecords to Rerun 0.39 with one stable entity layout; stream to the app and save .rrd at once.

Entity layout (for branch "main"; another branch `b` lives under `branches/b/` with the same tree):

    world/camera/image                               JPEG-compressed main camera image
    world/camera/ground_truth/{boxes,points,target,expert_trace}
    world/camera/{policy}/spatial/{boxes,points,trace}
    world/camera/{policy}/rollout                     the chunk's end-effector path, projected
    world/camera/{policy}/attention                   query-former heatmap over the image
    actions/{policy}/{dim}                            first action of the chunk (unnormalised)
    actions/executed/{dim}, actions/recorded/{dim}
    metrics/{policy}/{name}
    log/{policy}                                      instruction, raw model text, parse problems
    timings/{stage}                                   milliseconds

Timeline: "step" (sequence). Entities a step has nothing for are cleared, so the viewer never shows
a stale answer from an earlier step as if it were current.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import cv2
import numpy as np
import rerun as rr

from workbench.records import PolicyStep, StepRecord
from workbench.spatial import Box, Point, Trace
from workbench.viz.overlay import EXPERT, GROUND_TRUTH, TARGET, policy_color

APPLICATION_ID = "st4vla-workbench"
TIMELINE = "step"
ACTION_DIMS = ("dx", "dy", "dz", "rx", "ry", "rz", "gripper")
_CLEAR = rr.Clear(recursive=False)


def branch_root(branch: str) -> str:
    """Entity prefix of a branch: "" for main, "branches/{name}/" otherwise."""
    return "" if branch == "main" else f"branches/{rr.escape_entity_path_part(branch)}/"


def policy_part(name: str) -> str:
    return rr.escape_entity_path_part(name)


def expected_entities(record: StepRecord) -> set[str]:
    """Every entity path `log_step` writes data (not a Clear) to for this record. Used by tests and replay."""
    r = branch_root(record.branch)
    cam = f"{r}world/camera"
    out = {f"{cam}/image"}
    gt = record.observation.ground_truth
    if gt is not None:
        out |= {f"{cam}/ground_truth/boxes"} if gt.objects else set()
        out |= {f"{cam}/ground_truth/points"} if gt.key_points else set()
        out |= {f"{cam}/ground_truth/target"} if gt.target is not None else set()
        out |= {f"{cam}/ground_truth/expert_trace"} if gt.expert_trace is not None else set()
    for name, ps in record.policies.items():
        p = policy_part(name)
        out.add(f"{r}log/{p}")
        if ps.spatial is not None:
            kinds = {type(g) for g in ps.spatial.geometry}
            out |= {f"{cam}/{p}/spatial/{k}" for t, k in _KINDS if t in kinds}
        if ps.chunk is not None:
            out |= {f"{r}actions/{p}/{d}" for d in ACTION_DIMS}
            if ps.chunk.ee_path_2d is not None and len(_finite(ps.chunk.ee_path_2d.points)) >= 1:
                out.add(f"{cam}/{p}/rollout")
            if ps.chunk.attention:
                out.add(f"{cam}/{p}/attention")
        out |= {f"{r}metrics/{p}/{k}" for k in ps.metrics}
    if record.executed_action is not None:
        out |= {f"{r}actions/executed/{d}" for d in ACTION_DIMS}
    if record.recorded_action is not None:
        out |= {f"{r}actions/recorded/{d}" for d in ACTION_DIMS}
    out |= {f"{r}timings/{k}" for k in record.timings}
    return out


_KINDS = ((Box, "boxes"), (Point, "points"), (Trace, "trace"))


def _finite(points) -> list[tuple[float, float]]:
    return [(x, y) for x, y in points if np.isfinite(x) and np.isfinite(y)]


class RerunLogger:
    """Writes StepRecords into one RecordingStream. Sink protocol: write(record), close().

    stream=True keeps a binary stream the app drains with `read()` once per callback;
    rrd_path saves the same data to disk at the same time.
    """

    def __init__(
        self,
        *,
        application_id: str = APPLICATION_ID,
        recording_id: str | None = None,
        rrd_path: str | Path | None = None,
        stream: bool = True,
        blueprint: rr.blueprint.Blueprint | None = None,
        jpeg_quality: int = 80,
    ) -> None:
        if not (stream or rrd_path):
            raise ValueError("RerunLogger needs somewhere to write: pass stream=True and/or rrd_path=")
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
        self.recording_id = recording_id or uuid.uuid4().hex
        self.rec = rr.RecordingStream(application_id, recording_id=self.recording_id)
        self.jpeg_quality = jpeg_quality
        self.rrd_path = Path(rrd_path) if rrd_path else None
        self._stream = self.rec.binary_stream() if stream else None
        sinks: list = []
        if self.rrd_path is not None:
            self.rrd_path.parent.mkdir(parents=True, exist_ok=True)
            sinks.append(rr.FileSink(str(self.rrd_path)))
        if self._stream is not None:
            sinks.append(self._stream)
        rr.set_sinks(*sinks, recording=self.rec)
        if blueprint is not None:
            self.rec.send_blueprint(blueprint)
        self._policy_order: list[str] = []

    # -- sink protocol -------------------------------------------------------------------------

    def write(self, record: StepRecord) -> None:
        log_step(self.rec, record, jpeg_quality=self.jpeg_quality, policy_order=self._policy_order)

    def note(self, event: dict) -> None:
        """Edits (instruction changes, branches) show up in the text log of the step they happen at."""
        root = branch_root(str(event.get("branch", "main")))
        self.rec.set_time(TIMELINE, sequence=int(event.get("step", 0)))
        self.rec.log(f"{root}log/events", rr.TextLog(_event_text(event), level="INFO"))

    def read(self) -> bytes:
        """Bytes logged since the last call (for gradio_rerun streaming); b'' when nothing new."""
        if self._stream is None:
            return b""
        data = self._stream.read()
        return bytes(data) if data else b""

    def close(self) -> None:
        self.rec.flush()
        self.read()  # drain what the app did not fetch, so the stream is not dropped with a warning
        rr.disconnect(recording=self.rec)


def _event_text(event: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in event.items())


def log_step(
    rec: rr.RecordingStream,
    record: StepRecord,
    *,
    jpeg_quality: int = 80,
    policy_order: list[str] | None = None,
) -> None:
    """Log one StepRecord at time step=record.step under its branch's root."""
    order = policy_order if policy_order is not None else []
    r = branch_root(record.branch)
    cam = f"{r}world/camera"
    obs = record.observation
    rec.set_time(TIMELINE, sequence=record.step)
    image = obs.images[obs.main_camera]
    rec.log(f"{cam}/image", rr.Image(image).compress(jpeg_quality=jpeg_quality))
    _log_ground_truth(rec, cam, record)
    for name, ps in record.policies.items():
        if name not in order:
            order.append(name)
        _log_policy(rec, r, cam, ps, order.index(name), image.shape[:2])
    _log_action(rec, f"{r}actions/executed", record.executed_action)
    _log_action(rec, f"{r}actions/recorded", record.recorded_action)
    for stage, seconds in record.timings.items():
        rec.log(f"{r}timings/{stage}", rr.Scalars([1000.0 * seconds]))


def _log_boxes(rec, path: str, boxes: list[Box], color) -> None:
    if not boxes:
        rec.log(path, _CLEAR)
        return
    arr = np.array([[b.x1, b.y1, b.x2, b.y2] for b in boxes], dtype=np.float32)
    rec.log(
        path,
        rr.Boxes2D(
            array=arr, array_format=rr.Box2DFormat.XYXY, labels=[b.label for b in boxes], colors=[color]
        ),
    )


def _log_points(rec, path: str, points: list[Point], color) -> None:
    if not points:
        rec.log(path, _CLEAR)
        return
    rec.log(
        path,
        rr.Points2D(
            [[p.x, p.y] for p in points], labels=[p.label for p in points], colors=[color], radii=2.0
        ),
    )


def _log_traces(rec, path: str, traces: list[Trace], color) -> None:
    strips = [_finite(t.points) for t in traces]
    strips = [s for s in strips if s]
    if not strips:
        rec.log(path, _CLEAR)
        return
    rec.log(
        path,
        rr.LineStrips2D(strips, labels=[t.label for t in traces][: len(strips)], colors=[color], radii=1.0),
    )


def _log_ground_truth(rec, cam: str, record: StepRecord) -> None:
    gt = record.observation.ground_truth
    base = f"{cam}/ground_truth"
    if gt is None:
        rec.log(base, rr.Clear(recursive=True))
        return
    _log_boxes(rec, f"{base}/boxes", gt.objects, GROUND_TRUTH)
    _log_points(rec, f"{base}/points", gt.key_points, GROUND_TRUTH)
    _log_boxes(rec, f"{base}/target", [gt.target] if gt.target else [], TARGET)
    _log_traces(rec, f"{base}/expert_trace", [gt.expert_trace] if gt.expert_trace else [], EXPERT)


def _log_policy(rec, r: str, cam: str, ps: PolicyStep, index: int, hw: tuple[int, int]) -> None:
    p = policy_part(ps.policy)
    color = policy_color(index)
    geometry = ps.spatial.geometry if ps.spatial is not None else []
    _log_boxes(rec, f"{cam}/{p}/spatial/boxes", [g for g in geometry if isinstance(g, Box)], color)
    _log_points(rec, f"{cam}/{p}/spatial/points", [g for g in geometry if isinstance(g, Point)], color)
    _log_traces(rec, f"{cam}/{p}/spatial/trace", [g for g in geometry if isinstance(g, Trace)], color)
    chunk = ps.chunk
    rollout = [chunk.ee_path_2d] if chunk is not None and chunk.ee_path_2d is not None else []
    if rollout and _finite(rollout[0].points):
        pts = _finite(rollout[0].points)
        rec.log(f"{cam}/{p}/rollout", rr.LineStrips2D([pts], colors=[color], radii=1.0))
    else:
        rec.log(f"{cam}/{p}/rollout", _CLEAR)
    if chunk is not None and chunk.attention:
        heat = next(iter(chunk.attention.values()))
        rec.log(f"{cam}/{p}/attention", attention_image(heat, hw).compress(jpeg_quality=70))
    else:
        rec.log(f"{cam}/{p}/attention", _CLEAR)
    if chunk is not None:
        _log_action(rec, f"{r}actions/{p}", chunk.actions[0])
    for k, v in ps.metrics.items():
        rec.log(f"{r}metrics/{p}/{k}", rr.Scalars([float(v)]))
    lines = [f"[{ps.policy}] {ps.instruction}"]
    level = "INFO"
    if ps.spatial is not None:
        lines.append(f"answer: {ps.spatial.text}")
        if ps.spatial.problems:
            lines.append("problems: " + "; ".join(ps.spatial.problems))
            level = "WARN"
    rec.log(f"{r}log/{p}", rr.TextLog("\n".join(lines), level=level))


def _log_action(rec, base: str, action: np.ndarray | None) -> None:
    if action is None:
        return
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.shape[0] != len(ACTION_DIMS):
        raise ValueError(f"{base}: an action has {len(ACTION_DIMS)} dims {ACTION_DIMS}, got shape {a.shape}")
    for d, v in zip(ACTION_DIMS, a, strict=True):
        rec.log(f"{base}/{d}", rr.Scalars([float(v)]))


def attention_image(heat: np.ndarray, hw: tuple[int, int]) -> rr.Image:
    """[h, w] attention -> a JET-coloured [H, W, 3] image at the camera's size, half transparent."""
    h = np.asarray(heat, dtype=np.float32)
    if h.ndim != 2:
        raise ValueError(f"attention heatmap must be [h, w], got shape {h.shape}")
    lo, hi = float(np.nanmin(h)), float(np.nanmax(h))
    norm = (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)
    u8 = (255 * norm).astype(np.uint8)
    big = cv2.resize(u8, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)  # [H, W]
    rgb = cv2.cvtColor(cv2.applyColorMap(big, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return rr.Image(rgb, opacity=0.5, draw_order=5.0)


# -- reading recordings back ---------------------------------------------------------------------


def rrd_entities_by_step(path: str | Path) -> dict[int, set[str]]:
    """step -> entity paths with data at that step (Clears excluded), read with Rerun's own RrdReader."""
    import warnings

    from rerun.chunk import RrdReader

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no recording at {path}")
    out: dict[int, set[str]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # files still being written have no footer: fine for streaming reads
        chunks = list(RrdReader(path).stream())
    for chunk in chunks:
        if chunk.is_static or TIMELINE not in chunk.timeline_names:
            continue
        batch = chunk.to_record_batch()
        data_cols = [n for n in batch.schema.names if ":" in n and not n.startswith("Clear:")]
        if not data_cols:
            continue
        entity = chunk.entity_path.lstrip("/")
        steps = batch.column(TIMELINE).to_pylist()
        present = np.zeros(len(steps), dtype=bool)
        for n in data_cols:
            present |= ~np.asarray(batch.column(n).is_null().to_pylist(), dtype=bool)
        for s, ok in zip(steps, present, strict=True):
            if ok:
                out.setdefault(int(s), set()).add(entity)
    return out
