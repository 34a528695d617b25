"""Closed-loop evaluation in the built-in simulator: success tables with Wilson intervals.

Every episode runs through the app's step loop (workbench.runner.run_episode, without snapshots), with
its seeding rule (act() at step k of the episode of seed s gets s * 1000 + k) and its observation ->
policy-input adapter (workbench.policy_input). For every task, episodes are rolled out in four cells: seen/unseen objects x seen/unseen instruction
paraphrases, each episode on a scene of its own (`episode_seed`), so that the Wilson intervals, which
count episodes as independent, are not too narrow. Success comes from the simulator; the grounding
accuracy of the policy's spatial answer (box IoU with the true box of the object to move, and whether the
predicted box centre falls inside it) is measured on the first observation of each episode. Every
episode is triaged (workbench/triage.py) from the sim's per-step info, with that first answer as the
only grounding step: report.json holds each episode's reason and numbers, the summary and report.md
count the reasons per split. The unseen split is for reporting only: nothing in workbench/train reads it.
On request, `--cells novel/seen novel/unseen` adds objects in no data at all (workbench/sim/catalog.py:
meshes no demonstration, scene or corpus holds), seeded apart from the four cells (`episode_seed`).

    workbench evaluate --checkpoint assets/checkpoints/st4vla-tiny --episodes 4 --seed 0 --out runs/eval
writes report.md, report.json and report.html (a Plotly figure) into --out (workbench/eval_report.py
holds the report, its statistics and its files). report.json and report.md are rewritten as each episode finishes (episodes in sweep order), so a stopped run keeps what finished.

Episodes run in this process one after another, or with --ray on Ray, --workers at once (workbench/sweep.py:
an actor per worker loads the checkpoint once). Every episode is deterministic from its spec (task, cell,
seed), so both give the same outcomes. An episode that fails to run (an exception, a dead worker) is
retried once, then kept in the report with status "error" and its error: it is not a policy failure, so
success rates, grounding and triage leave it out and the summary counts it under "errors".
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Annotated

import numpy as np
import tyro
from tqdm import tqdm

from workbench import spatial_metrics, sweep, triage
from workbench.compat import IncompatibleSource
from workbench.eval_report import (
    ALL_CELLS,
    CELLS,
    NOVEL_CELLS,
    NOVEL_SEED_OFFSET,
    EpisodeResult,
    EvalReport,
    write_partial,
)
from workbench.eval_resume import finished_episodes, weights_sha256
from workbench.policy.decoding import AnswerDecoding
from workbench.policy_input import InputTransform
from workbench.runner import PolicySlot, Runner, run_episode
from workbench.sources import SimSource

TASKS = ("tabletop_put_on", "tabletop_put_in", "tabletop_stack", "tabletop_pick", "tabletop_move_near")
# One cell on the command line: objects/paraphrases, e.g. --cells seen/seen seen/unseen.
Cell = Annotated[
    tuple[str, str],
    tyro.constructors.PrimitiveConstructorSpec(
        nargs=1,
        metavar="OBJECTS/PARAPHRASES",
        instance_from_str=lambda args: tuple(args[0].split("/", 1)),
        is_instance=lambda c: isinstance(c, tuple) and tuple(c) in ALL_CELLS,
        str_from_instance=lambda c: ["/".join(c)],
        choices=tuple("/".join(c) for c in ALL_CELLS),
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
    refine_radius: int = 0  # > 0: sub-pixel answer coordinates (workbench.policy.decoding)
    answer_votes: int = 1  # > 1: the median answer of shifted frames (workbench.policy.decoding)
    render_width: int = 224  # the camera image as rendered for the policy (as in training data)
    render_height: int = 168  # (pixels)
    grounding: bool = True  # also ask the spatial question at the first step
    # a subset, e.g. the seen-object cells for validation; novel/seen novel/unseen: objects in no data
    # at all (workbench.sim.catalog; stack has none, so its novel cells are skipped)
    cells: tuple[Cell, ...] = CELLS
    # the older protocol: episode k of every cell used seed + k, so the four cells of a task replayed
    # the same scenes (research/training-notes.md, note 15); kept to reproduce the notes' older figures
    paired_scenes: bool = False
    # run on Ray: alone, a Ray started on this machine; with an address, that cluster ("auto",
    # "ray://host:10001"); the checkpoint must be readable at the same path on every node
    ray: RayAddress = None
    workers: int = 1  # episodes at once, on Ray (each worker loads the checkpoint once); 1 without --ray
    # keep the finished episodes of --out's report.json and run the rest, if the same evaluation wrote
    # it (the same flags but --out, --ray and --workers, and the same weights: workbench.eval_resume)
    resume: bool = False

    def __post_init__(self) -> None:
        self.cells = tuple(tuple(c) for c in self.cells)
        unknown = [c for c in self.cells if c not in ALL_CELLS]
        if unknown:
            raise ValueError(
                f"unknown cells {unknown}: cells are (objects, paraphrases) pairs from {ALL_CELLS}"
            )


def episode_seed(cfg: EvalConfig, objects: str, paraphrase: str, k: int) -> int:
    """The seed of episode k of a cell: seed + 4k + the cell's place in CELLS; for the novel cells,
    seed + NOVEL_SEED_OFFSET + 2k + the cell's place in NOVEL_CELLS (apart from every CELLS seed).

    Every episode of a task gets its own scene, and a run over fewer cells (a validation on the
    seen-object cells) replays exactly the episodes of those cells in the full run."""
    if cfg.paired_scenes:
        return cfg.seed + k
    if (objects, paraphrase) in NOVEL_CELLS:
        return cfg.seed + NOVEL_SEED_OFFSET + len(NOVEL_CELLS) * k + NOVEL_CELLS.index((objects, paraphrase))
    return cfg.seed + len(CELLS) * k + CELLS.index((objects, paraphrase))


@dataclass(frozen=True)
class EpisodeSpec:
    """What determines one evaluation episode (with the run's EvalConfig): its task, cell and seed."""

    task: str
    objects: str
    paraphrase: str
    seed: int


def episode_specs(cfg: EvalConfig) -> list[EpisodeSpec]:
    """The run's episodes in report order: task by task, cell by cell, k = 0.. within a cell; a cell
    whose object split holds nothing the task can move (stack on the novel split) has none."""
    return [
        EpisodeSpec(task, o, p, episode_seed(cfg, o, p, k))
        for task in cfg.tasks
        for o, p in cfg.cells
        if _can_move(task, o)
        for k in range(cfg.episodes)
    ]


def _can_move(task: str, objects: str) -> bool:
    from workbench.sim.tasks import TASKS as SIM_TASKS

    spec = SIM_TASKS.get(task)
    return spec is None or bool(spec.objects_to_move(objects))  # an unknown task fails in its episodes


def _centre_error(answer, truth, width: int, height: int) -> float | None:
    centre = spatial_metrics.object_centre(truth)
    if centre is None:
        return None
    offset = spatial_metrics.centre_offset(answer, centre, width, height)
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
        steps=len(records) - 1, object=truth.object_label if truth is not None else None,
    )  # fmt: skip
    if answer is not None and truth is not None:
        m = first.policies[slot].metrics
        image = first.observation.images[first.observation.main_camera]
        result.box_iou = float(m.get("box_iou", 0.0))
        result.point_in_box = float(m.get("box_center_in_box", 0.0))
        result.centre_error = _centre_error(answer, truth, image.shape[1], image.shape[0])
    reach = [r.info["tcp_to_object"] for r in records[1:] if r.info.get("tcp_to_object") is not None]
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
    report.json and report.md there are rewritten as each episode finishes; with `cfg.resume` too, the
    episodes a stopped run of the same evaluation finished there are kept (workbench.eval_resume)."""
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
    config = {
        **asdict(cfg),
        "cells": [list(c) for c in cfg.cells],
        "weights_sha256": weights_sha256(cfg.checkpoint),
    }
    report = EvalReport(cfg.checkpoint, config)
    keys = [(s.task, s.objects, s.paraphrase, s.seed) for s in specs]
    done: dict[int, EpisodeResult] = finished_episodes(config, keys, out) if cfg.resume and out else {}
    todo = [i for i in range(len(specs)) if i not in done]
    report.episodes = [done[i] for i in sorted(done)]
    if cfg.ray is None:
        make_worker = partial(EvalWorker, cfg, policy, transform, state_mapping)
    else:  # the workers may run elsewhere: they get the checkpoint's absolute path
        make_worker = partial(EvalWorker, replace(cfg, checkpoint=str(Path(cfg.checkpoint).resolve())))
    bar = tqdm(total=len(specs), initial=len(done), desc=f"evaluate {Path(cfg.checkpoint).name}", unit="ep")
    # a checkpoint the sim cannot feed fails every episode alike: raised, not retried
    runs = sweep.run([specs[i] for i in todo], make_worker, ray=cfg.ray, workers=cfg.workers,
                     fatal=(IncompatibleSource,))  # fmt: skip
    for outcome in runs:
        result = outcome.result if outcome.ok else failed_result(outcome.spec, outcome.error)
        done[todo[outcome.index]] = result
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
    if hasattr(policy, "decoding"):  # remote and random policies answer as they answer
        policy.decoding = AnswerDecoding(refine_radius, answer_votes)
