"""The probe's heat map: objects down, instructions across, each cell coloured by its episodes' outcome.

Every (object, prompt) pair of the rows is a cell, so a sweep of N objects x M instructions is a full
N x M grid (rows use `prompt`, the instruction as the spec gave it, with the object's name generalised
for the task's own instructions; workbench/probe.py). A cell's colour is its most frequent outcome over
seeds (success or a triage reason, ties broken in REASONS order); its text is "successes/episodes" and
the failure reasons with their counts. Pairs no episode ran stay blank.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from workbench.triage import REASONS

REASON_COLOURS = {
    "success": "#2ca02c",  # green
    "grounding": "#9467bd",  # purple
    "reach": "#d62728",  # red
    "grasp": "#ff7f0e",  # orange
    "place": "#e7ba52",  # gold
    "time": "#1f77b4",  # blue
    "unknown": "#7f7f7f",  # grey
}
TITLE = "Outcome per object and instruction (over seeds)"


def outcome(row: dict) -> str:
    """A probe row's outcome: "success", its triage reason, or "unknown" (rows from before triage)."""
    if row.get("success"):
        return "success"
    reason = row.get("triage") or "unknown"
    return reason if reason in REASONS else "unknown"


def _column(row: dict) -> str:
    return str(row.get("prompt") or row["instruction"])


def _discrete_scale() -> list[list]:
    """Plotly colorscale with one flat band per reason (z = the reason's index in REASONS)."""
    n, scale = len(REASONS), []
    for i, reason in enumerate(REASONS):
        scale += [[i / n, REASON_COLOURS[reason]], [(i + 1) / n, REASON_COLOURS[reason]]]
    return scale


def probe_figure(rows: Sequence[dict]) -> go.Figure:
    """Heat map of the probe's rows (dicts of workbench.probe.ProbeRow) as described in the module doc."""
    rows = [r for r in rows if r.get("status", "ok") == "ok"]  # an episode that could not run: no outcome
    if not rows:
        fig = go.Figure()
        fig.add_annotation(text="no episodes yet: run a probe", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")  # fmt: skip
        fig.update_layout(title=TITLE, height=300, xaxis_visible=False, yaxis_visible=False)
        return fig
    objects = sorted({str(r["object"]) for r in rows})
    columns = list(dict.fromkeys(_column(r) for r in rows))  # in the order the sweep ran them
    cells: dict[tuple[int, int], Counter] = {}
    for r in rows:
        key = (objects.index(str(r["object"])), columns.index(_column(r)))
        cells.setdefault(key, Counter())[outcome(r)] += 1
    z = np.full((len(objects), len(columns)), np.nan)  # [objects, columns]: index into REASONS
    text = [["" for _ in columns] for _ in objects]
    for (i, j), count in cells.items():
        top = max(REASONS, key=lambda reason: (count[reason], -REASONS.index(reason)))
        z[i, j] = REASONS.index(top)
        fails = ", ".join(f"{reason} {count[reason]}" for reason in REASONS[1:] if count[reason])
        text[i][j] = f"{count['success']}/{sum(count.values())}" + (f"<br>{fails}" if fails else "")
    n = len(REASONS)
    heat = go.Heatmap(
        z=z, x=columns, y=objects, text=text, texttemplate="%{text}", zmin=-0.5, zmax=n - 0.5,
        colorscale=_discrete_scale(), xgap=2, ygap=2,
        colorbar=dict(title="outcome", tickvals=list(range(n)), ticktext=list(REASONS)),
        hovertemplate="%{y}<br>%{x}<br>%{text}<extra></extra>",
    )  # fmt: skip
    fig = go.Figure(heat)
    fig.update_layout(title=TITLE, height=max(380, 60 * len(objects) + 170), xaxis=dict(type="category"),
                      yaxis=dict(type="category"))  # fmt: skip
    return fig
