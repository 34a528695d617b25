"""State mappings: how a source's joint values become the joint values a checkpoint reads.

    as_is    the source's values as they are (their number matches)
    by_name  the joints both name alike, in the checkpoint's order; the others at the middle of the
             checkpoint's training range (its state statistics' q01..q99; zeros without statistics)
    neutral  every value at that middle: a constant state
    none     no state (a checkpoint that reads none)

`state_findings` says which mappings fit and builds the one named (or, with auto, the best one:
by_name when any joint name is shared, else neutral). A mapping fills the joint values only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.compat.declared import CheckpointNeeds, SourceGives
from workbench.compat.report import Finding

MAPPINGS: dict[str, str] = {
    "as_is": "the source's joint values as they are (their number matches)",
    "by_name": "the joints that both name alike, in the checkpoint's order; the others at the middle of "
    "the checkpoint's training range",
    "neutral": "no state from the source: every value at the middle of the checkpoint's training range "
    "(a constant state, so actions are the checkpoint's guess without proprioception)",
    "none": "no state at all (for checkpoints trained without one)",
}


@dataclass(frozen=True)
class StateMapping:
    """How the source's joint values become the checkpoint's: value i = state[index[i]], or fill[i]
    where index[i] is -1. name "none": the checkpoint gets no state (apply returns None)."""

    name: str
    description: str
    index: tuple[int, ...] = ()
    fill: np.ndarray | None = field(default=None, repr=False)

    def apply(self, state: np.ndarray | None) -> np.ndarray | None:
        if self.name == "none":
            return None
        if self.name == "as_is":
            return state
        out = np.array(self.fill, dtype=np.float64)  # [state_dim]
        if state is not None:
            s = np.asarray(state, dtype=np.float64).reshape(-1)
            for i, j in enumerate(self.index):
                if 0 <= j < s.size:
                    out[i] = s[j]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "index": list(self.index)}


def as_is() -> StateMapping:
    """The mapping that passes the source's joint values as they are."""
    return StateMapping("as_is", MAPPINGS["as_is"])


def _names(names: tuple[str, ...] | None, limit: int = 11) -> str:
    if not names:
        return "names not declared"
    shown = ", ".join(names[:limit])
    return shown + (", ..." if len(names) > limit else "")


def state_findings(
    needs: CheckpointNeeds, gives: SourceGives, mapping: str | None, auto: bool
) -> tuple[list[Finding], StateMapping | None, tuple[str, ...]]:
    """The state topic: (findings, the mapping the runner applies or None when actions cannot run, the
    mappings that would work here). `mapping` names one (MAPPINGS); auto picks one when none fits as is."""
    n, m = needs.state_dim, gives.state_dim
    if n == 0:
        text = "the checkpoint reads no robot state: actions need nothing from the source's joints"
        return [Finding("ok", "state", text)], StateMapping("none", MAPPINGS["none"]), ("none",)
    reads = f"{n} joint values ({_names(needs.state_names)}{_of(needs)})"
    if m is None and mapping is None:  # a source that does not declare its state (a custom env)
        text = (
            f"the checkpoint reads {reads}; {gives.name} does not say what state it gives before it runs: "
            "its observations' state is passed as it is (name a state mapping if it does not fit)"
        )
        return [Finding("warning", "state", text)], as_is(), ("as_is", "neutral")
    common = _common(needs, gives)
    choices = tuple(
        c for c, fits in (("as_is", m == n), ("by_name", bool(common)), ("neutral", True)) if fits
    )
    if mapping is None and m == n:
        found = [Finding("ok", "state", f"the checkpoint reads {reads}; {gives.name} gives {m}: as they are")]
        if needs.state_names and gives.state_names and needs.state_names != gives.state_names:
            found.append(
                Finding(
                    "warning",
                    "state",
                    f"the numbers match but the joints differ: the source's are {_names(gives.state_names)}",
                )
            )
        return found, as_is(), choices
    gives_words = "no state" if not m else f"{m} ({_names(gives.state_names)})"
    if mapping is None and auto:
        mapping = "by_name" if common else "neutral"
        others = [c for c in choices if c != mapping]
        picked = "picked automatically; " + (
            f"the others: {', '.join(others)}" if others else "the only one here"
        )
    else:
        picked = "chosen"
    if mapping is None:
        text = (
            f"the checkpoint reads {reads}; {gives.name} gives {gives_words}. Actions need a state mapping: "
            f"choose one of {', '.join(choices)} (" + "; ".join(f"{c}: {MAPPINGS[c]}" for c in choices) + ")"
        )
        return [Finding("error", "state", text)], None, choices
    built, why_not = _build(mapping, needs, gives, common)
    if built is None:
        return (
            [Finding("error", "state", f"state mapping {mapping!r} cannot work here: {why_not}")],
            None,
            choices,
        )
    level = "ok" if mapping == "as_is" else "warning"
    text = f"the checkpoint reads {reads}; {gives.name} gives {gives_words}: state mapping {mapping!r} ({picked}): {built.description}"
    return [Finding(level, "state", text)], built, choices


def _of(needs: CheckpointNeeds) -> str:
    return f", of {needs.robot}" if needs.robot else ""


def _common(needs: CheckpointNeeds, gives: SourceGives) -> list[str]:
    if not needs.state_names or not gives.state_names:
        return []
    return [n for n in needs.state_names if n in gives.state_names]


def _build(
    mapping: str, needs: CheckpointNeeds, gives: SourceGives, common: list[str]
) -> tuple[StateMapping | None, str]:
    n = needs.state_dim
    fill = needs.neutral_state if needs.neutral_state is not None else np.zeros(n)
    if mapping == "none":
        return None, f"the checkpoint reads {n} joint values; 'none' is for checkpoints that read no state"
    if mapping == "as_is":
        if gives.state_dim != n:
            return None, f"the source gives {gives.state_dim} values, the checkpoint reads {n}"
        return as_is(), ""
    if mapping == "neutral":
        where = "" if needs.neutral_state is not None else " (no state statistics: zeros)"
        return StateMapping("neutral", MAPPINGS["neutral"] + where, (-1,) * n, fill), ""
    if not needs.state_names or not gives.state_names:
        side = "the checkpoint" if not needs.state_names else "the source"
        return None, f"{side} does not name its joints"
    if not common:
        return None, (
            f"no joint names in common ({_names(needs.state_names)} against {_names(gives.state_names)}); "
            "choose 'neutral'"
        )
    index = tuple(gives.state_names.index(c) if c in gives.state_names else -1 for c in needs.state_names)
    desc = f"{len(common)} of {n} joints by name ({', '.join(common)}); " + MAPPINGS["by_name"].split("; ")[1]
    return StateMapping("by_name", desc, index, fill), ""
