"""Probe a policy: sweep objects x instructions (paraphrases) x seeds on a built-in task.

Each episode runs closed-loop through the Runner (the one episode loop, workbench.runner.run_episode, as
evaluation runs it) until the task ends or `max_steps`; each can be
saved as a session so a failed one opens in the viewer with no model. Progress is reported after
every episode, and `should_stop` lets a UI cancel between episodes.

Episodes run in this process one after another, or on Ray, `workers` at once (workbench/sweep.py: each
worker loads the checkpoint once and saves its episodes' sessions itself); every episode is
deterministic from its object, instruction and seed, so both give the same rows, kept in the sweep's
order. An episode that could not run (an exception, a dead worker) is retried once, then kept as a row
with status "error" and its error: not a policy failure, and out of the success rate.

Every row carries the episode's failure triage (workbench/triage.py: success, grounding, reach, grasp,
place, time or unknown) with the numbers it was decided on, and a `prompt`: the instruction line the
spec gave, or, for the task's own instructions, the one used with the object's and the target's names
replaced by OBJECT_SLOT and TARGET_SLOT, so that rows of different objects (and of the targets each
seed draws) share a column of the objects x instructions grid.
"""

from __future__ import annotations

import itertools
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tqdm import tqdm

from workbench import sweep
from workbench.compat import IncompatibleSource
from workbench.runner import PolicySlot, Runner, run_episode
from workbench.sessions import SessionStore
from workbench.sources import SimSource
from workbench.triage import StepFacts, Triage, triage

OBJECT_SLOT, TARGET_SLOT = "<object>", "<target>"


class ProbeError(ValueError):
    """A sweep that cannot run as asked (the message says what to change)."""


@dataclass
class ProbeSpec:
    task: str
    objects: list[str]  # catalog or custom object names; [""] = the task's default object
    instructions: list[str]  # [""] = each episode's own instruction from the task
    seeds: list[int]
    split: str = "seen"
    max_steps: int = 60
    num_ddim_steps: int = 10
    cfg_scale: float = 1.5
    width: int = 320  # camera size of the built-in sim
    height: int = 240

    def __post_init__(self) -> None:
        if not self.task:
            raise ProbeError("a probe needs a task name: pick one of the built-in tasks")
        self.objects = list(self.objects) or [""]
        self.instructions = list(self.instructions) or [""]
        if not self.seeds:
            raise ProbeError("a probe needs at least one seed, e.g. seeds=[0, 1, 2]")
        if not 1 <= self.max_steps <= 1000:
            raise ProbeError(f"max_steps must be in 1..1000, got {self.max_steps}")
        if self.total > 1000:
            raise ProbeError(f"{self.total} episodes is too many for one probe: use at most 1000")

    @property
    def total(self) -> int:
        return len(self.objects) * len(self.instructions) * len(self.seeds)

    def episodes(self) -> Iterator[tuple[str, str, int]]:
        yield from itertools.product(self.objects, self.instructions, self.seeds)


@dataclass
class ProbeRow:
    object: str
    instruction: str  # the instruction the episode actually ran with
    seed: int
    success: bool
    steps: int
    seconds: float  # wall time, rounded to 0.1 s
    session: str = ""  # saved session id ("" when not saved)
    triage: str = ""  # the triage reason (workbench.triage.REASONS)
    why: str = ""  # the triage as one sentence with its numbers
    prompt: str = ""  # the instruction as the spec gave it (the grid's column; see the module doc)
    evidence: dict = field(default_factory=dict)  # the numbers the triage was decided on
    status: str = "ok"  # "error": the episode could not run (see error); not a policy failure
    error: str = ""
    capped: bool = False  # stopped at the spec's max_steps before the task ended it (not the task's verdict)


@dataclass
class ProbeResult:
    spec: ProbeSpec
    rows: list[ProbeRow] = field(default_factory=list)
    stopped: bool = False

    def as_dicts(self) -> list[dict]:
        return [asdict(r) for r in self.rows]

    @property
    def success_rate(self) -> float:
        """Over the episodes that ran (an episode that could not run is no policy failure)."""
        ran = [r for r in self.rows if r.status == "ok"]
        return sum(r.success for r in ran) / len(ran) if ran else float("nan")


@dataclass
class EpisodeOutcome:
    success: bool
    steps: int  # control steps taken
    instruction: str  # the instruction used
    object: str  # the object the episode moves (the ground truth's label of it)
    target: str  # the target object or region ("" for tasks without one)
    triage: Triage
    capped: bool = False  # stopped at max_steps while the task had not ended the episode


def probe_episode(
    spec: ProbeSpec, policy: Any, obj: str, instruction: str, seed: int, *, sinks: list | None = None
) -> EpisodeOutcome:
    """One closed-loop episode through the Runner (workbench.runner.run_episode, as evaluation runs
    one: no snapshots, the same seeding rule), triaged from the steps' ground truth."""
    slot = PolicySlot("policy", policy, num_ddim_steps=spec.num_ddim_steps, cfg_scale=spec.cfg_scale)
    source = SimSource.from_task(spec.task, width=spec.width, height=spec.height)
    runner = Runner(source, [slot], sinks=list(sinks or []), branching=False)
    options = {"split": spec.split}
    if obj:
        options["object"] = obj
    if instruction:
        options["instruction"] = instruction
    try:
        records = run_episode(runner, seed, options, spec.max_steps)
    finally:
        source.close()  # the sinks are the caller's to close
    first, last = records[0], records[-1]
    truth = first.observation.ground_truth
    success = bool(last.info.get("success", False))
    moved, target = (truth.object_label, truth.target_label) if truth else (obj, "")
    verdict = triage([StepFacts.from_record(r, slot.name) for r in records])
    capped = not (success or last.terminated or last.truncated)
    return EpisodeOutcome(success, len(records) - 1, first.observation.instruction, moved, target, verdict,
                          capped)  # fmt: skip


