"""An evaluation's report: its episodes, their success rates with Wilson intervals, and its files.

An EvalReport holds one EpisodeResult per episode, in sweep order (task by task, cell by cell, k = 0..
within a cell; workbench.evaluate runs them). Rates count only the episodes that ran (status "ok"): an
episode that could not run (status "error") is kept in the report with its error and counted apart.
Older reports (written before a field existed) load with that field's default, and every statistic
skips what they do not hold; EpisodeResult.from_json reads the older names of renamed fields. The files
are

    report.json   {"checkpoint", "config", "summary" (EvalReport.summary), "episodes" [EpisodeResult]}
    report.md     the summary's tables (markdown)
    report.html   a Plotly bar chart: success per task and cell with the Wilson intervals

and their content depends only on the episodes and the config (no timing but each episode's seconds).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from workbench import spatial_metrics, triage

SPLITS = ("seen", "unseen")  # the paraphrase splits, and the object splits of the default cells
OBJECT_SPLITS = ("seen", "unseen", "novel")  # workbench.sim.catalog.OBJECT_SPLITS
# (objects, paraphrases); the order fixes each cell's seeds (workbench.evaluate.episode_seed)
CELLS = (("seen", "seen"), ("seen", "unseen"), ("unseen", "seen"), ("unseen", "unseen"))
# Objects in no data at all: run only when asked (--cells novel/seen novel/unseen), seeded apart from
# CELLS (seed + NOVEL_SEED_OFFSET + 2k + the cell's place here) so CELLS' seeds stay what they were.
NOVEL_CELLS = (("novel", "seen"), ("novel", "unseen"))
ALL_CELLS = CELLS + NOVEL_CELLS
NOVEL_SEED_OFFSET = 500_000
# What each object split holds, as every table names it (docs/results.md, "The splits").
OBJECT_LABELS = {
    "seen": "seen objects",
    "unseen": "unseen objects",
    "novel": "objects in no data at all",
}
SPLIT_LEGEND = (
    "Seen objects appear in the demonstrations; unseen objects in no demonstration (a grounding corpus "
    "may name and box them); objects in no data at all (cells novel/...) in no demonstration, grounding "
    'scene or corpus: held-out meshes, moved among seen objects and called "the gadget". Seen '
    "paraphrases are the training phrasings; unseen ones are held out of all training text."
)


@dataclass
class EpisodeResult:
    task: str
    objects: str  # "seen" | "unseen" | "novel" (OBJECT_SPLITS)
    paraphrase: str  # "seen" | "unseen"
    seed: int
    instruction: str
    success: bool
    steps: int
    box_iou: float | None = None
    point_in_box: float | None = None
    # how far the answer's first box centre lies from the object's centre: RMS over x and y, as a
    # fraction of the image (0.5 when unanswered); the unit of the oracle table in
    # research/training-notes.md
    centre_error: float | None = None
    reach_distance: float | None = None  # closest the gripper came to the object to move (metres)
    seconds: float = 0.0
    object: str | None = None  # the object to move (catalog name); absent in older reports
    triage: str | None = None  # why it failed (workbench.triage.REASONS); absent in older reports
    triage_evidence: dict | None = None  # the numbers the reason was decided on
    # "ok", or "error": the episode could not run (its error below); not a policy failure, left out of
    # every rate (absent in older reports: ok)
    status: str = "ok"
    error: str | None = None

    @classmethod
    def from_json(cls, d: dict) -> EpisodeResult:
        """One of report.json's episodes; reports written before the rename name the object "source"."""
        d = dict(d)
        older = d.pop("source", None)
        d.setdefault("object", older)
        return cls(**d)


@dataclass
class Rate:
    successes: int
    n: int
    rate: float
    low: float
    high: float


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% for z=1.96); (0, 1) when n = 0."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(flags: list[bool]) -> Rate:
    k, n = int(sum(flags)), len(flags)
    lo, hi = wilson(k, n)
    return Rate(k, n, k / n if n else float("nan"), lo, hi)


