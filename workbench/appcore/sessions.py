"""A tab's sessions: save what it has stepped, replay a saved one with no model, export MP4 / .rrd."""

from __future__ import annotations

from pathlib import Path

from workbench.appcore.config import AllowedPaths, AppConfig, AppError
from workbench.appcore.tab import TabSession


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


def save(tab: TabSession) -> Path:
    """Write the tab's steps to a new session folder, with its Rerun recording, and return the folder."""
    from workbench.sessions import SessionStore, load_session, replay_to_rerun

    if not tab.records:
        raise AppError("Nothing to save yet: Load and step first.")
    meta = {
        "source": vars(tab.source),
        "settings": vars(tab.settings),
        "policies": tab.policy_names,
        "app_tab": tab.id,
    }
    writer = SessionStore(tab.config.sessions_dir).create(meta=meta)
    try:
        for record in tab.records:
            writer.write(record)
        for edit in tab.edits:
            writer.note(edit)
    finally:
        writer.close()
    replay_to_rerun(load_session(writer.path), rrd_path=writer.rrd_path)
    return writer.path


def replay(tab: TabSession, name: str) -> None:
    """Show a saved session in this tab's viewer; no model is loaded, stepping is off until Load."""
    from workbench.sessions import SessionError, load_session, replay_to_rerun

    path = session_path(tab.config, name)
    try:
        session = load_session(path)
    except SessionError as e:
        raise AppError(str(e)) from e
    if not session.records:
        raise AppError(f"Session {path.name} has no steps to replay.")
    tab.close()
    tab.logger = replay_to_rerun(session, stream=True)
    tab.records = list(session.records)
    names: list[str] = []
    for r in session.records:
        names.extend(n for n in r.policies if n not in names)
    tab.policy_names = names
    tab.notes.extend(session.notes)
    tab.send_blueprint()


def export(tab: TabSession, name: str, kind: str) -> Path:
    """Export a saved session as 'mp4' (overlays drawn) or 'rrd' (the Rerun recording)."""
    from workbench.sessions import export_mp4, load_session, replay_to_rerun

    path = session_path(tab.config, name)
    session = load_session(path)
    if kind == "mp4":
        return export_mp4(session, path / "export.mp4")
    if kind == "rrd":
        rrd = path / "recording.rrd"
        if not rrd.is_file():
            replay_to_rerun(session, rrd_path=rrd)
        return rrd
    raise AppError(f"Unknown export kind {kind!r}: use 'mp4' or 'rrd'.")
