"""Is one checkpoint ahead of another? Success gaps on the same episodes, with paired intervals.

Two evaluation reports over the same seeds hold matched episodes: the same task, cell and seed, so the
same scene and instruction. The gap (success rate of A minus that of B) is estimated on those pairs,
with Newcombe's (1998) hybrid score interval for paired proportions, which accounts for the pairing:
two scenes that both checkpoints solve, or both fail, say nothing about which is better.

    workbench compare runs/eval/st4vla-tiny runs/eval/vanilla-tiny

Several seed sets of the same checkpoint pool into one report (their episodes must not repeat), so that
the gap is stated over all of them:

    workbench compare runs/eval10k/st4vla-tiny runs/eval20k/st4vla-tiny \
        --vs runs/eval10k/vanilla-tiny runs/eval20k/vanilla-tiny
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from workbench.eval_report import EpisodeResult, EvalReport, rate, wilson

# (row label, episode filter): the splits the targets are stated on
SPLITS = (
    ("all", {}),
    ("seen objects", {"objects": "seen"}),
    ("unseen objects", {"objects": "unseen"}),
    ("objects in no data at all", {"objects": "novel"}),  # a row only when both ran the novel cells
    ("seen paraphrases", {"paraphrase": "seen"}),
    ("unseen paraphrases", {"paraphrase": "unseen"}),
)


@dataclass
class Gap:
    split: str
    n: int  # matched episodes
    a_successes: int
    b_successes: int
    difference: float  # success rate of A minus that of B
    low: float  # 95% interval of the difference
    high: float


def load_report(path: str | Path) -> EvalReport:
    """An evaluation report from its report.json (or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no evaluation report at {path} (workbench evaluate --out writes report.json)"
        )
    data = json.loads(path.read_text())
    try:
        episodes = [EpisodeResult.from_json(e) for e in data["episodes"]]
        return EvalReport(data["checkpoint"], data["config"], episodes)
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a workbench evaluation report: {e}") from e


def pool(reports: list[EvalReport]) -> EvalReport:
    """One report holding the episodes of several evaluations of one checkpoint (e.g. seed sets)."""
    if not reports:
        raise ValueError("no report to pool")
    first = reports[0]
    others = {r.checkpoint for r in reports} - {first.checkpoint}
    if others:
        raise ValueError(
            f"cannot pool reports of different checkpoints: {first.checkpoint}, {', '.join(others)}"
        )
    episodes = [e for r in reports for e in r.episodes]
    seen: set[tuple] = set()
    for e in episodes:
        if _key(e) in seen:
            raise ValueError(
                f"the pooled reports repeat an episode ({e.task}, {e.objects}/{e.paraphrase}, seed {e.seed}): "
                "pool reports of different seed sets"
            )
        seen.add(_key(e))
    return EvalReport(first.checkpoint, first.config, episodes)


def paired_difference(pairs: list[tuple[bool, bool]], z: float = 1.96) -> tuple[float, float, float]:
    """Difference of two paired proportions and its Newcombe hybrid score interval (method 10).

    pairs: (A succeeded, B succeeded) per matched episode. Returns (difference, low, high)."""
    n = len(pairs)
    if n == 0:
        return float("nan"), -1.0, 1.0
    both = sum(a and b for a, b in pairs)
    only_a = sum(a and not b for a, b in pairs)
    only_b = sum(b and not a for a, b in pairs)
    neither = n - both - only_a - only_b
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    (l1, u1), (l2, u2) = wilson(both + only_a, n, z), wilson(both + only_b, n, z)
    phi = _phi(both, only_a, only_b, neither)
    d1, e2 = p1 - l1, u2 - p2
    d2, e1 = p2 - l2, u1 - p1
    low = p1 - p2 - math.sqrt(max(0.0, d1 * d1 - 2 * phi * d1 * e2 + e2 * e2))
    high = p1 - p2 + math.sqrt(max(0.0, d2 * d2 - 2 * phi * d2 * e1 + e1 * e1))
    return p1 - p2, max(-1.0, low), min(1.0, high)


def _phi(both: int, only_a: int, only_b: int, neither: int) -> float:
    """Correlation of the two outcomes, with Newcombe's continuity correction toward zero."""
    n = both + only_a + only_b + neither
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    if margins == 0:
        return 0.0
    cross = both * neither - only_a * only_b
    if cross > n / 2:
        cross -= n / 2
    elif cross >= 0:
        cross = 0
    return cross / math.sqrt(margins)


