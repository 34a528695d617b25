"""Plain-data and Markdown summaries of a tab's current step (what the page shows beside the viewer)."""

from __future__ import annotations

import numpy as np

from panels.state.clicks import predicted_centre
from panels.state.tab import TabState
from workbench.records import StepRecord


def _floats(a: np.ndarray | None) -> list[float] | None:
    return None if a is None else [round(float(v), 5) for v in np.asarray(a).reshape(-1)]


def tab_summary(tab: TabState) -> dict:
    """The tab's current step as data: the first lane's step, with every lane's policies (in
    independent A/B each checkpoint drives its own lane; both show up under "policies")."""
    lanes = tab.lane_records()
    if not lanes:
        return {}
    out = step_summary(lanes[0])
    for other in lanes[1:]:
        out["policies"].update(step_summary(other)["policies"])
    out["lanes"] = {r.branch: {"step": r.step, "done": bool(r.terminated or r.truncated)} for r in lanes}
    out["mode"] = tab.mode
    return out


def step_summary(record: StepRecord | None) -> dict:
    """JSON-ready view of one step: what each policy answered and did (also the app's API output)."""
    if record is None:
        return {}
    policies = {}
    for name, ps in record.policies.items():
        centre = predicted_centre(ps.spatial.geometry if ps.spatial else [])
        policies[name] = {
            "instruction": ps.instruction,
            "answer": ps.spatial.text if ps.spatial else None,
            "problems": list(ps.spatial.problems) if ps.spatial else [],
            "predicted_centre": None if centre is None else [round(centre[0], 1), round(centre[1], 1)],
            "executed": _floats(ps.executed),
            "chunk_first_action": _floats(ps.chunk.actions[0]) if ps.chunk is not None else None,
            "branch": record.branch,
            # JSON has no inf/NaN: a metric with nothing to measure is null.
            "metrics": {k: round(float(v), 4) if np.isfinite(v) else None for k, v in ps.metrics.items()},
        }
    return {
        "step": record.step,
        "branch": record.branch,
        "instruction": _instruction(record),
        "policies": policies,
        "executed_action": _floats(record.executed_action),
        "reward": float(record.reward),
        "done": bool(record.terminated or record.truncated),
        "success": bool(record.info.get("success", False)),
    }


def _instruction(record: StepRecord) -> str:
    """What the policies were asked (an edit overrides the source's own instruction)."""
    for ps in record.policies.values():
        return ps.instruction
    return record.observation.instruction


def _short(text: str, n: int = 160) -> str:
    flat = " ".join(str(text).split())
    return (flat[:n] + "…") if len(flat) > n else (flat or "(empty)")


def outcome(record: StepRecord, recorded: bool = False) -> str:
    """The episode's outcome at this step in words: "" while it goes on; "success"; "failed: time
    limit" (the simulator's step limit ran out); "failed" (it ended otherwise); a recording's last
    frame is "end of the recording" (it has no outcome of its own unless it says success)."""
    if record.info.get("success"):
        return "✅ success"
    if not (record.terminated or record.truncated):
        return ""
    if recorded:
        return "⏹ end of the recording"
    return "❌ failed: time limit" if record.truncated else "❌ failed"


def _branch_words(tab: TabState, branch: str) -> str:
    parent = tab.parents.get(branch)
    if branch == "main" or parent is None:
        return f"branch `{branch}`"
    made = [e for e in tab.edits if e.get("kind") == "branch" and branch.split("/")[0] == e.get("name")]
    at = made[-1]["step"] if made else None
    return f"branch `{branch}`, from `{parent}`" + ("" if at is None else f" at step {at}")


def status_markdown(tab: TabState) -> str:
    record = tab.last_record
    if record is None:
        return "**Nothing loaded.** Pick a checkpoint and a source, then press **Load**."
    recorded = tab.source.kind == "episode"
    result = outcome(record, recorded=recorded)
    lines = [
        f"**Step {record.step}** ({_branch_words(tab, record.branch)})"
        + (f" · **{result}**" if result else ""),
        f"Instruction: *{_instruction(record)}*",
    ]
    lines += [line for line in [tab.outcome_line()] if line]  # the end-of-episode triage
    if tab.view_titles:
        lines.append("Viewer: " + " · ".join(f"[{t}]" for t in tab.view_titles))
    if tab.replayed:
        lines.insert(0, f"▶ Replaying saved session `{tab.replayed}` (no model loaded)")
    lanes = tab.lane_records()
    for other in lanes[1:]:  # independent A/B: the other lane's own step and outcome
        ended = outcome(other, recorded=recorded)
        lines.append(f"Lane `{other.branch}`: step {other.step}" + (f" · **{ended}**" if ended else ""))
    policies = {n: ps for r in lanes for n, ps in r.policies.items()} or record.policies
    answers = [line for name, ps in policies.items() for line in _answer_lines(tab, name, ps)]
    return "  \n".join(lines) + "\n\n" + "\n".join(answers)  # one line each, then the answers' list


def _answer_lines(tab: TabState, name: str, ps) -> list[str]:
    """What a policy answered, in words: a model that writes no spatial answer says so, not an error."""
    text = ps.spatial.text.strip() if ps.spatial else ""
    if not text:
        if tab.writes_no_answer(name):
            return [
                f"- **{name}**: not asked for a spatial answer (trained without one; it acts without one)"
            ]
        return [f"- **{name}** wrote no spatial answer at this step (empty text)"]
    lines = [f"- **{name}** said: `{_short(text)}`"]
    if ps.spatial.problems:
        lines.append(f"  - could not read all of it: {'; '.join(ps.spatial.problems)[:200]}")
    return lines


def point_markdown(tab: TabState) -> str:
    point = tab.user_point
    if point is None:
        return "Click the object in the viewer's camera image to mark where **you** think it is."
    lane = "" if point.branch == "main" else f" on `{point.branch}`"
    lines = [f"Your point: ({point.x:.0f}, {point.y:.0f}) at step {point.step}{lane}"]
    for name, row in tab.point_report().items():
        inside = {True: ", inside its box", False: ", **outside** its box", None: ""}[row["inside"]]
        lines.append(f"- {name}'s prediction is **{row['distance']:.1f} px** away{inside}")
    if len(lines) == 1:
        lines.append("- no predicted point or box at this step to compare with")
    return "\n".join(lines)
