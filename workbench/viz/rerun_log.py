"""Log StepRecords to Rerun 0.39 with one stable entity layout; stream to the app and save .rrd at once.

Entity layout (for branch "main"; another branch `b` lives under `branches/b/` with the same tree):

    world/camera/image                               main camera image: JPEG, or raw pixels (jpeg_quality=None)
    world/cameras/{name}                              every other camera (a recording's wrist view...), the same
    world/camera/ground_truth/{boxes,points,target,expert_trace}
    world/camera/{policy}/spatial/{boxes,points,trace}
    world/camera/{policy}/rollout                     the chunk's end-effector path, projected
    world/camera/{policy}/attention                   query-former heatmap (only with attention=True)
    actions/{policy}                                  first action of the chunk (unnormalised), 7 series
    actions/executed, actions/recorded                7 series each: dx dy dz rx ry rz gripper
    state                                             the robot state, one series per dimension, named
                                                      by the source (a dataset's info.json) or 0, 1, ...
    metrics/{policy}                                  one series per grounding metric
    log/{policy}                                      instruction, raw model text, parse problems
    timings                                           one series per stage, milliseconds

Each scalar group is one entity with named series (SeriesLines) rather than one entity per dimension:
every entity costs a chunk (~1 KB) per step, and that is most of a step's bytes at 224x224.

Readable overlays: ground truth is drawn thin (objects green, the target teal, the expert's path grey),
each policy thick in its own colour (overlay.POLICY_COLORS: none green, teal or grey); an object's
name is written once, on its ground-truth box; a policy's box or point carries a label only when it
names something the ground truth does not (or there is no ground truth). Rollouts carry no label.

Timeline: "step" (sequence). Entities a step has nothing for are cleared, so the viewer never shows
a stale answer from an earlier step as if it were current.

Crash safety of a saved .rrd: Rerun 0.39's FileSink writes the file's footer (its manifest) only when
the recording is closed, so a killed writer leaves a file that `rerun rrd verify` refuses, possibly
with a torn last message. The logger flushes the file after every step (so every complete step is on
disk) and holds an advisory lock on it while it writes; `repair_rrd` rewrites a footer-less file that no
live process holds from its complete messages, so it verifies again (sessions.load_session calls it).
"""

from __future__ import annotations

import fcntl
import os
import struct
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
GT_RADIUS = 0.5  # ground truth: thin outlines (UI points)
POLICY_RADIUS = 1.5  # a policy's answer and rollout: thick, in its colour


def branch_root(branch: str) -> str:
    """Entity prefix of a branch: "" for main, "branches/{name}/" otherwise."""
    return "" if branch == "main" else f"branches/{rr.escape_entity_path_part(branch)}/"


def policy_part(name: str) -> str:
    return rr.escape_entity_path_part(name)


_KINDS = ((Box, "boxes"), (Point, "points"), (Trace, "trace"))


def _finite(points) -> list[tuple[float, float]]:
    return [(x, y) for x, y in points if np.isfinite(x) and np.isfinite(y)]


