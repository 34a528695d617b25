"""Closed-loop evaluation in the built-in simulator: success tables with Wilson intervals.

Every episode runs through the app's step loop (workbench.runner.run_episode, without snapshots), with
its seeding rule (act() at step k of the episode of seed s gets s * 1000 + k) and its observation ->
policy-input adapter (workbench.policy_input). For every task, episodes are rolled out in four cells: seen/unseen objects x seen/unseen instruction
paraphrases, each episode on a scene of its own (`episode_seed`), so that the Wilson intervals, which
count episodes as independent, are not too narrow. Success comes from the simulator; the grounding
accuracy of the policy's spatial answer (box IoU with the source object's true box, and whether the
predicted box centre falls inside it) is measured on the first observation of each episode. Every
episode is triaged (workbench/triage.py) from the sim's per-step info, with that first answer as the
only grounding step: report.json holds each episode's reason and numbers, the summary and report.md
count the reasons per split. The unseen split is for reporting only: nothing in workbench/train reads it.

    workbench evaluate --checkpoint assets/checkpoints/st4vla-tiny --episodes 4 --seed 0 --out runs/eval
writes report.md, report.json and report.html (a Plotly figure) into --out. report.json and report.md
are rewritten as each episode finishes (episodes in sweep order), so a stopped run keeps what finished.

Episodes run in this process one after another, or with --ray on Ray, --workers at once (workbench/sweep.py:
an actor per worker loads the checkpoint once). Every episode is deterministic from its spec (task, cell,
seed), so both give the same outcomes. An episode that fails to run (an exception, a dead worker) is
retried once, then kept in the report with status "error" and its error: it is not a policy failure, so
success rates, grounding and triage leave it out and the summary counts it under "errors".
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Annotated

import numpy as np
import tyro
from tqdm import tqdm

from workbench import spatial_metrics, sweep, triage
from workbench.compat import IncompatibleSource
from workbench.policy_input import InputTransform
from workbench.runner import PolicySlot, Runner, run_episode
from workbench.sources import SimSource

TASKS = ("tabletop_put_on", "tabletop_put_in", "tabletop_stack", "tabletop_pick", "tabletop_move_near")
SPLITS = ("seen", "unseen")
# (objects, paraphrases); the order fixes each cell's seeds (see episode_seed)
CELLS = (("seen", "seen"), ("seen", "unseen"), ("unseen", "seen"), ("unseen", "unseen"))
# One cell on the command line: objects/paraphrases, e.g. --cells seen/seen seen/unseen.
Cell = Annotated[
    tuple[str, str],
    tyro.constructors.PrimitiveConstructorSpec(
        nargs=1,
        metavar="OBJECTS/PARAPHRASES",
        instance_from_str=lambda args: tuple(args[0].split("/", 1)),
        is_instance=lambda c: isinstance(c, tuple) and tuple(c) in CELLS,
        str_from_instance=lambda c: ["/".join(c)],
        choices=tuple("/".join(c) for c in CELLS),
    ),
]
# --ray alone: a Ray started on this machine (sweep.LOCAL); --ray ADDRESS: a cluster ("auto", "ray://h:10001")
RayAddress = Annotated[
    str | None,
    tyro.constructors.PrimitiveConstructorSpec(
        nargs=(0, 1),
        metavar="[ADDRESS]",
        instance_from_str=lambda args: args[0] if args else sweep.LOCAL,
        is_instance=lambda v: v is None or isinstance(v, str),
        str_from_instance=lambda v: [] if v in (None, sweep.LOCAL) else [v],
    ),
]


@dataclass
class EvalConfig:
    """`workbench evaluate`: closed-loop success in the built-in sim (each field is a flag)."""

    checkpoint: str  # a workbench checkpoint folder
    out: str = "runs/eval"  # report.md, report.json and report.html go here
    tasks: tuple[str, ...] = TASKS  # the built-in sim's tasks
    episodes: int = 4  # per task and per cell (objects x paraphrases)
    seed: int = 10_000  # first seed; evaluation seeds never overlap the training seeds (0..9_999)
    max_steps: int | None = None  # None: the task's own limit
    ddim_steps: int = 5  # the action sampler's denoising steps
    cfg_scale: float = 1.5  # classifier-free guidance (1: none)
    ensemble_horizon: int = 2  # chunks averaged per executed action (1: the latest)
    refine_radius: int = 0  # > 0: sub-pixel answer coordinates (ST4VLAPolicy.refine_radius)
    answer_votes: int = 1  # > 1: the median answer of shifted frames (ST4VLAPolicy.answer_votes)
    render_width: int = 224  # the camera image as rendered for the policy (as in training data)
    render_height: int = 168  # (pixels)
    grounding: bool = True  # also ask the spatial question at the first step
    cells: tuple[Cell, ...] = CELLS  # a subset, e.g. the seen-object cells for validation
    # the older protocol: episode k of every cell used seed + k, so the four cells of a task replayed
    # the same scenes (research/training-notes.md, note 15); kept to reproduce the notes' older figures
    paired_scenes: bool = False
    # run on Ray: alone, a Ray started on this machine; with an address, that cluster ("auto",
    # "ray://host:10001"); the checkpoint must be readable at the same path on every node
    ray: RayAddress = None
    workers: int = 1  # episodes at once, on Ray (each worker loads the checkpoint once); 1 without --ray

    def __post_init__(self) -> None:
        self.cells = tuple(tuple(c) for c in self.cells)
        unknown = [c for c in self.cells if c not in CELLS]
        if unknown:
            raise ValueError(f"unknown cells {unknown}: cells are (objects, paraphrases) pairs from {CELLS}")


def episode_seed(cfg: EvalConfig, objects: str, paraphrase: str, k: int) -> int:
    """The seed of episode k of a cell: seed + 4k + the cell's place in CELLS.

    Every episode of a task gets its own scene, and a run over fewer cells (a validation on the
    seen-object cells) replays exactly the episodes of those cells in the full run."""
    if cfg.paired_scenes:
        return cfg.seed + k
    return cfg.seed + len(CELLS) * k + CELLS.index((objects, paraphrase))


@dataclass(frozen=True)
class EpisodeSpec:
    """What determines one evaluation episode (with the run's EvalConfig): its task, cell and seed."""

    task: str
    objects: str
    paraphrase: str
    seed: int


def episode_specs(cfg: EvalConfig) -> list[EpisodeSpec]:
    """The run's episodes in report order: task by task, cell by cell, k = 0.. within a cell."""
    return [
        EpisodeSpec(task, o, p, episode_seed(cfg, o, p, k))
        for task in cfg.tasks
        for o, p in cfg.cells
        for k in range(cfg.episodes)
    ]


@dataclass
class EpisodeResult:
    task: str
    objects: str  # "seen" | "unseen"
    paraphrase: str  # "seen" | "unseen"
    seed: int
    instruction: str
    success: bool
    steps: int
    box_iou: float | None = None
    point_in_box: float | None = None
    # how far the answer's first box centre lies from the source's centre: RMS over x and y, as a
    # fraction of the image (0.5 when unanswered); the unit of the oracle table in
    # research/training-notes.md
    centre_error: float | None = None
    reach_distance: float | None = None  # closest the gripper came to the source object (metres)
    seconds: float = 0.0
    source: str | None = None  # the object to move (catalog name); absent in older reports
    triage: str | None = None  # why it failed (workbench.triage.REASONS); absent in older reports
    triage_evidence: dict | None = None  # the numbers the reason was decided on
    # "ok", or "error": the episode could not run (its error below); not a policy failure, left out of
    # every rate (absent in older reports: ok)
    status: str = "ok"
    error: str | None = None


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

    def summary(self) -> dict:
        tasks = sorted({e.task for e in self.select()})
        return {
            "overall": asdict(self.success()),
            "objects": {s: asdict(self.success(objects=s)) for s in SPLITS},
            "paraphrase": {s: asdict(self.success(paraphrase=s)) for s in SPLITS},
            "tasks": {
                t: {
                    f"{o}/{p}": asdict(self.success(task=t, objects=o, paraphrase=p))
                    for o, p in self.config["cells"]
                }
                for t in tasks
            },
            "grounding": {s: self.grounding(s) for s in SPLITS},
            "reach_distance": {s: self.reach(s) for s in SPLITS},
            "triage": self.triage_counts(),
            "sources": self.by_source(),
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

    def by_source(self) -> list[dict]:
        """Success and box IoU per source object, seen split first: where a failure on unseen objects
        is one object's (a mesh the grounding never places) or all of them."""
        rows = []
        for name in sorted({e.source for e in self.episodes if e.source is not None}):
            eps = self.select(source=name)
            ious = [e.box_iou for e in eps if e.box_iou is not None]
            rows.append(
                {
                    "source": name,
                    "objects": eps[0].objects,
                    **asdict(rate([e.success for e in eps])),
                    "box_iou": float(np.mean(ious)) if ious else float("nan"),
                }
            )
        return sorted(rows, key=lambda r: (SPLITS.index(r["objects"]), r["source"]))

    def triage_counts(self) -> dict[str, dict[str, int]]:
        """Episodes per triage reason, per split ("objects seen", ..., "paraphrases unseen") and "all";
        episodes of older reports, which have no reason, are left out."""
        triaged = [e for e in self.episodes if e.triage is not None]
        out = {
            f"{axis} {s}": [e.triage for e in triaged if getattr(e, axis) == s]
            for axis in ("objects", "paraphrase")
            for s in SPLITS
        }
        out["all"] = [e.triage for e in triaged]
        return {k: triage.counts(v) for k, v in out.items()}

    def reach(self, objects: str | None = None) -> float:
        """Mean over episodes of the closest gripper-to-source distance (metres); NaN if not measured."""
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
    return (
        f"{n} episodes per task and cell, each on its own scene: episode k of cell c (in the order "
        f"{order}) has seed {seed} + {len(CELLS)}k + c"
    )


def markdown(report: EvalReport) -> str:
    s = report.summary()
    cells = [f"{o}/{p}" for o, p in report.config["cells"]]
    lines = [
        f"# Evaluation of `{report.checkpoint}`",
        "",
        f"Closed loop in the built-in simulator; {_seeds(report.config)}; "
        "success with Wilson 95% intervals. Cells are objects/paraphrases (seen or unseen).",
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
        f"| seen objects | {_pct(s['objects']['seen'])} |",
        f"| unseen objects | {_pct(s['objects']['unseen'])} |",
        f"| seen paraphrases | {_pct(s['paraphrase']['seen'])} |",
        f"| unseen paraphrases | {_pct(s['paraphrase']['unseen'])} |",
        f"| all | {_pct(s['overall'])} |",
        "",
        "| grounding (first step, source object) | mean box IoU | point in box | centre error | n |",
        "|---|---|---|---|---|",
    ]
    for split in SPLITS:
        g = s["grounding"][split]
        lines.append(
            f"| {split} objects | {g['box_iou']:.3f} | {g['point_in_box']:.3f} | {g['centre_error']:.3f} | {g['n']} |"
        )
    lines += [
        "",
        "Point in box: the centre of the best predicted box lies inside the source object's true box. "
        "Centre error: how far the first predicted box's centre lies from the source's centre, RMS per "
        "axis as a fraction of the image (0.5 when nothing was answered).",
        "",
        "| closest gripper-to-source distance (mean, cm) | seen objects | unseen objects |",
        "|---|---|---|",
        f"| all tasks | {100 * s['reach_distance']['seen']:.1f} | {100 * s['reach_distance']['unseen']:.1f} |",
    ]
    lines += _triage_table(s["triage"])
    if s["errors"]["n"]:
        lines += ["", f"{s['errors']['n']} episodes could not run (in no rate above; retried once each):", ""]
        lines += [
            f"- {e['task']} {e['objects']}/{e['paraphrase']} seed {e['seed']}: {e['error']}"
            for e in s["errors"]["episodes"]
        ]
    if s["sources"]:
        lines += ["", "| source object | split | success | box IoU |", "|---|---|---|---|"]
        lines += [
            f"| {r['source']} | {r['objects']} | {_pct(r)} | {r['box_iou']:.3f} |" for r in s["sources"]
        ]
    return "\n".join(lines) + "\n"


def _triage_table(counts: dict[str, dict[str, int]]) -> list[str]:
    """Markdown rows: episodes per triage reason (rows) and split (columns); [] with nothing triaged."""
    if not counts["all"] or not sum(counts["all"].values()):
        return []
    splits = list(counts)
    lines = [
        "",
        "| outcome (workbench/triage.py) | " + " | ".join(splits) + " |",
        "|---|" + "---|" * len(splits),
    ]
    lines += [f"| {r} | " + " | ".join(str(counts[s][r]) for s in splits) + " |" for r in triage.REASONS]
    lines += [
        "",
        "Failures by the first rule that holds: grounding (the first answer missed the source and the gripper "
        "never came near it), time (still closing in at the end), place (grasped, not placed), grasp "
        "(reached, never grasped), reach (never within "
        f"{100 * triage.REACH_DISTANCE:.0f} cm of the source).",
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


def _centre_error(answer, truth, width: int, height: int) -> float | None:
    source = spatial_metrics.source_centre(truth)
    if source is None:
        return None
    offset = spatial_metrics.centre_offset(answer, source, width, height)
    dx, dy = offset or spatial_metrics.UNANSWERED_OFFSET
    return math.sqrt((dx * dx + dy * dy) / 2)


def policy_slot(
    policy, cfg: EvalConfig, transform: InputTransform | None = None, state_mapping: str | None = None
) -> PolicySlot:
    """The runner's slot for an evaluated policy: the spatial question at the first step only, no
    attention maps; `transform` and `state_mapping` change what the action expert reads (research)."""
    return PolicySlot(
        "policy", policy, num_ddim_steps=cfg.ddim_steps, cfg_scale=cfg.cfg_scale,
        ensemble_horizon=cfg.ensemble_horizon, spatial_query="box" if cfg.grounding else None,
        spatial_each_step=False, return_internals=False, state_mapping=state_mapping, input_transform=transform,
    )  # fmt: skip


def evaluate_episode(
    source: SimSource, slot: PolicySlot, task: str, objects: str, paraphrase: str, seed: int, cfg: EvalConfig
) -> EpisodeResult:
    """One closed-loop episode through the Runner (workbench.runner.run_episode, no snapshots); the
    spatial answer is scored on the first observation."""
    t0 = time.perf_counter()
    runner = Runner(source, [slot], branching=False)  # not closed: the cell's source outlives it
    options = {"split": objects, "paraphrase": paraphrase}
    records = run_episode(runner, seed, options, cfg.max_steps)
    result = episode_result(records, slot.name, task, objects, paraphrase, seed)
    result.seconds = time.perf_counter() - t0
    return result


def episode_result(
    records: list, slot: str, task: str, objects: str, paraphrase: str, seed: int
) -> EpisodeResult:
    """An episode's records (step 0 first) -> its EpisodeResult, triaged (workbench.triage)."""
    first = records[0]
    truth, answer = first.observation.ground_truth, first.policies[slot].spatial
    result = EpisodeResult(
        task, objects, paraphrase, seed, first.policies[slot].instruction, success=False,
        steps=len(records) - 1, source=truth.source_label if truth is not None else None,
    )  # fmt: skip
    if answer is not None and truth is not None:
        m = first.policies[slot].metrics
        image = first.observation.images[first.observation.main_camera]
        result.box_iou = float(m.get("box_iou", 0.0))
        result.point_in_box = float(m.get("box_center_in_box", 0.0))
        result.centre_error = _centre_error(answer, truth, image.shape[1], image.shape[0])
    reach = [r.info["tcp_to_source"] for r in records[1:] if r.info.get("tcp_to_source") is not None]
    result.reach_distance = float(min(reach)) if reach else None
    result.success = any(bool(r.info.get("success")) for r in records[1:])
    verdict = triage.triage([triage.StepFacts.from_record(r, slot) for r in records])
    result.triage, result.triage_evidence = verdict.reason, verdict.evidence
    return result


def evaluate(
    cfg: EvalConfig,
    policy=None,
    transform: InputTransform | None = None,
    state_mapping: str | None = None,
    out: str | Path | None = None,
) -> EvalReport:
    """Roll out `cfg.checkpoint` (or the given policy) on every task and cell; returns the report.

    Every episode runs through the Runner (one loop, one seeding rule: workbench.runner). `transform`
    and `state_mapping` change what the action expert reads (workbench.policy_input); experiments that
    feed it more (research/experiments/oracle_points.py) pass their own.
    With `cfg.ray` the episodes run on Ray, `cfg.workers` at once, each worker loading the checkpoint
    once; the report is the one this process writes alone (same seeds, same order). With `out`,
    report.json and report.md there are rewritten as each episode finishes."""
    if cfg.episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {cfg.episodes}")
    if cfg.workers < 1:
        raise ValueError(f"workers must be >= 1, got {cfg.workers}")
    if cfg.workers > 1 and cfg.ray is None:
        raise ValueError(
            f"workers={cfg.workers} runs episodes at once on Ray: add --ray (a Ray on this machine) or "
            "--ray ADDRESS (a cluster), or leave --workers at 1 to run them here one after another"
        )
    if cfg.ray is not None and (policy is not None or transform is not None or state_mapping is not None):
        raise ValueError(
            "on Ray every worker loads cfg.checkpoint: pass no policy, transform or state_mapping"
        )
    specs = episode_specs(cfg)
    report = EvalReport(cfg.checkpoint, {**asdict(cfg), "cells": [list(c) for c in cfg.cells]})
    if cfg.ray is None:
        make_worker = partial(EvalWorker, cfg, policy, transform, state_mapping)
    else:  # the workers may run elsewhere: they get the checkpoint's absolute path
        make_worker = partial(EvalWorker, replace(cfg, checkpoint=str(Path(cfg.checkpoint).resolve())))
    done: dict[int, EpisodeResult] = {}
    bar = tqdm(total=len(specs), desc=f"evaluate {Path(cfg.checkpoint).name}", unit="ep")
    # a checkpoint the sim cannot feed fails every episode alike: raised, not retried
    runs = sweep.run(specs, make_worker, ray=cfg.ray, workers=cfg.workers, fatal=(IncompatibleSource,))
    for outcome in runs:
        done[outcome.index] = outcome.result if outcome.ok else failed_result(outcome.spec, outcome.error)
        report.episodes = [done[i] for i in sorted(done)]
        if out is not None:
            write_partial(report, out)
        bar.update(1)
        ran = report.select()
        bar.set_postfix(success=f"{np.mean([e.success for e in ran]):.2f}" if ran else "-",
                        errors=len(report.errors()))  # fmt: skip
    bar.close()
    return report


def failed_result(spec: EpisodeSpec, error: str | None) -> EpisodeResult:
    """The report's row of an episode that could not run (status error): not a policy failure."""
    return EpisodeResult(spec.task, spec.objects, spec.paraphrase, spec.seed, "", success=False, steps=0,
                         status="error", error=error or "unknown error")  # fmt: skip


class EvalWorker:
    """Runs evaluation episodes from their specs (workbench.sweep's worker): loads the checkpoint once
    (unless given a policy) and keeps one simulator per task for the episodes it runs."""

    def __init__(self, cfg: EvalConfig, policy=None, transform=None, state_mapping=None) -> None:
        if policy is None:
            from workbench.policy.policy import ST4VLAPolicy  # heavy (torch, transformers): only to run

            policy = ST4VLAPolicy.load(cfg.checkpoint)
        answer_settings(policy, cfg.refine_radius, cfg.answer_votes)
        self.cfg, self.slot = cfg, policy_slot(policy, cfg, transform, state_mapping)
        self.sources: dict[str, SimSource] = {}

    def __call__(self, spec: EpisodeSpec) -> EpisodeResult:
        cfg = self.cfg
        if spec.task not in self.sources:
            self.sources[spec.task] = SimSource.from_task(
                spec.task, width=cfg.render_width, height=cfg.render_height, depth=False
            )
        source = self.sources[spec.task]
        return evaluate_episode(source, self.slot, spec.task, spec.objects, spec.paraphrase, spec.seed, cfg)

    def close(self) -> None:
        for source in self.sources.values():
            source.close()
        self.sources.clear()


def answer_settings(policy, refine_radius: int, answer_votes: int) -> None:
    """How the policy answers its spatial prompt at control time (inference settings, not weights)."""
    if hasattr(policy, "refine_radius"):  # remote and random policies answer as they answer
        policy.refine_radius, policy.answer_votes = refine_radius, answer_votes


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
