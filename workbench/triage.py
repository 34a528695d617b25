"""Failure triage: why an episode failed, from the simulator's ground truth.

`triage(steps)` is a pure function over one episode's steps (StepRecords, or the `StepFacts` read from
them) and returns a `Triage`: one reason and the numbers it was decided on. It reads, per step:

    the driving policy's grounding metrics (PolicyStep.metrics, workbench/spatial_metrics.py):
        box_iou, box_center_in_box, num_predicted
    the env info of the built-in simulator (workbench/sim/tasks.py):
        tcp_to_object (m), object_to_goal (m), is_src_obj_grasped or is_grasped, success
    (steps saved under the older names tcp_to_source and source_to_goal read the same: OLD_INFO_KEYS)

The rules, applied in this order (the first that holds is the reason):

    success    the sim reported success on some step.
    unknown    no step carries tcp_to_object (a source without ground truth, e.g. SimplerEnv or a
               recorded episode): nothing below can be judged.
    place      the object was grasped (the sim's grasp flag on GRASP_STEPS consecutive steps, the sim's
               own consecutive_grasp) and the episode ended without success, and it was not
               progressing at the end (see time).
    grasp      the TCP came within REACH_DISTANCE of the object's centre on some step, the object was
               never grasped (a touch of both fingers for fewer than GRASP_STEPS steps is no grasp), and
               it was not progressing at the end.
    grounding  the gripper never came within REACH_DISTANCE, and the spatial answer missed the object
               on more than GROUNDING_MISS_FRACTION of the steps it answered. An answer misses when its
               best box has IoU below GROUNDING_IOU with the object's true box and that box's centre
               lies outside the true box. Steps with no readable box, or where the object is out of
               view, do not count either way; a policy that never answers is never blamed here
               (evidence answered_steps = 0).
    time       not success, and the episode was still progressing when it ended: the stage's distance
               (object_to_goal from the first step of a grasp, tcp_to_object before) fell by at
               least PROGRESS_DISTANCE over the last PROGRESS_WINDOW steps (first of the window's
               predecessor to the last step). Checked before reach, grasp and place, after grounding.
    reach      otherwise: the answer was right (or not judged) and the gripper never came within
               REACH_DISTANCE of the object.

Invariants: the reason is one of REASONS; evidence values are floats, ints or None (JSON-ready, no
inf or NaN); triage never raises on missing keys, it reports "unknown".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

REASONS = ("success", "grounding", "reach", "grasp", "place", "time", "unknown")
FAILURES = ("grounding", "reach", "grasp", "place", "time")

GROUNDING_IOU = 0.3  # an answer box with at least this IoU with the object's true box is a hit
GROUNDING_MISS_FRACTION = 0.5  # grounding failed when more than this fraction of answered steps miss
REACH_DISTANCE = 0.03  # metres from the TCP to the object's centre (the expert grasps within 1 cm)
GRASP_STEPS = 5  # consecutive control steps held (workbench.sim.tasks.CONSECUTIVE_GRASP, 1 s at 5 Hz)
PROGRESS_WINDOW = 5  # control steps (1 s at the sim's 5 Hz)
PROGRESS_DISTANCE = 0.02  # metres the stage's distance must fall over the window to count as progress

GRASP_KEYS = ("is_src_obj_grasped", "is_grasped")  # SimplerEnv's names, also the built-in sim's
# Older names of the built-in sim's distances, as steps saved earlier (saved sessions) carry them.
OLD_INFO_KEYS = {"tcp_to_object": "tcp_to_source", "object_to_goal": "source_to_goal"}

DESCRIPTIONS = {
    "success": "succeeded",
    "grounding": "the spatial answer missed the object",
    "reach": "the gripper never reached the object",
    "grasp": "reached the object but did not grasp it",
    "place": "grasped the object but did not place it",
    "time": "time ran out while still progressing",
    "unknown": "no ground truth to judge the failure",
}


@dataclass(frozen=True)
class StepFacts:
    """What triage reads from one step (None: not measured at this step)."""

    step: int
    box_iou: float | None = None  # best predicted box vs the object's true box
    centre_in_box: bool | None = None  # that box's centre inside the true box
    answered: bool = False  # the answer held at least one readable geometry
    tcp_to_object: float | None = None
    object_to_goal: float | None = None
    grasped: bool = False
    success: bool = False

    @classmethod
    def from_info(cls, step: int, info: dict[str, Any], metrics: dict[str, float] | None = None) -> StepFacts:
        """One step's env info (+ the driving policy's grounding metrics, when it answered)."""
        metrics = metrics or {}
        answered = float(metrics.get("num_predicted", 0.0)) > 0
        iou = metrics.get("box_iou") if answered else None
        inside = metrics.get("box_center_in_box") if answered else None
        return cls(
            step=int(step),
            box_iou=None if iou is None else float(iou),
            centre_in_box=None if inside is None else bool(inside),
            answered=answered,
            tcp_to_object=_finite(_read(info, "tcp_to_object")),
            object_to_goal=_finite(_read(info, "object_to_goal")),
            grasped=any(bool(info.get(k, False)) for k in GRASP_KEYS),
            success=bool(info.get("success", False)),
        )

    @classmethod
    def from_record(cls, record: Any, policy: str | None = None) -> StepFacts:
        """A StepRecord -> facts; `policy` names the slot whose answer counts (default: the first,
        which drives the environment)."""
        ps = record.policies.get(policy) if policy else next(iter(record.policies.values()), None)
        return cls.from_info(record.step, record.info, ps.metrics if ps is not None else None)

    @property
    def misses(self) -> bool | None:
        """Whether this step's answer missed the object; None when not judged."""
        if not self.answered or self.box_iou is None:
            return None
        return self.box_iou < GROUNDING_IOU and not self.centre_in_box


