"""App configuration, the folders a user may read from, and input checks that give clear errors.

Where the app's files are comes from configuration, never from where the package is installed: every
folder defaults to one under the app's home (`default_home`), which holds assets/checkpoints/ (the demo
checkpoint), assets/ (recorded episodes) and sessions/ (saved sessions).
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

HOME_ENV = "WORKBENCH_HOME"
DEMO_NAME = "st4vla-tiny"  # the demo checkpoint's folder under assets/checkpoints/
MAX_INSTRUCTION_CHARS = 300
MAX_SEED = 2**32 - 1  # numpy, torch and the simulators all take seeds in this range


class AppError(Exception):
    """A problem the user can fix; the message says how. The UI shows it instead of failing."""


class PathNotAllowedError(AppError):
    """A path that resolves outside every folder the user allowed."""


def check_seed(seed: object) -> int:
    """A seed typed on the page as an int in 0..MAX_SEED, or an AppError saying what to type."""
    try:
        value = int(seed)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        value = -1
    if not 0 <= value <= MAX_SEED or value != seed:
        raise AppError(f"Seed must be a whole number in 0..{MAX_SEED}, got {seed!r}.")
    return value


def default_home() -> Path:
    """$WORKBENCH_HOME when set; else the source checkout this file sits in when it holds assets/
    (`python app.py` in a clone); else the current folder (an installed package carries no assets)."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "assets").is_dir() else Path.cwd()


def home_folders(home: Path) -> dict[str, object]:
    """AppConfig's folder fields under `home`."""
    return {
        "checkpoint_dirs": [home / "assets" / "checkpoints"],
        "data_dirs": [home / "assets", home / "sessions"],
        "sessions_dir": home / "sessions",
        "demo_checkpoint": home / "assets" / "checkpoints" / DEMO_NAME,
    }


VIEWER_IMAGES = ("raw", "jpeg")


@dataclass
class AppConfig:
    host: str = "127.0.0.1"  # binding anywhere else must be asked for explicitly
    port: int = 7860  # first choice; the next free one is taken if busy
    checkpoint_dirs: list[Path] = field(
        default_factory=lambda: home_folders(default_home())["checkpoint_dirs"]
    )
    data_dirs: list[Path] = field(default_factory=lambda: home_folders(default_home())["data_dirs"])
    sessions_dir: Path = field(default_factory=lambda: home_folders(default_home())["sessions_dir"])
    demo_checkpoint: Path = field(default_factory=lambda: home_folders(default_home())["demo_checkpoint"])
    default_task: str = ""  # "" = the simulator's first task
    max_steps: int = 120  # "run to end" stops here if the episode has not ended
    viewer_height: int = 760
    # camera images in the viewer: "raw" pixels are drawn in the same frame as the step's overlays;
    # "jpeg" is decoded asynchronously (the image blanks for a few frames each step) but is several
    # times smaller for a real camera's frames (a long recorded episode)
    viewer_images: str = "raw"
    camera_width: int = 320  # the built-in sim's camera: small keeps CPU rendering and streaming light
    camera_height: int = 240
    demo_session: str = ""  # --demo: open on this saved session, controls hidden, played step by step
    demo_step_seconds: float = 0.4  # pause between steps when demo mode plays a session

    def __post_init__(self) -> None:
        self.checkpoint_dirs = [Path(p).expanduser().resolve() for p in self.checkpoint_dirs]
        self.data_dirs = [Path(p).expanduser().resolve() for p in self.data_dirs]
        self.sessions_dir = Path(self.sessions_dir).expanduser().resolve()
        self.demo_checkpoint = Path(self.demo_checkpoint).expanduser().resolve()
        if self.viewer_images not in VIEWER_IMAGES:
            raise ValueError(f"viewer_images must be one of {VIEWER_IMAGES}, got {self.viewer_images!r}")
        if self.port < 0 or self.port > 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")

    @property
    def viewer_jpeg_quality(self) -> int | None:
        """The live viewer's RerunLogger(jpeg_quality=...): None logs raw pixels."""
        from workbench.viz.rerun_log import JPEG_QUALITY

        return None if self.viewer_images == "raw" else JPEG_QUALITY

    @property
    def checkpoint_paths(self) -> AllowedPaths:
        return AllowedPaths(self.checkpoint_dirs, what="checkpoint", flag="--checkpoint-dirs")

    @property
    def data_paths(self) -> AllowedPaths:
        # Saved sessions are data the user may open too.
        return AllowedPaths([*self.data_dirs, self.sessions_dir], what="data", flag="--data-dirs")


@dataclass(frozen=True)
class AllowedPaths:
    """Folders a user may read from; every path from the page is resolved (symlinks, '..') first."""

    roots: list[Path]
    what: str = "file"
    flag: str = "--data-dirs"

    def resolve(self, user_path: str | Path, *, must_exist: bool = True) -> Path:
        text = str(user_path).strip()
        if not text:
            raise AppError(f"No {self.what} path given: pick one from the list or type a path.")
        if "\x00" in text:
            raise AppError(f"The {self.what} path contains a NUL character; type a plain path.")
        path = Path(text).expanduser()
        candidates = [path] if path.is_absolute() else [root / path for root in self.roots]
        for cand in candidates:
            real = cand.resolve()
            if self.allows(real):
                if must_exist and not real.exists():
                    continue
                return real
        if path.is_absolute() and not self.allows(path.resolve()):
            raise PathNotAllowedError(
                f"{user_path} is outside the folders allowed for {self.what}s "
                f"({', '.join(map(str, self.roots)) or 'none'}); restart the app with {self.flag} to allow it."
            )
        raise AppError(
            f"No {self.what} at {user_path} inside the allowed folders ({', '.join(map(str, self.roots))})."
        )

    def allows(self, real: Path) -> bool:
        return any(real == root or real.is_relative_to(root) for root in self.roots)

    def listing(self, pattern: str = "*", *, dirs_only: bool = True) -> list[Path]:
        """Direct children of every allowed folder matching `pattern` (sorted, symlinks escaping dropped)."""
        out: list[Path] = []
        for root in self.roots:
            if not root.is_dir():
                continue
            for p in sorted(root.glob(pattern)):
                real = p.resolve()
                if self.allows(real) and (real.is_dir() or not dirs_only) and real not in out:
                    out.append(real)
        return out


def clean_instruction(text: str | None) -> tuple[str, list[str]]:
    """Normalise a typed instruction; return it and warnings. Raise AppError when nothing usable is left."""
    if text is None or not str(text).strip():
        raise AppError(
            "The instruction is empty: type what the robot should do, e.g. 'put the carrot on the plate'."
        )
    warnings: list[str] = []
    raw = unicodedata.normalize("NFKC", str(text))
    # Control and format characters (bells, NULs, zero-width joiners) become spaces; newlines are fine.
    kept = "".join(ch if ch.isspace() or unicodedata.category(ch)[0] != "C" else " " for ch in raw)
    if kept != raw:
        warnings.append("Control characters in the instruction were replaced by spaces.")
    cleaned = " ".join(kept.split())
    if not cleaned:
        raise AppError("The instruction has no visible characters: type what the robot should do.")
    if len(cleaned) > MAX_INSTRUCTION_CHARS:
        raise AppError(
            f"The instruction is {len(cleaned)} characters; keep it under {MAX_INSTRUCTION_CHARS} "
            "(one sentence about the task)."
        )
    return cleaned, warnings
