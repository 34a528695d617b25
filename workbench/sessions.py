"""Saved sessions: append-only, flushed every step, readable after a crash up to the last complete step.

    sessions/<id>/session.json   what was loaded (source, slots) and the edits made (instructions, branches)
    sessions/<id>/steps.jsonl    one StepRecord per line, appended, flushed and fdatasync'ed per step
    sessions/<id>/images/        the step images (PNG: lossless, so a session replays bit-exact)
    sessions/<id>/recording.rrd  the Rerun recording (written by a RerunLogger pointed at `rrd_path`)

A step's images are written before its line, so a complete line always has its images; a torn last
line (the process died mid-write) is skipped with a note. The RerunLogger flushes recording.rrd per step;
a recording whose writer was killed has no footer and is repaired when the session is loaded
(`workbench.viz.rerun_log.repair_rrd`). Nothing here unpickles: JSON and PNG only.
A line's JSON is workbench/record_json.py's.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from workbench.fileio import write_json_atomic
from workbench.record_json import SessionError, jsonable, record_from_dict, record_to_dict
from workbench.records import StepRecord
from workbench.viz.video import control_rate, write_mp4

FORMAT_VERSION = 1
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


# -- paths ---------------------------------------------------------------------------------------


def session_dir(root: str | Path, session_id: str) -> Path:
    """The directory of `session_id` under `root`, refusing anything that would leave `root`."""
    if not isinstance(session_id, str) or not _ID.match(session_id) or ".." in session_id:
        raise SessionError(
            f"invalid session id {session_id!r}: use letters, digits, '_', '-', '.' (no '/', no '..')"
        )
    root_r = Path(root).resolve()
    path = (root_r / session_id).resolve()
    if root_r not in path.parents:
        raise SessionError(f"session {session_id!r} resolves outside the sessions root {root_r}")
    return path


# -- writing -------------------------------------------------------------------------------------


def _safe_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:64] or "_"


class SessionWriter:
    """A sink that writes a session as it runs. Sink protocol: write(record), note(event), close()."""

    def __init__(
        self, path: Path, meta: dict | None = None, *, image_format: str = "png", durable: bool = True
    ) -> None:
        if image_format not in ("png", "jpg"):
            raise SessionError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
        self.path = Path(path)
        if (self.path / "steps.jsonl").exists():
            raise SessionError(
                f"session {self.path} already exists: pick a new id or load it with load_session"
            )
        (self.path / "images").mkdir(parents=True, exist_ok=True)
        self.image_format, self.durable = image_format, durable
        self.meta = {
            "format_version": FORMAT_VERSION,
            "id": self.path.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "loaded": jsonable(meta or {}),
            "edits": [],
            "closed": False,
        }
        write_json_atomic(self.path / "session.json", self.meta)
        self._steps = open(self.path / "steps.jsonl", "a")  # noqa: SIM115 - held open for the session

    @property
    def rrd_path(self) -> Path:
        return self.path / "recording.rrd"

    def write(self, record: StepRecord) -> None:
        files = {}
        for cam, image in record.observation.images.items():
            rel = (
                f"images/{_safe_part(record.branch)}/{record.step:06d}_{_safe_part(cam)}.{self.image_format}"
            )
            _write_image(self.path / rel, image)
            files[cam] = rel
        line = json.dumps(record_to_dict(record, files), separators=(",", ":"))
        self._steps.write(line + "\n")
        self._steps.flush()  # a killed process loses nothing written so far
        if self.durable:
            os.fdatasync(self._steps.fileno())  # and a power cut loses at most the step in flight

    def note(self, event: dict) -> None:
        self.meta["edits"].append(jsonable(event))
        write_json_atomic(self.path / "session.json", self.meta)

    def close(self) -> None:
        if self._steps.closed:
            return
        self._steps.close()
        self.meta["closed"] = True
        write_json_atomic(self.path / "session.json", self.meta)


def _write_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix, cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise SessionError(f"could not encode image for {path} (shape {image.shape}, dtype {image.dtype})")
    # No fsync here (it would double the per-step cost): an image lost to a power cut makes its step
    # the end of the readable session, which load_session reports.
    with open(path, "wb") as f:
        f.write(buf.tobytes())


# -- reading -------------------------------------------------------------------------------------


@dataclass
class Session:
    path: Path
    meta: dict
    records: list[StepRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the loader had to skip, and why

    @property
    def edits(self) -> list[dict]:
        return self.meta.get("edits", [])

    def branch(self, name: str = "main") -> list[StepRecord]:
        """The steps of one branch in order; a re-asked step keeps its last answer."""
        latest = {r.step: r for r in self.records if r.branch == name}
        return [latest[k] for k in sorted(latest)]

    @property
    def branches(self) -> list[str]:
        return list(dict.fromkeys(r.branch for r in self.records))


def _read_image(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_session(path: str | Path) -> Session:
    """Read a session directory; after a crash, every complete step is returned (see Session.notes),
    and a recording.rrd its killed writer left without a footer is repaired in place (a note says so)."""
    path = Path(path)
    meta_file, steps_file = path / "session.json", path / "steps.jsonl"
    if not meta_file.is_file():
        raise SessionError(f"{path} is not a session: it has no session.json")
    meta = json.loads(meta_file.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise SessionError(f"{path}: session format {meta.get('format_version')} is not {FORMAT_VERSION}")
    session = Session(path=path, meta=meta)
    if not steps_file.is_file():
        session.notes.append("no steps.jsonl: the session has no steps")
        return session
    lines = steps_file.read_bytes().split(b"\n")
    torn_tail = lines[-1] != b""  # a complete file ends with a newline
    lines = lines[:-1] if not torn_tail else lines
    for i, raw in enumerate(lines):
        last = i == len(lines) - 1
        try:
            d = json.loads(raw)
            if last and torn_tail:
                raise ValueError("no newline at the end")
        except ValueError as e:
            if last:
                session.notes.append(f"line {i + 1} of steps.jsonl is incomplete ({e}); ignored")
                break
            raise SessionError(
                f"{steps_file}: line {i + 1} is corrupt ({e}); the file was edited or damaged"
            ) from e
        try:
            images = {cam: _read_image(path / rel) for cam, rel in d["observation"]["images"].items()}
        except FileNotFoundError as e:
            session.notes.append(f"step on line {i + 1} has lost its image {e}; the session ends before it")
            break
        session.records.append(record_from_dict(d, images))
    rrd = path / "recording.rrd"
    if rrd.is_file():
        from workbench.viz.rerun_log import repair_rrd  # heavy (rerun-sdk, pandas): only with a recording

        note = repair_rrd(rrd)  # a killed writer's recording has no footer: rewrite it so it verifies
        if note:
            session.notes.append(note)
    return session


class SessionStore:
    """The sessions root: creates, lists and opens sessions by id, never outside the root."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, session_id: str) -> Path:
        return session_dir(self.root, session_id)

    def create(self, session_id: str | None = None, meta: dict | None = None, **kw: Any) -> SessionWriter:
        session_id = session_id or time.strftime("%Y%m%d-%H%M%S-") + os.urandom(3).hex()
        return SessionWriter(self.path(session_id), meta, **kw)

    def open(self, session_id: str) -> Session:
        return load_session(self.path(session_id))

    def list(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "session.json").is_file())