JPEG_QUALITY = 75  # a camera image logged as JPEG (RerunLogger(jpeg_quality=...))


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
        jpeg_quality: int | None = JPEG_QUALITY,
        state_names: tuple[str, ...] = (),
        recorded_action_names: tuple[str, ...] = (),
        attention: bool = False,
    ) -> None:
        """attention: log each policy's attention heatmap over the camera image (off: it tints the
        whole image, and it is a second image per policy and step to stream).
        jpeg_quality: None logs camera images as raw pixels. The web viewer then draws a step's image in
        the same frame as its overlays; a JPEG is decoded asynchronously, so the image is blank for a
        few frames (about 0.8 s with software WebGL). Rerun's chunks are LZ4-compressed, so a rendered
        frame costs about as many bytes raw as JPEG; a real camera's frame costs several times more."""
        if not (stream or rrd_path):
            raise ValueError("RerunLogger needs somewhere to write: pass stream=True and/or rrd_path=")
        if jpeg_quality is not None and not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
        self.recording_id = recording_id or uuid.uuid4().hex
        self.rec = rr.RecordingStream(application_id, recording_id=self.recording_id)
        rr.set_log_time_enabled(False, recording=self.rec)  # the "step" timeline is the one that matters
        self.jpeg_quality = jpeg_quality
        self.state_names = tuple(state_names)  # used when they match the state's length
        # the source's own names of its recorded actions' dimensions (a dataset's info.json): a recorded
        # action is labelled as the dataset labels it; without one name per dimension, ACTION_DIMS
        given = tuple(recorded_action_names)
        self.recorded_action_names = given if len(given) == len(ACTION_DIMS) else ACTION_DIMS
        self.attention = bool(attention)
        self.rrd_path = Path(rrd_path) if rrd_path else None
        self._lock_fd: int | None = None
        sinks: list = []
        if self.rrd_path is not None:
            self.rrd_path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _lock_for_writing(self.rrd_path)
            sinks.append(rr.FileSink(str(self.rrd_path)))
        self._stream = self.rec.binary_stream() if stream else None
        if self._stream is not None:
            sinks.append(self._stream)
        rr.set_sinks(*sinks, recording=self.rec)
        if blueprint is not None:
            self.send_blueprint(blueprint)
        self._policy_order: list[str] = []
        self._live: set[str] = set()  # entities holding data now (only these need a Clear)
        self._series: dict[str, tuple[str, ...]] = {}  # multi-series entity -> the names it was given

    # -- sink protocol -------------------------------------------------------------------------

    def write(self, record: StepRecord) -> None:
        """Log one StepRecord at time step=record.step under its branch's root."""
        r = branch_root(record.branch)
        cam = f"{r}world/camera"
        obs = record.observation
        self.rec.set_time(TIMELINE, sequence=record.step)
        image = obs.images[obs.main_camera]
        self._log(f"{cam}/image", self._image(image))
        for name in list(obs.images)[1:]:
            self._log(f"{r}world/cameras/{policy_part(name)}", self._image(obs.images[name]))
        named = self._ground_truth(cam, obs.ground_truth)
        for name, ps in record.policies.items():
            if name not in self._policy_order:
                self._policy_order.append(name)
            self._policy(r, cam, ps, self._policy_order.index(name), image.shape[:2], named)
        self._scalars(f"{r}actions/executed", ACTION_DIMS, _action(record.executed_action))
        self._scalars(f"{r}actions/recorded", self.recorded_action_names, _action(record.recorded_action))
        state = None if obs.state is None else np.asarray(obs.state, dtype=np.float64).reshape(-1)
        names = self.state_names
        if state is not None and len(names) != len(state):
            names = tuple(str(i) for i in range(len(state)))
        self._scalars(f"{r}state", names, None if state is None else state.tolist())
        timings = {k: 1000.0 * v for k, v in record.timings.items()}  # milliseconds
        self._scalars(f"{r}timings", tuple(timings), list(timings.values()) or None)
        if self.rrd_path is not None:
            self.rec.flush()  # the step is on disk before the next one starts (crash safety)

    def send_blueprint(self, blueprint: rr.blueprint.Blueprint) -> None:
        """Send a layout to the viewer. Unlike `rec.send_blueprint`, the blueprint stream built for it is
        disconnected afterwards: Rerun 0.39 keeps such a stream (and its two threads) alive until the
        process ends, so an app tab that changes layouts would pile them up."""
        from rerun import bindings
        from rerun.recording_stream import RecordingStream

        try:
            stream = RecordingStream._from_native(
                bindings.new_blueprint(
                    application_id=self.rec.get_application_id(),
                    make_default=False,
                    make_thread_default=False,
                    default_enabled=True,
                )
            )
            stream.set_time("blueprint", sequence=0)
            blueprint.to_blueprint()._log_to_stream(stream)
        except AttributeError:  # another Rerun version: its own call (which may keep the stream alive)
            self.rec.send_blueprint(blueprint)
            return
        bindings.send_blueprint(stream.memory_recording().storage, True, True, recording=self.rec.to_native())
        rr.disconnect(recording=stream)

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
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock: the file is complete, with its footer
            self._lock_fd = None

    # -- pieces ----------------------------------------------------------------------------------

    def _image(self, rgb: np.ndarray) -> rr.Image | rr.EncodedImage:
        """[H, W, 3] uint8 RGB -> raw pixels (jpeg_quality None) or a JPEG."""
        return rr.Image(rgb, color_model="RGB") if self.jpeg_quality is None else jpeg(rgb, self.jpeg_quality)

    def _log(self, path: str, archetype) -> None:
        self.rec.log(path, archetype)
        self._live.add(path)

    def _clear(self, path: str) -> None:
        # Clear only what holds data: an empty entity costs a chunk per step for nothing.
        if path in self._live:
            self.rec.log(path, _CLEAR)
            self._live.discard(path)

    def _boxes(
        self, path: str, boxes: list[Box], color, *, radius: float, named: set[str] = frozenset()
    ) -> None:
        """named: labels already written elsewhere in the image (left off here: one label per object)."""
        if not boxes:
            return self._clear(path)
        arr = np.array([[b.x1, b.y1, b.x2, b.y2] for b in boxes], dtype=np.float32)
        labels = [b.label if b.label not in named else "" for b in boxes]
        self._log(path, rr.Boxes2D(array=arr, array_format=rr.Box2DFormat.XYXY, labels=labels, colors=[color],
                                   radii=radius))  # fmt: skip

    def _points(
        self, path: str, points: list[Point], color, *, radius: float, named: set[str] = frozenset()
    ) -> None:
        if not points:
            return self._clear(path)
        xy = [[p.x, p.y] for p in points]
        labels = [p.label if p.label not in named else "" for p in points]
        self._log(path, rr.Points2D(xy, labels=labels, colors=[color], radii=radius))

    def _traces(self, path: str, traces: list[Trace], color, *, radius: float = 1.0) -> None:
        """Traces carry no text label: their colour says whose they are (the page's legend)."""
        kept = [pts for pts in (_finite(t.points) for t in traces) if pts]
        if not kept:
            return self._clear(path)
        self._log(path, rr.LineStrips2D(kept, colors=[color], radii=radius))

    def _scalars(self, path: str, names: tuple[str, ...], values: list[float] | None) -> None:
        """Several series in one entity: one chunk per step instead of one per dimension."""
        if values is None:
            return self._clear(path)
        if self._series.get(path) != names:
            self.rec.log(path, rr.SeriesLines(names=list(names)), static=True)
            self._series[path] = names
        self._log(path, rr.Scalars(np.asarray(values, dtype=np.float64)))

    def _ground_truth(self, cam: str, gt) -> set[str]:
        """Thin ground truth; returns the object names written on the image (policies skip those)."""
        base = f"{cam}/ground_truth"
        objects = list(gt.objects) if gt else []
        named = {b.label for b in objects if b.label}
        self._boxes(f"{base}/boxes", objects, GROUND_TRUTH, radius=GT_RADIUS)
        self._points(
            f"{base}/points",
            gt.key_points if gt else [],
            GROUND_TRUTH,
            radius=1.5,
            named=named | {p.label for p in (gt.key_points if gt else [])},
        )  # key points sit on named objects: no labels
        target = [gt.target] if gt and gt.target else []
        self._boxes(f"{base}/target", target, TARGET, radius=GT_RADIUS, named=named)
        named |= {b.label for b in target if b.label}
        self._traces(f"{base}/expert_trace", [gt.expert_trace] if gt and gt.expert_trace else [], EXPERT,
                     radius=GT_RADIUS)  # fmt: skip
        return named

    def _policy(
        self, r: str, cam: str, ps: PolicyStep, index: int, hw: tuple[int, int], named: set[str]
    ) -> None:
        p = policy_part(ps.policy)
        color = policy_color(index)
        geometry = ps.spatial.geometry if ps.spatial is not None else []
        boxes = [g for g in geometry if isinstance(g, Box)]
        self._boxes(f"{cam}/{p}/spatial/boxes", boxes, color, radius=POLICY_RADIUS, named=named)
        points = [g for g in geometry if isinstance(g, Point)]
        self._points(f"{cam}/{p}/spatial/points", points, color, radius=3.0, named=named)
        traces = [g for g in geometry if isinstance(g, Trace)]
        self._traces(f"{cam}/{p}/spatial/trace", traces, color, radius=POLICY_RADIUS)
        chunk = ps.chunk
        rollout = [chunk.ee_path_2d] if chunk and chunk.ee_path_2d else []
        self._traces(f"{cam}/{p}/rollout", rollout, color, radius=POLICY_RADIUS)
        if chunk is not None and chunk.attention and self.attention:
            heat = next(iter(chunk.attention.values()))
            self._log(f"{cam}/{p}/attention", jpeg(attention_rgb(heat, hw), 60, opacity=0.3, draw_order=5.0))
        else:
            self._clear(f"{cam}/{p}/attention")
        self._scalars(
            f"{r}actions/{p}", ACTION_DIMS, _action(chunk.actions[0]) if chunk is not None else None
        )
        metrics = {k: float(v) for k, v in ps.metrics.items()}
        self._scalars(f"{r}metrics/{p}", tuple(metrics), list(metrics.values()) or None)
        lines = [f"[{ps.policy}] {ps.instruction}"]
        level = "INFO"
        if ps.spatial is not None:
            lines.append(f"answer: {ps.spatial.text}")
            if ps.spatial.problems:
                lines.append("problems: " + "; ".join(ps.spatial.problems))
                level = "WARN"
        self._log(f"{r}log/{p}", rr.TextLog("\n".join(lines), level=level))