def prompt_of(instruction: str, used: str, obj: str, target: str = "") -> str:
    """The grid column of an episode: the spec's line, or the used one with the object and the target
    generalised."""
    if instruction:
        return instruction
    if not obj or obj not in used:
        return "(the task's own)"
    prompt = used.replace(obj, OBJECT_SLOT)
    return prompt.replace(target, TARGET_SLOT) if target else prompt


@dataclass(frozen=True)
class ProbeEpisode:
    """One episode of a probe: its place in the sweep, object, instruction line and seed."""

    n: int
    object: str
    instruction: str
    seed: int


class ProbeWorker:
    """Runs probe episodes (workbench.sweep's worker), saving each as session probe-<id>-<n> under
    `sessions_root` (on a Ray cluster: a folder every node can write). Given a checkpoint path rather
    than a policy, it loads it once."""

    def __init__(self, spec: ProbeSpec, policy: Any, sessions_root: str | Path | None, probe_id: str) -> None:
        if isinstance(policy, str | Path):
            from workbench.policy.policy import ST4VLAPolicy  # heavy (torch, transformers): only to run

            policy = ST4VLAPolicy.load(policy)
        self.spec, self.policy, self.probe_id = spec, policy, probe_id
        self.sessions_root = None if sessions_root is None else Path(sessions_root)

    def __call__(self, ep: ProbeEpisode) -> ProbeRow:
        spec, writer, session = self.spec, None, ""
        if self.sessions_root is not None:
            session = f"probe-{self.probe_id}-{ep.n:03d}"
            shutil.rmtree(self.sessions_root / session, ignore_errors=True)  # a failed try's partial copy
            meta = {"probe": self.probe_id, "task": spec.task, "object": ep.object,
                    "instruction": ep.instruction, "seed": ep.seed}  # fmt: skip
            writer = SessionStore(self.sessions_root).create(session, meta=meta)
        t0 = time.perf_counter()
        try:
            out = probe_episode(spec, self.policy, ep.object, ep.instruction, ep.seed,
                                sinks=[writer] if writer else [])  # fmt: skip
        finally:
            if writer is not None:
                writer.close()
        seconds = round(time.perf_counter() - t0, 1)
        why = out.triage.sentence()
        if out.capped:
            why += f" (stopped at the probe's {spec.max_steps}-step cap; the task had not ended the episode)"
        return ProbeRow(ep.object or out.object or "(default)", out.instruction, int(ep.seed), out.success,
                        out.steps, seconds, session, triage=out.triage.reason, why=why,
                        prompt=prompt_of(ep.instruction, out.instruction, out.object, out.target),
                        evidence=dict(out.triage.evidence), capped=out.capped)  # fmt: skip


def failed_row(ep: ProbeEpisode, error: str | None) -> ProbeRow:
    """The row of an episode that could not run (status error): not a policy failure, no triage."""
    return ProbeRow(ep.object or "(default)", ep.instruction, int(ep.seed), False, 0, 0.0,
                    why=f"could not run (retried once): {error}", prompt=ep.instruction or "(the task's own)",
                    status="error", error=error or "unknown error")  # fmt: skip


def run_probe(
    spec: ProbeSpec,
    policy: Any,
    *,
    sessions_root: str | Path | None = None,
    progress: Callable[[int, int, ProbeRow], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    ray: str | None = None,
    workers: int = 1,
) -> ProbeResult:
    """Run every episode of `spec`; with `sessions_root`, save each as session probe-<id>-<n>.

    `policy` is a loaded policy (in this process) or a checkpoint path (which `ray` needs: each Ray
    worker loads it once). With `ray` (workbench.sweep.LOCAL or a cluster's address), `workers`
    episodes run at once. `progress(done, total, row)` is called as each episode finishes (in any
    order); result.rows stay in the sweep's order."""
    if ray is not None and not isinstance(policy, str | Path):
        raise ProbeError("a probe on Ray needs a checkpoint folder (each worker loads it), not a policy")
    if isinstance(policy, str | Path) and ray is not None:
        policy = str(Path(policy).resolve())
    result = ProbeResult(spec)
    probe_id = uuid.uuid4().hex[:6]
    episodes = [ProbeEpisode(n, o, i, int(s)) for n, (o, i, s) in enumerate(spec.episodes())]
    make_worker = partial(ProbeWorker, spec, policy, sessions_root, probe_id)
    rows: dict[int, ProbeRow] = {}
    bar = tqdm(total=spec.total, desc=f"probe {spec.task}", unit="ep", leave=False)
    runs = sweep.run(episodes, make_worker, ray=ray, workers=workers, should_stop=should_stop,
                     fatal=(IncompatibleSource,))  # fmt: skip
    for outcome in runs:
        row = outcome.result if outcome.ok else failed_row(outcome.spec, outcome.error)
        rows[outcome.index] = row
        result.rows = [rows[n] for n in sorted(rows)]
        bar.update(1)
        if progress is not None:
            progress(len(rows), spec.total, row)
    bar.close()
    result.stopped = len(rows) < spec.total
    return result