# -- replay and export ---------------------------------------------------------------------------


def replay_to_rerun(
    session: Session, *, rrd_path: str | Path | None = None, stream: bool = False, blueprint=None
):
    """Log a saved session into a new Rerun recording with no model loaded. Returns the RerunLogger
    (drain `.read()` for the app); closed already when stream=False."""
    from workbench.viz.rerun_log import RerunLogger  # heavy (rerun-sdk, pandas): only to replay

    logger = RerunLogger(rrd_path=rrd_path, stream=stream, blueprint=blueprint)
    for record in session.records:
        logger.write(record)
    for event in session.edits:
        logger.note(event)
    if not stream:
        logger.close()
    return logger


def export_mp4(session: Session, out: str | Path, *, fps: float | None = None, branch: str = "main") -> Path:
    """Write the session's steps of `branch` to an H.264 MP4 with the overlays drawn, at `fps` or, by
    default, the control rate of the session's source (workbench.viz.video.control_rate)."""
    records = session.branch(branch)
    if not records:
        raise SessionError(f"session {session.path} has no steps on branch {branch!r}")
    return write_mp4(records, out, fps=fps or control_rate(session.meta.get("loaded", {}).get("source")))


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Export a saved session to MP4 with overlays.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("mp4", help="export a saved session to MP4 with overlays")
    m.add_argument("session")
    m.add_argument("out")
    args = ap.parse_args()
    print(export_mp4(load_session(args.session), args.out))