def _event_text(event: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in event.items())


def _action(action: np.ndarray | None) -> list[float] | None:
    if action is None:
        return None
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.shape[0] != len(ACTION_DIMS):
        raise ValueError(f"an action has {len(ACTION_DIMS)} dims {ACTION_DIMS}, got shape {a.shape}")
    return a.tolist()


def jpeg(rgb: np.ndarray, quality: int, **kw) -> rr.EncodedImage:
    """[H, W, 3] uint8 RGB -> a JPEG EncodedImage (OpenCV's encoder: several times faster than PIL's)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"could not JPEG-encode an image of shape {rgb.shape} dtype {rgb.dtype}")
    return rr.EncodedImage(contents=buf.tobytes(), media_type="image/jpeg", **kw)


def attention_rgb(heat: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """[h, w] attention -> a JET-coloured [H, W, 3] uint8 RGB image at the camera's size."""
    h = np.asarray(heat, dtype=np.float32)
    if h.ndim != 2:
        raise ValueError(f"attention heatmap must be [h, w], got shape {h.shape}")
    lo, hi = float(np.nanmin(h)), float(np.nanmax(h))
    norm = (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)
    small = cv2.applyColorMap((255 * norm).astype(np.uint8), cv2.COLORMAP_JET)  # [h, w, 3] BGR
    big = cv2.resize(small, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)  # [H, W, 3]
    return cv2.cvtColor(big, cv2.COLOR_BGR2RGB)


