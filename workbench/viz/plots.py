"""Plotly figures for the app: actions over time, grounding error, stage timings, probe success.

Every function takes plain records (StepRecord lists, probe rows) and returns a `go.Figure`, so the
same figures serve the app, notebooks and reports. No UI code here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.records import StepRecord
from workbench.viz.overlay import GROUND_TRUTH, policy_color

ACTION_NAMES = ("dx", "dy", "dz", "rx", "ry", "rz", "gripper")
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")


def _empty(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, annotations=[dict(text=message, showarrow=False, x=0.5, y=0.5)])
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def _policy_names(records: Sequence[StepRecord]) -> list[str]:
    names: list[str] = []
    for rec in records:
        names.extend(n for n in rec.policies if n not in names)
    return names


def action_figure(records: Sequence[StepRecord], policy: str | None = None) -> go.Figure:
    """One row per action dimension, over steps: the executed action (one line per driving policy:
    independent A/B has two), the recorded action (recorded sources), each policy's predicted first
    action, and the chunk each policy predicted at its last step drawn forward from it (dashed).
    `policy` limits the predictions to that policy."""
    title = "Actions over time"
    if not records:
        return _empty(title, "no steps yet: reset and step")
    names = [n for n in _policy_names(records) if policy is None or n == policy]
    fig = make_subplots(rows=len(ACTION_NAMES), cols=1, shared_xaxes=True, vertical_spacing=0.02)

    def add(xs, rows: list, name: str, color: str, dash: str = "solid", mode: str = "lines+markers") -> None:
        if not rows:
            return
        arr = np.stack([np.asarray(v, dtype=float).reshape(-1)[:7] for v in rows])  # [n, 7]
        for d in range(min(arr.shape[1], len(ACTION_NAMES))):
            fig.add_trace(
                go.Scatter(
                    x=list(xs), y=arr[:, d], name=name, legendgroup=name, showlegend=d == 0, mode=mode,
                    line=dict(color=color, dash=dash), marker=dict(size=4),
                ),
                row=d + 1, col=1,
            )  # fmt: skip

    drivers = list(dict.fromkeys(next(iter(r.policies), "") for r in records))
    for i, driver in enumerate(drivers):  # executed: the first (driving) policy of each record's lane
        mine = [r for r in records if next(iter(r.policies), "") == driver and r.executed_action is not None]
        label = "executed" if len(drivers) == 1 and len(names) < 2 else f"executed ({driver} drives)"
        add([r.step for r in mine], [r.executed_action for r in mine], label, _PALETTE[(2 * i) % 6])
    recorded = {r.step: r.recorded_action for r in records if r.recorded_action is not None}
    recorded_color = "rgb({}, {}, {})".format(*GROUND_TRUTH)  # what happened: ground truth's green
    add(sorted(recorded), [recorded[k] for k in sorted(recorded)], "recorded", recorded_color)
    for i, name in enumerate(names):
        color = "rgb({}, {}, {})".format(*policy_color(i))  # the policy's colour in the viewer too
        mine = [r for r in records if name in r.policies and r.policies[name].chunk is not None]
        if len(names) > 1:  # comparing: each policy's own first action at every step
            first = [r.policies[name].chunk.actions[0] for r in mine]
            add([r.step for r in mine], first, f"predicted ({name})", color, dash="dot")
        if mine:
            last = mine[-1]
            chunk = np.asarray(last.policies[name].chunk.actions, dtype=float)  # [T, 7]
            xs = last.step + np.arange(chunk.shape[0])
            add(xs, list(chunk), f"predicted chunk ({name})", color, dash="dash", mode="lines")
    for d, name in enumerate(ACTION_NAMES):
        fig.update_yaxes(title_text=name, row=d + 1, col=1)
    fig.update_xaxes(title_text="step", row=len(ACTION_NAMES), col=1)
    fig.update_layout(title=title, height=900, margin=dict(l=50, r=20, t=50, b=40))
    return fig


# Grounding metrics that are fractions (IoU, hit or miss): they share the 0..1 axis; the others (the
# number of predicted shapes, distances in pixels) get their own axis, so a count never reads as IoU.
FRACTION_METRICS = frozenset({"box_iou", "box_center_in_box", "point_in_box", "iou"})


def grounding_error_figure(records: Sequence[StepRecord]) -> go.Figure:
    """Every grounding metric of every policy over steps (IoU, point-in-box, trace distance...)."""
    title = "Grounding against ground truth"
    series: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
    for rec in records:
        for name, pstep in rec.policies.items():
            for key, value in pstep.metrics.items():
                if value is None or not np.isfinite(value):
                    continue
                xs, ys = series.setdefault((name, key), ([], []))
                xs.append(rec.step)
                ys.append(float(value))
    if not series:
        return _empty(title, "no grounding metrics yet (the source needs ground truth)")
    fig = go.Figure()
    second = False
    for i, ((name, key), (xs, ys)) in enumerate(sorted(series.items())):
        fraction = key in FRACTION_METRICS  # 0..1 on the left axis; counts and pixels on the right
        second |= not fraction
        fig.add_trace(go.Scatter(x=xs, y=ys, name=f"{name}: {key}", mode="lines+markers", yaxis="y" if fraction else "y2",
                                 line=dict(color=_PALETTE[i % len(_PALETTE)], dash="solid" if fraction else "dot")))  # fmt: skip
    fig.update_layout(title=title, xaxis_title="step", height=400,
                      yaxis=dict(title="IoU / hit rate (0-1)", range=[-0.02, 1.05]))  # fmt: skip
    if second:
        fig.update_layout(
            yaxis2=dict(title="count / pixels (dotted)", overlaying="y", side="right", rangemode="tozero")
        )
    return fig


def timings_figure(records: Sequence[StepRecord]) -> go.Figure:
    """Stacked bars of per-stage seconds for each step (the step's own stages and each policy's)."""
    title = "Stage timings"
    stages: dict[str, dict[int, float]] = {}
    for rec in records:
        for stage, sec in rec.timings.items():
            stages.setdefault(stage, {})[rec.step] = float(sec)
        for name, pstep in rec.policies.items():
            timings = dict(pstep.timings)
            if pstep.chunk is not None:
                timings = {**pstep.chunk.timings, **timings}
            for stage, sec in timings.items():
                stages.setdefault(f"{name}: {stage}", {})[rec.step] = float(sec)
    if not stages:
        return _empty(title, "no timings yet")
    fig = go.Figure()
    for stage, by_step in sorted(stages.items()):
        xs = sorted(by_step)
        fig.add_trace(go.Bar(x=xs, y=[1000.0 * by_step[s] for s in xs], name=stage))
    fig.update_layout(title=title, barmode="stack", xaxis_title="step", yaxis_title="ms", height=400)
    return fig


# ---------------------------------------------------------------------------------------------
# Probe sweeps
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuccessCell:
    """Aggregate of one (object, instruction) cell of a sweep over seeds."""

    object: str
    instruction: str
    episodes: int
    successes: int

    @property
    def rate(self) -> float:
        return self.successes / self.episodes if self.episodes else float("nan")


def success_cells(rows: Sequence[dict]) -> list[SuccessCell]:
    """Group probe rows ({"object","instruction","success",...}) by object and instruction."""
    counts: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        cell = counts.setdefault((str(row["object"]), str(row["instruction"])), [0, 0])
        cell[0] += 1
        cell[1] += int(bool(row["success"]))
    return [SuccessCell(o, i, n, s) for (o, i), (n, s) in sorted(counts.items())]


def success_figure(rows: Sequence[dict]) -> go.Figure:
    """Heat map of success rate: objects down, instructions across, text 'successes/episodes'."""
    title = "Success rate (objects x instructions, over seeds)"
    cells = success_cells(rows)
    if not cells:
        return _empty(title, "no episodes yet: run a probe")
    objects = sorted({c.object for c in cells})
    instructions = sorted({c.instruction for c in cells})
    z = np.full((len(objects), len(instructions)), np.nan)
    text = [["" for _ in instructions] for _ in objects]
    for c in cells:
        i, j = objects.index(c.object), instructions.index(c.instruction)
        z[i, j] = c.rate
        text[i][j] = f"{c.successes}/{c.episodes}"
    fig = go.Figure(
        go.Heatmap(z=z, x=instructions, y=objects, text=text, texttemplate="%{text}", zmin=0.0, zmax=1.0,
                   colorscale="RdYlGn", colorbar=dict(title="success"))
    )  # fmt: skip
    fig.update_layout(title=title, height=max(300, 60 * len(objects) + 150))
    return fig
