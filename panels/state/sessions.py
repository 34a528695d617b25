"""A tab's sessions: save what it has stepped, replay a saved one with no model, export MP4 / .rrd."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

from panels.state.clicks import UserPoint, clear_user_point, log_user_point
from panels.state.config import AllowedPaths, AppConfig, AppError
from panels.state.tab import TabState
from panels.state.viewer import BLUEPRINTS


def list_sessions(config: AppConfig) -> list[str]:
    from workbench.sessions import SessionStore

    return SessionStore(config.sessions_dir).list()


def session_path(config: AppConfig, name: str) -> Path:
    """A session id in --sessions-dir, or a session folder inside the allowed data folders."""
    if not (name or "").strip():
        raise AppError("No session chosen: save one first or pick one from the list.")
    for allowed in (
        AllowedPaths([config.sessions_dir], what="session", flag="--sessions-dir"),
        config.data_paths,
    ):
        try:
            path = allowed.resolve(name)
        except AppError:
            continue
        if (path / "session.json").is_file():
            return path
    config.data_paths.resolve(name)  # raises PathNotAllowedError with the right message when outside
    raise AppError(f"{name} is not a saved session (no session.json); pick one from the list.")


def save(tab: TabState) -> Path:
    """Write the tab's steps to a new session folder, with its Rerun recording, and return the folder."""
    from workbench.sessions import SessionStore, load_session

    if not tab.records:
        raise AppError("Nothing to save yet: Load and step first.")
    meta = {
        "source": vars(tab.source),
        "settings": vars(tab.settings),
        "policies": tab.policy_names,
        "checkpoints": tab.checkpoints,
        "mode": tab.mode,
        "app_tab": tab.id,
    }
    writer = SessionStore(tab.config.sessions_dir).create(session_name(tab), meta=meta)
    try:
        for record in tab.records:
            writer.write(record)
        for edit in tab.edits:
            writer.note(edit)
    finally:
        writer.close()
    write_rrd(load_session(writer.path), writer.rrd_path)
    return writer.path


def session_name(tab: TabState, when: float | None = None) -> str:
    """A saved session's id says what it holds: checkpoint(s), source, time, e.g.
    "st4vla-tiny-tabletop_pick-seed0-20260105-101500" (a short random tail keeps two saves apart)."""
    import os
    import re
    import time

    source = tab.source
    what = {"sim": f"{source.task}-seed{source.seed}", "simpler": source.task,
            "episode": Path(source.path.split("#")[0]).name or "recording"}.get(source.kind, source.kind)  # fmt: skip
    parts = [
        "-vs-".join(tab.policy_names) or "session",
        what,
        time.strftime("%Y%m%d-%H%M%S", time.localtime(when)),
    ]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(parts)).strip("._-")
    return f"{name[:100]}-{os.urandom(2).hex()}"


def write_rrd(session, rrd_path: Path) -> Path:
    """The session's Rerun recording, with the user's clicked points drawn (not only the steps)."""
    from workbench.viz.rerun_log import RerunLogger

    logger = RerunLogger(rrd_path=rrd_path, stream=False)
    for record in session.records:
        logger.write(record)
        draw_clicks(logger.rec, session.edits, record)
    for event in session.edits:
        logger.note(event)
    logger.close()
    return rrd_path


def draw_clicks(rec, edits: list[dict], record) -> UserPoint | None:
    """Draw the saved clicks made on `record`'s image; returns the last one (None if none)."""
    point = None
    for e in edits:  # a click on the step before: its dot ends here
        if e.get("kind") == "user_point" and int(e.get("step", -2)) == record.step - 1:
            clear_user_point(rec, record.step, str(e.get("branch", "main")), list(record.policies))
    for e in edits:
        here = int(e.get("step", -1)) == record.step and e.get("branch", "main") == record.branch
        if e.get("kind") == "user_point" and here:
            point = UserPoint(float(e["x"]), float(e["y"]), record.step, record.branch)
            log_user_point(rec, point.x, point.y, record.step, record.branch, list(record.policies))
    return point


def replay(tab: TabState, name: str, rename: dict[str, str] | None = None) -> None:
    """Show a saved session in this tab's viewer; no model is loaded, stepping is off until Load."""
    for _ in play(tab, name, rename):
        pass


def renamed(record, rename: dict[str, str] | None):
    """`record` with its policies renamed (a probe saves its episodes under the slot name "policy";
    shown again, they carry the checkpoint's name)."""
    if not rename or not any(k in rename for k in record.policies):
        return record
    policies = {
        rename.get(k, k): dataclasses.replace(ps, policy=rename.get(k, k))
        for k, ps in record.policies.items()
    }
    return dataclasses.replace(record, policies=policies)


def play(tab: TabState, name: str, rename: dict[str, str] | None = None) -> Iterator[int]:
    """Replay a saved session into this tab step by step (demo mode animates it), yielding the number
    of steps shown so far. No model is loaded. The user's clicked points saved with the session are
    drawn again at their steps, and the last one is reported as if just clicked."""
    from workbench.sessions import SessionError, load_session

    path = session_path(tab.config, name)
    try:
        session = load_session(path)
    except (SessionError, ValueError, KeyError) as e:
        raise AppError(f"Could not read session {path.name}: {e}") from e
    if not session.records:
        raise AppError(f"Session {path.name} has no steps to replay.")
    records = [renamed(r, rename) for r in session.records]
    tab.close()
    tab.logger = tab.open_recording(state_names=())
    tab.records, tab.user_point, tab.replayed = [], None, path.name
    tab.mode = str(session.meta.get("loaded", {}).get("mode", "shared"))
    tab.edits = [dict(e) for e in session.edits]
    names: list[str] = []
    for r in records:
        names.extend(n for n in r.policies if n not in names)
    tab.policy_names = names
    tab.blueprint = BLUEPRINTS[1] if len(names) > 1 else BLUEPRINTS[0]
    tab.send_blueprint()
    for n, record in enumerate(records, start=1):
        tab.logger.write(record)
        tab.records.append(record)
        tab.user_point = draw_clicks(tab.logger.rec, session.edits, record) or tab.user_point
        yield n
    for event in session.edits:
        tab.logger.note(event)
    tab.notes.extend(session.notes)


def open_probe_row(tab: TabState, rows: list[dict], index: int) -> str:
    """Open the episode of probe table row `index` (its saved session) in this tab; returns its id."""
    if not 0 <= int(index) < len(rows):
        raise AppError(f"No probe row {index}: the table has {len(rows)} rows; run a probe first.")
    session = str(rows[int(index)].get("session") or "")
    if not session:
        raise AppError("This probe row was not saved as a session, so it cannot be opened.")
    replay(tab, session, rename={"policy": tab.probe_checkpoint} if tab.probe_checkpoint else None)
    return session


def export(tab: TabState, name: str, kind: str) -> Path:
    """Export a saved session as 'mp4' (overlays drawn) or 'rrd' (the Rerun recording)."""
    from workbench.sessions import export_mp4, load_session

    path = session_path(tab.config, name)
    session = load_session(path)
    if kind == "mp4":
        return export_mp4(session, path / "export.mp4")
    if kind == "rrd":
        rrd = path / "recording.rrd"
        if not rrd.is_file():
            write_rrd(session, rrd)
        return rrd
    raise AppError(f"Unknown export kind {kind!r}: use 'mp4' or 'rrd'.")