# -- reading recordings back ---------------------------------------------------------------------


def rrd_entities_by_step(path: str | Path, *, clears: bool = False) -> dict[int, set[str]]:
    """step -> entity paths with data at that step, read with Rerun's own RrdReader.

    clears=True: the entities cleared at each step instead."""
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
        data_cols = [n for n in batch.schema.names if ":" in n and n.startswith("Clear:") == clears]
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


def drop_orphaned_recordings() -> None:
    """Stop the threads of recordings nothing references any more (closed loggers, sent blueprints).
    Rerun 0.39 looks for them only while a RecordingStream object is being deleted, which misses the
    ones still referenced at that moment; call this once the loggers are dropped. Collects garbage
    first: a runner and its sinks can sit in reference cycles."""
    import gc

    from rerun import bindings

    gc.collect()
    bindings.flush_and_cleanup_orphaned_recordings()  # (disconnect_orphaned_recordings alone leaves them)


# -- crash safety of saved recordings ------------------------------------------------------------

_RRD_FILE_HEADER = 12  # b"RRF2", the version (4 bytes), the options (4 bytes)
_RRD_MESSAGE_HEADER = struct.Struct("<QQ")  # kind, payload length
_RRD_FOOTER_MAGIC = b"RRF2FOOT"  # the file's last 12 bytes: this, then 4 bytes


