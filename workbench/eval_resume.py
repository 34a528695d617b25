"""Continuing a stopped evaluation (`workbench evaluate --resume`).

An evaluation rewrites its report.json as each episode finishes, so a stopped run keeps what finished.
With --resume, a run keeps those episodes and runs only the rest, but only when the report was written
by the same evaluation: the same flags (all but where it runs and where it writes) and the same weights
(`weights_sha256`, recorded in every report's config; a report written before it was recorded is taken
to hold the same weights). Anything else is refused with the field that differs, so that no report
mixes the episodes of two checkpoints or two protocols.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from workbench.compare import load_report
from workbench.eval_report import EpisodeResult

# EvalConfig fields a resumed run may change: where it runs, where it writes, and --resume itself
FREE = ("out", "ray", "workers", "resume")


class ResumeError(ValueError):
    """The report in --out was written by another evaluation."""


def weights_sha256(checkpoint: str | Path) -> str | None:
    """SHA-256 of a checkpoint's weights: <dir>/model.safetensors, or the file itself (an upstream .pt);
    None where neither exists (an upstream run folder: its weights file is found at load)."""
    path = Path(checkpoint)
    weights = path / "model.safetensors" if path.is_dir() else path
    if not weights.is_file():
        return None
    digest = hashlib.sha256()
    with weights.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def finished_episodes(config: dict, keys: list[tuple], out: str | Path) -> dict[int, EpisodeResult]:
    """The episodes of <out>/report.json that ran (status ok), by their place in `keys` (the run's
    (task, objects, paraphrase, seed) in report order); {} without a report. Raises ResumeError when the
    report's config differs from `config` in a field other than FREE."""
    path = Path(out) / "report.json"
    if not path.exists():
        return {}
    try:
        report = load_report(path)
    except (OSError, ValueError) as e:
        raise ResumeError(
            f"{path} is not a readable evaluation report ({e}): --resume cannot continue it"
        ) from e
    old, episodes = report.config, report.episodes
    new = json.loads(json.dumps(config))  # tuples as JSON lists, as the report holds them
    if old.get("weights_sha256") is None:  # a report written before the field: the weights are unknown
        old = {**old, "weights_sha256": new.get("weights_sha256")}
    for key in sorted((set(old) | set(new)) - set(FREE)):
        if old.get(key) != new.get(key):
            raise ResumeError(
                f"{path} was written by another evaluation ({key}: {old.get(key)!r} there, {new.get(key)!r} "
                "now): --resume continues only the same one; give another --out, or drop --resume to start over"
            )
    place = {key: i for i, key in enumerate(keys)}
    kept = ((place.get((e.task, e.objects, e.paraphrase, e.seed)), e) for e in episodes if e.status == "ok")
    return {i: e for i, e in kept if i is not None}
