"""Where a LeRobot dataset lives: a folder, or a Hugging Face repo id ("owner/name") in the local cache.

Nothing is ever downloaded: a repo id resolves to `lerobot_home()`/owner/name, else to a snapshot of
LeRobot's hub cache (`lerobot_home()`/hub/datasets--owner--name), else FileNotFoundError saying how to
fetch it. A repo id never names a parent folder ("owner/.." is refused), so a lookup stays in the cache.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/(?!\.\.?$)[\w.-]+")  # owner/name; never "owner/.." or "owner/."


def lerobot_home() -> Path:
    """LeRobot's cache folder: $HF_LEROBOT_HOME, else $HF_HOME/lerobot (HF_HOME defaulting to
    $XDG_CACHE_HOME/huggingface, then ~/.cache/huggingface), as LeRobot itself resolves it."""
    if home := os.environ.get("HF_LEROBOT_HOME"):
        return Path(home).expanduser()
    hf_home = os.environ.get("HF_HOME") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface"
    )
    return Path(hf_home).expanduser() / "lerobot"


def _hub_snapshot(home: Path, repo_id: str) -> Path | None:
    """A dataset LeRobot >= 0.5 downloaded into its hub cache (home/hub/datasets--owner--name): the
    snapshot its "v3.0" ref (then "v2.1", "main") names, else the newest snapshot holding info.json."""
    repo = home / "hub" / ("datasets--" + repo_id.replace("/", "--"))
    for ref in ("v3.0", "v2.1", "main"):
        ref_file = repo / "refs" / ref
        if ref_file.is_file():
            snap = repo / "snapshots" / ref_file.read_text().strip()
            if (snap / "meta" / "info.json").is_file():
                return snap
    snaps = [s for s in (repo / "snapshots").glob("*") if (s / "meta" / "info.json").is_file()]
    return max(snaps, key=lambda s: s.stat().st_mtime) if snaps else None


def resolve_dataset(name: str | Path) -> Path:
    """A dataset folder, or a repo id ("owner/name") looked up offline in the LeRobot cache:
    `lerobot_home()`/owner/name, then LeRobot's hub cache under `lerobot_home()`/hub."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    text = str(name)
    if not REPO_ID.fullmatch(text) or text.startswith(("./", "../")):
        raise FileNotFoundError(f"dataset directory {name} does not exist")
    home = lerobot_home()
    local = home / text
    if (local / "meta" / "info.json").is_file():
        return local
    if snap := _hub_snapshot(home, text):
        return snap
    raise FileNotFoundError(
        f"{text} is neither a folder nor a dataset in the local LeRobot cache (looked in {local} and "
        f"{home / 'hub'}). Nothing is downloaded here: fetch it first, e.g. "
        f"`hf download {text} --repo-type dataset --local-dir {local}`, or set HF_LEROBOT_HOME"
    )


def cached_datasets() -> list[str]:
    """Repo ids of the datasets in the local LeRobot cache (folders and hub snapshots), sorted."""
    home = lerobot_home()
    found = {f"{p.parent.parent.name}/{p.parent.name}" for p in home.glob("*/*/meta") if p.is_dir()}
    for repo in home.glob("hub/datasets--*--*"):
        owner, _, name = repo.name.removeprefix("datasets--").partition("--")
        if _hub_snapshot(home, f"{owner}/{name}") is not None:
            found.add(f"{owner}/{name}")
    return sorted(r for r in found if REPO_ID.fullmatch(r) and not r.startswith("hub/"))


def split_episode(text: str) -> tuple[str, int]:
    """Split "<folder or repo id>#<episode index>"; without a "#<digits>" suffix the index is 0."""
    base, sep, index = text.strip().rpartition("#")
    return (base, int(index)) if sep and index.isdigit() and base else (text.strip(), 0)