def _lock_for_writing(path: Path) -> int:
    """An fd holding an exclusive advisory lock on `path` (created if absent) while a logger writes it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        raise ValueError(f"{path} is being written by another Rerun logger; pick another rrd_path") from e
    return fd


def rrd_has_footer(path: str | Path) -> bool:
    """Whether a .rrd file ends with Rerun's footer (written when its recording was closed)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < _RRD_FILE_HEADER + 12:
            return False
        f.seek(-12, os.SEEK_END)
        return f.read(8) == _RRD_FOOTER_MAGIC


def rrd_complete_prefix(data: bytes) -> int:
    """The length of the longest prefix of an .rrd file's bytes made of whole messages (a killed writer
    can leave a torn last message)."""
    pos = _RRD_FILE_HEADER
    while pos + _RRD_MESSAGE_HEADER.size <= len(data):
        _kind, length = _RRD_MESSAGE_HEADER.unpack_from(data, pos)
        end = pos + _RRD_MESSAGE_HEADER.size + length
        if end > len(data):
            break
        pos = end
    return min(pos, len(data))


def repair_rrd(path: str | Path) -> str | None:
    """Rewrite a footer-less .rrd (its writer was killed) from its complete messages, with a footer, so
    `rerun rrd verify` accepts it. Returns a note saying what was done, or None when the file needed
    nothing. A file another live logger still writes (it holds the lock) is left alone. Never raises
    on a damaged file: the note says why it could not be repaired. Blueprints in the file are not kept
    (the workbench's saved recordings carry none)."""
    import warnings

    from rerun.chunk import RrdReader

    path = Path(path)
    if rrd_has_footer(path):
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return f"{path.name} is still being written by a live process: not repaired"
        data = path.read_bytes()
        end = rrd_complete_prefix(data)
        if data[:4] != b"RRF2" or end <= _RRD_FILE_HEADER:
            return f"{path.name} holds no complete Rerun message: not repaired"
        partial = path.with_name(path.name + ".partial")
        fixed = path.with_name(path.name + ".repaired")
        try:
            partial.write_bytes(data[:end])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "no footer": exactly why we are here
                reader = RrdReader(partial)
                stores = reader.recordings()
                if not stores:
                    return f"{path.name} holds no recording: not repaired"
                chunks = list(reader.stream(store=stores[0]))
            rec = rr.RecordingStream(stores[0].application_id, recording_id=stores[0].recording_id)
            rr.set_sinks(rr.FileSink(str(fixed)), recording=rec)
            rec.send_chunks(chunks)
            rec.flush()
            rr.disconnect(recording=rec)
            os.replace(fixed, path)
        except Exception as e:  # a damaged file must not stop a session from loading
            return f"{path.name} could not be repaired ({type(e).__name__}: {e})"
        finally:
            partial.unlink(missing_ok=True)
            fixed.unlink(missing_ok=True)
        torn = len(data) - end
        return (
            f"{path.name} had no footer (its writer was stopped before closing it): rewritten from its "
            f"{len(chunks)} complete chunks" + (f", a torn tail of {torn} bytes dropped" if torn else "")
        )
    finally:
        os.close(fd)