@dataclass
class EvalReport:
    checkpoint: str
    config: dict
    episodes: list[EpisodeResult] = field(default_factory=list)

    def select(self, **where: str) -> list[EpisodeResult]:
        """The episodes that ran (status ok) matching `where` (task=..., objects=..., paraphrase=...)."""
        return [
            e for e in self.episodes if e.status == "ok" and all(getattr(e, k) == v for k, v in where.items())
        ]

    def errors(self) -> list[EpisodeResult]:
        """The episodes that could not run (status error): reported apart, in no rate."""
        return [e for e in self.episodes if e.status != "ok"]

    def success(self, **where: str) -> Rate:
        """Success over the episodes matching `where`."""
        return rate([e.success for e in self.select(**where)])

    def grounding(self, objects: str | None = None) -> dict[str, float]:
        rows = [
            e for e in self.episodes if e.box_iou is not None and (objects is None or e.objects == objects)
        ]
        if not rows:
            return {
                "box_iou": float("nan"),
                "point_in_box": float("nan"),
                "centre_error": float("nan"),
                "n": 0,
            }
        centre = [e.centre_error for e in rows if e.centre_error is not None]  # absent in older reports
        return {
            "box_iou": float(np.mean([e.box_iou for e in rows])),
            "point_in_box": float(np.mean([e.point_in_box for e in rows])),
            "centre_error": spatial_metrics.rms(centre),
            "n": len(rows),
        }

    def object_splits(self) -> tuple[str, ...]:
        """The object splits of this run: seen and unseen always (older reports, the default cells),
        novel when its cells were run."""
        ran = {o for o, _ in self.config.get("cells", ())} | {e.objects for e in self.episodes}
        return tuple(s for s in OBJECT_SPLITS if s in SPLITS or s in ran)

    def summary(self) -> dict:
        tasks = sorted({e.task for e in self.select()})
        objects = self.object_splits()
        return {
            "overall": asdict(self.success()),
            "objects": {s: asdict(self.success(objects=s)) for s in objects},
            "paraphrase": {s: asdict(self.success(paraphrase=s)) for s in SPLITS},
            "tasks": {
                t: {
                    f"{o}/{p}": asdict(self.success(task=t, objects=o, paraphrase=p))
                    for o, p in self.config["cells"]
                }
                for t in tasks
            },
            "grounding": {s: self.grounding(s) for s in objects},
            "reach_distance": {s: self.reach(s) for s in objects},
            "triage": self.triage_counts(),
            "by_object": self.by_object(),
            "errors": {
                "n": len(self.errors()),
                "episodes": [
                    {
                        "task": e.task,
                        "objects": e.objects,
                        "paraphrase": e.paraphrase,
                        "seed": e.seed,
                        "error": e.error,
                    }
                    for e in self.errors()
                ],
            },  # fmt: skip
        }

    def by_object(self) -> list[dict]:
        """Success and box IoU per object to move, seen split first: where a failure on unseen objects
        is one object's (a mesh the grounding never places) or all of them."""
        rows = []
        for name in sorted({e.object for e in self.episodes if e.object is not None}):
            eps = self.select(object=name)
            ious = [e.box_iou for e in eps if e.box_iou is not None]
            rows.append(
                {
                    "object": name,
                    "objects": eps[0].objects,
                    **asdict(rate([e.success for e in eps])),
                    "box_iou": float(np.mean(ious)) if ious else float("nan"),
                }
            )
        return sorted(rows, key=lambda r: (OBJECT_SPLITS.index(r["objects"]), r["object"]))

    def triage_counts(self) -> dict[str, dict[str, int]]:
        """Episodes per triage reason, per split ("objects seen", ..., "paraphrases unseen") and "all";
        episodes of older reports, which have no reason, are left out."""
        triaged = [e for e in self.episodes if e.triage is not None]
        axes = {"objects": self.object_splits(), "paraphrase": SPLITS}
        out = {
            f"{axis} {s}": [e.triage for e in triaged if getattr(e, axis) == s]
            for axis, splits in axes.items()
            for s in splits
        }
        out["all"] = [e.triage for e in triaged]
        return {k: triage.counts(v) for k, v in out.items()}

    def reach(self, objects: str | None = None) -> float:
        """Mean over episodes of the closest gripper-to-object distance (metres); NaN if not measured."""
        d = [
            e.reach_distance
            for e in self.episodes
            if e.reach_distance is not None and (objects in (None, e.objects))
        ]
        return float(np.mean(d)) if d else float("nan")

    def to_json(self) -> dict:
        return {
            "checkpoint": self.checkpoint,
            "config": self.config,
            "summary": self.summary(),
            "episodes": [asdict(e) for e in self.episodes],
        }


def _pct(r: dict) -> str:
    if not r["n"]:
        return "n/a"
    return f"{100 * r['rate']:.0f}% [{100 * r['low']:.0f}, {100 * r['high']:.0f}] (n={r['n']})"


def _seeds(config: dict) -> str:
    seed, n = config["seed"], config["episodes"]
    if config.get("paired_scenes", True):  # reports written before the key existed were paired
        return f"seeds {seed}..{seed + n - 1} in every cell (the cells of a task share their scenes)"
    order = ", ".join(f"{o}/{p}" for o, p in CELLS)
    text = (
        f"{n} episodes per task and cell, each on its own scene: episode k of cell c (in the order "
        f"{order}) has seed {seed} + {len(CELLS)}k + c"
    )
    if any(tuple(c) in NOVEL_CELLS for c in config.get("cells", ())):
        text += (
            f"; of the novel cells (novel/seen 0, novel/unseen 1), seed {seed} + {NOVEL_SEED_OFFSET} + 2k + c"
            " (stack has no novel object: n/a)"
        )
    return text