def _key(e: EpisodeResult) -> tuple:
    """What makes two episodes the same: task, cell and seed (so the same scene and instruction)."""
    return (e.task, e.objects, e.paraphrase, e.seed)


def matched(a: EvalReport, b: EvalReport, **where: str) -> list[tuple[bool, bool]]:
    """(A's success, B's success) of the episodes both reports ran (same task, cell and seed)."""
    b_success = {_key(e): e.success for e in b.select(**where)}
    return [(e.success, b_success[_key(e)]) for e in a.select(**where) if _key(e) in b_success]


def gaps(a: EvalReport, b: EvalReport) -> list[Gap]:
    rows = []
    for label, where in SPLITS:
        pairs = matched(a, b, **where)
        if where.get("objects") == "novel" and not pairs:
            continue
        difference, low, high = paired_difference(pairs)
        rows.append(
            Gap(label, len(pairs), sum(p[0] for p in pairs), sum(p[1] for p in pairs), difference, low, high)
        )
    return rows


def markdown(a_name: str, b_name: str, rows: list[Gap]) -> str:
    lines = [
        f"| split | {a_name} | {b_name} | gap, points [95% paired interval] |",
        "|---|---|---|---|",
    ]
    for g in rows:
        gap = "n/a" if not g.n else f"{100 * g.difference:+.0f} [{100 * g.low:+.0f}, {100 * g.high:+.0f}]"
        lines.append(f"| {g.split} | {g.a_successes}/{g.n} | {g.b_successes}/{g.n} | {gap} |")
    return "\n".join(lines)


# (column label, episode filter) of success_table: the default cells' splits, then the novel cells apart,
# so that no column mixes objects in no data at all into the default cells' figures
_DEFAULT = ("seen", "unseen")
TABLE_COLUMNS = (
    ("seen and unseen objects", lambda e: e.objects in _DEFAULT),
    ("seen objects", lambda e: e.objects == "seen"),
    ("unseen objects", lambda e: e.objects == "unseen"),
    ("seen paraphrases", lambda e: e.objects in _DEFAULT and e.paraphrase == "seen"),
    ("unseen paraphrases", lambda e: e.objects in _DEFAULT and e.paraphrase == "unseen"),
    ("objects in no data at all", lambda e: e.objects == "novel"),
)


def success_table(named: list[tuple[str, EvalReport | None]]) -> str:
    """One row per checkpoint: success with its 95% Wilson interval on each of TABLE_COLUMNS (the novel
    column only when some report ran the novel cells). A None report is a row of "not evaluated"."""
    novel = any(r is not None and r.select(objects="novel") for _, r in named)
    columns = TABLE_COLUMNS if novel else TABLE_COLUMNS[:-1]
    lines = ["| | " + " | ".join(label for label, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, report in named:
        if report is None:
            cells = ["not evaluated"] * len(columns)
        else:
            cells = [_rate_cell([e.success for e in report.select() if keep(e)]) for _, keep in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _rate_cell(flags: list[bool]) -> str:
    """'42% [37, 48] (253/600)', or n/a without an episode."""
    r = rate(flags)
    if not r.n:
        return "n/a"
    return f"{100 * r.rate:.0f}% [{100 * r.low:.0f}, {100 * r.high:.0f}] ({r.successes}/{r.n})"


def compare(a_path: str | Path | list[str | Path], b_path: str | Path | list[str | Path]) -> str:
    """The markdown gap table of two reports, each side one report or a list of them to pool; raises
    if they share no episode."""
    a_paths = a_path if isinstance(a_path, list) else [a_path]
    b_paths = b_path if isinstance(b_path, list) else [b_path]
    a = pool([load_report(p) for p in a_paths])
    b = pool([load_report(p) for p in b_paths])
    rows = gaps(a, b)
    if rows[0].n == 0:
        raise ValueError(
            f"{', '.join(map(str, a_paths))} and {', '.join(map(str, b_paths))} share no episode (same task, "
            "cell and seed): evaluate both with the same --seed, --episodes and protocol"
        )
    unmatched = len(a.episodes) - rows[0].n
    note = f"\n\n{unmatched} episodes of {a.checkpoint} have no match and are left out." if unmatched else ""
    return (
        f"A = `{a.checkpoint}`, B = `{b.checkpoint}`, {rows[0].n} matched episodes.\n\n"
        + markdown("A", "B", rows)
        + note
    )