@dataclass(frozen=True)
class Triage:
    reason: str  # one of REASONS
    evidence: dict[str, float | int | None] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.reason in FAILURES

    def sentence(self) -> str:
        """One line for a person: the reason and the numbers that decided it."""
        e = self.evidence
        text = DESCRIPTIONS[self.reason]
        if self.reason == "grounding":
            return f"{text}: {e['missed_steps']} of {e['answered_steps']} answers missed (mean IoU {e['mean_iou']:.2f})"
        if self.reason == "reach":
            return f"{text}: closest {_cm(e['min_tcp_to_object'])} (needs {_cm(REACH_DISTANCE)})"
        if self.reason == "grasp":
            held = (
                f"held {e['longest_grasp']} steps at most (needs {GRASP_STEPS})"
                if e["longest_grasp"]
                else "never grasped"
            )
            return f"{text}: closest {_cm(e['min_tcp_to_object'])}, {held}"
        if self.reason == "place":
            return f"{text}: held {e['longest_grasp']} steps, ended {_cm(e['final_object_to_goal'])} from the goal"
        if self.reason == "time":
            return f"{text}: {_cm(e['progress'])} closer over the last {PROGRESS_WINDOW} steps"
        return text


def triage(steps: Sequence[Any], policy: str | None = None) -> Triage:
    """One episode's steps (StepRecords or StepFacts, in order) -> its Triage (rules: module docstring)."""
    facts = [s if isinstance(s, StepFacts) else StepFacts.from_record(s, policy) for s in steps]
    evidence = _evidence(facts)
    if any(f.success for f in facts):
        return Triage("success", evidence)
    if evidence["min_tcp_to_object"] is None:
        return Triage("unknown", evidence)
    grasped = evidence["longest_grasp"] >= GRASP_STEPS
    reached = evidence["min_tcp_to_object"] <= REACH_DISTANCE
    if not (grasped or reached) and _grounding_missed(evidence):
        return Triage("grounding", evidence)
    if evidence["progress"] is not None and evidence["progress"] >= PROGRESS_DISTANCE:
        return Triage("time", evidence)
    if grasped:
        return Triage("place", evidence)
    return Triage("grasp" if reached else "reach", evidence)