def markdown(report: EvalReport) -> str:
    s = report.summary()
    cells = [f"{o}/{p}" for o, p in report.config["cells"]]
    lines = [
        f"# Evaluation of `{report.checkpoint}`",
        "",
        f"Closed loop in the built-in simulator; {_seeds(report.config)}; "
        "success with Wilson 95% intervals. Cells are objects/paraphrases.",
        "",
        SPLIT_LEGEND,
        "",
        "| task | " + " | ".join(cells) + " |",
        "|---|" + "---|" * len(cells),
    ]
    for task, row in s["tasks"].items():
        lines.append(f"| {task} | " + " | ".join(_pct(row[c]) for c in cells) + " |")
    lines += [
        "",
        "| split | success |",
        "|---|---|",
        *[f"| {OBJECT_LABELS[o]} | {_pct(r)} |" for o, r in s["objects"].items()],
        f"| seen paraphrases | {_pct(s['paraphrase']['seen'])} |",
        f"| unseen paraphrases | {_pct(s['paraphrase']['unseen'])} |",
        f"| all | {_pct(s['overall'])} |",
        "",
        "| grounding (first step, the object to move) | mean box IoU | point in box | centre error | n |",
        "|---|---|---|---|---|",
    ]
    for split, g in s["grounding"].items():
        lines.append(
            f"| {OBJECT_LABELS[split]} | {g['box_iou']:.3f} | {g['point_in_box']:.3f} | {g['centre_error']:.3f} | {g['n']} |"
        )
    lines += [
        "",
        "Point in box: the centre of the best predicted box lies inside the object's true box. "
        "Centre error: how far the first predicted box's centre lies from the object's centre, RMS per "
        "axis as a fraction of the image (0.5 when nothing was answered).",
        "",
        "| closest gripper-to-object distance (mean, cm) | "
        + " | ".join(OBJECT_LABELS[o] for o in s["reach_distance"])
        + " |",
        "|---|" + "---|" * len(s["reach_distance"]),
        "| all tasks | " + " | ".join(f"{100 * d:.1f}" for d in s["reach_distance"].values()) + " |",
    ]
    lines += _triage_table(s["triage"])
    if s["errors"]["n"]:
        lines += ["", f"{s['errors']['n']} episodes could not run (in no rate above; retried once each):", ""]
        lines += [
            f"- {e['task']} {e['objects']}/{e['paraphrase']} seed {e['seed']}: {e['error']}"
            for e in s["errors"]["episodes"]
        ]
    if s["by_object"]:
        lines += ["", "| object | split | success | box IoU |", "|---|---|---|---|"]
        lines += [
            f"| {r['object']} | {_object_split(r['objects'])} | {_pct(r)} | {r['box_iou']:.3f} |"
            for r in s["by_object"]
        ]
    return "\n".join(lines) + "\n"


def _object_split(split: str) -> str:
    """The per-object table's split column: seen / unseen as before, the novel split by what it holds."""
    return "novel (in no data at all)" if split == "novel" else split


def _triage_table(counts: dict[str, dict[str, int]]) -> list[str]:
    """Markdown rows: episodes per triage reason (rows) and split (columns); [] with nothing triaged."""
    if not counts["all"] or not sum(counts["all"].values()):
        return []
    splits = list(counts)
    lines = [
        "",
        "| outcome (workbench/triage.py) | "
        + " | ".join("objects in no data at all" if c == "objects novel" else c for c in splits)
        + " |",
        "|---|" + "---|" * len(splits),
    ]
    lines += [f"| {r} | " + " | ".join(str(counts[s][r]) for s in splits) + " |" for r in triage.REASONS]
    lines += [
        "",
        "Failures by the first rule that holds: grounding (the first answer missed the object and the gripper "
        "never came near it), time (still closing in at the end), place (grasped, not placed), grasp "
        "(reached, never grasped), reach (never within "
        f"{100 * triage.REACH_DISTANCE:.0f} cm of the object).",
    ]
    return lines


def figure(report: EvalReport):
    """A Plotly bar chart: success per task and cell, with the Wilson intervals as error bars."""
    import plotly.graph_objects as go

    s = report.summary()
    fig = go.Figure()
    for o, p in report.config["cells"]:
        cell = f"{o}/{p}"
        rows = [s["tasks"][t][cell] for t in s["tasks"]]
        rates = [r["rate"] if r["n"] else 0.0 for r in rows]
        fig.add_bar(
            name=f"objects {o}, paraphrases {p}",
            x=list(s["tasks"]),
            y=rates,
            error_y=dict(
                type="data",
                symmetric=False,
                array=[r["high"] - v for r, v in zip(rows, rates, strict=True)],
                arrayminus=[v - r["low"] for r, v in zip(rows, rates, strict=True)],
            ),
        )
    fig.update_layout(
        title=f"Success rate: {report.checkpoint}", yaxis=dict(range=[0, 1], title="success"), barmode="group"
    )
    return fig


def write_partial(report: EvalReport, out: str | Path) -> None:
    """report.json and report.md of the episodes finished so far (write_report adds the figure)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "report.json", json.dumps(report.to_json(), indent=1))
    _write_atomic(out / "report.md", markdown(report))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_report(report: EvalReport, out: str | Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "json": out / "report.json", "html": out / "report.html"}
    paths["md"].write_text(markdown(report))
    paths["json"].write_text(json.dumps(report.to_json(), indent=1))
    figure(report).write_html(str(paths["html"]), include_plotlyjs=True)
    return paths