def _read(info: dict[str, Any], key: str) -> Any:
    """info[key], or the value under its older name (OLD_INFO_KEYS) in steps recorded before."""
    return info[key] if key in info else info.get(OLD_INFO_KEYS[key])


def _grounding_missed(evidence: dict) -> bool:
    answered = evidence["answered_steps"]
    return answered > 0 and evidence["missed_steps"] > GROUNDING_MISS_FRACTION * answered


def _evidence(facts: list[StepFacts]) -> dict[str, float | int | None]:
    judged = [f for f in facts if f.misses is not None]
    tcp = [f.tcp_to_object for f in facts if f.tcp_to_object is not None]
    runs = _grasp_runs(facts)  # (first index, length) of each run of grasped steps
    first_grasp = next((i for i, n in runs if n >= GRASP_STEPS), None)
    # the stage's distance: to the object before the first grasp, the object's to the goal after it
    if first_grasp is None:
        stage = tcp
    else:
        stage = [f.object_to_goal for f in facts[first_grasp:] if f.object_to_goal is not None]
    goal = [f.object_to_goal for f in facts if f.object_to_goal is not None]
    return {
        "steps": len(facts),
        "answered_steps": len(judged),
        "missed_steps": sum(bool(f.misses) for f in judged),
        "mean_iou": _round(sum(f.box_iou for f in judged) / len(judged)) if judged else None,
        "min_tcp_to_object": _round(min(tcp)) if tcp else None,
        "grasped_steps": sum(f.grasped for f in facts),
        "longest_grasp": max((n for _, n in runs), default=0),
        "first_grasp_step": facts[first_grasp].step if first_grasp is not None else None,
        "min_object_to_goal": _round(min(goal)) if goal else None,
        "final_object_to_goal": _round(goal[-1]) if goal else None,
        "progress": _round(stage[-1 - PROGRESS_WINDOW] - stage[-1]) if len(stage) > PROGRESS_WINDOW else None,
    }


def lineage(records: Sequence[Any], branch: str) -> list[Any]:
    """The steps of `branch`'s episode from a tab's records (in order): its own steps, after the steps
    of the episode it branched from (records of other branches at earlier steps, latest first wins)."""
    own = [r for r in records if r.branch == branch]
    if not own:
        return []
    earlier: dict[int, Any] = {}
    for r in records:
        if r.branch != branch and r.step < own[0].step:
            earlier.setdefault(r.step, r)  # the first lane's (main's) step when several share it
    return [earlier[k] for k in sorted(earlier)] + own


def episode_verdict(
    records: Sequence[Any], ended: bool | None = None, policy: str | None = None
) -> Triage | None:
    """The triage of an episode that has ended; None while it runs.

    `records` are the episode's steps in order (see lineage); `ended` overrides the last step's own
    terminated/truncated flags (e.g. a run stopped at a step cap)."""
    if not records:
        return None
    last = records[-1]
    if not (ended if ended is not None else (last.terminated or last.truncated)):
        return None
    return triage(records, policy)


def episode_line(records: Sequence[Any], ended: bool | None = None, policy: str | None = None) -> str:
    """The page's line at the end of a failed episode: "Why it failed: **reason** — numbers."; ""
    while it runs, on success, and where there is no ground truth to judge (reason unknown)."""
    verdict = episode_verdict(records, ended, policy)
    if verdict is None or not verdict.failed:
        return ""
    return f"Why it failed: **{verdict.reason}** — {verdict.sentence()}."


def _grasp_runs(facts: list[StepFacts]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for i, f in enumerate(facts):
        if f.grasped:
            if runs and runs[-1][0] + runs[-1][1] == i:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((i, 1))
    return runs


def counts(reasons: Sequence[str]) -> dict[str, int]:
    """How many episodes each reason has, in REASONS order (zeros included)."""
    return {r: sum(1 for x in reasons if x == r) for r in REASONS}


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _round(v: float) -> float:
    return round(float(v), 4)


def _cm(metres: float | None) -> str:
    return "n/a" if metres is None else f"{100 * metres:.1f} cm"
