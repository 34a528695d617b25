"""Plotly figures: the data they draw is the data in the records, not a decoration."""

from __future__ import annotations

import numpy as np

from workbench.records import ActionChunk, Observation, PolicyStep, StepRecord
from workbench.viz import plots


def _records(n: int = 4) -> list[StepRecord]:
    out = []
    for s in range(n):
        obs = Observation(images={"main": np.zeros((8, 8, 3), np.uint8)}, instruction="pick")
        chunk = ActionChunk(
            normalized=np.zeros((5, 7)), actions=np.full((5, 7), 10.0 + s), timings={"dit": 0.02}
        )
        pstep = PolicyStep(policy="A", instruction="pick", chunk=chunk, metrics={"iou": 0.1 * s},
                           timings={"vlm": 0.05})  # fmt: skip
        out.append(
            StepRecord(
                step=s,
                observation=obs,
                policies={"A": pstep},
                executed_action=np.arange(7) + s,
                recorded_action=np.arange(7) * 2.0,
                timings={"env": 0.01},
            )  # fmt: skip
        )
    return out


def _trace(fig, name: str, row_axis: str = "y"):
    return [t for t in fig.data if t.name == name and (t.yaxis or "y") == row_axis]


def test_action_figure_draws_executed_recorded_and_last_chunk():
    recs = _records()
    fig = plots.action_figure(recs)
    executed = _trace(fig, "executed")[0]  # first row = dx
    assert list(executed.x) == [0, 1, 2, 3]
    assert list(executed.y) == [0, 1, 2, 3]
    gripper = _trace(fig, "executed", "y7")[0]
    assert list(gripper.y) == [6, 7, 8, 9]
    recorded = _trace(fig, "recorded", "y2")[0]
    assert list(recorded.y) == [2.0] * 4
    chunk = _trace(fig, "predicted chunk (A)")[0]
    assert list(chunk.x) == [3, 4, 5, 6, 7]  # drawn forward from the last step
    assert list(chunk.y) == [13.0] * 5
    assert len([t for t in fig.data if t.name == "executed"]) == 7


def test_action_figure_empty_says_what_to_do():
    fig = plots.action_figure([])
    assert "reset" in fig.layout.annotations[0].text


def test_grounding_error_skips_non_finite_values():
    recs = _records(3)
    recs[1].policies["A"].metrics["iou"] = float("nan")
    fig = plots.grounding_error_figure(recs)
    (trace,) = fig.data
    assert trace.name == "A: iou"
    assert list(trace.x) == [0, 2]
    assert np.allclose(trace.y, [0.0, 0.2])


def test_timings_figure_stacks_stage_milliseconds():
    fig = plots.timings_figure(_records(2))
    by_name = {t.name: t for t in fig.data}
    assert set(by_name) == {"env", "A: vlm", "A: dit"}
    assert np.allclose(by_name["A: vlm"].y, [50.0, 50.0])
    assert fig.layout.barmode == "stack"


def test_success_cells_and_heatmap():
    rows = [
        {"object": "carrot", "instruction": "pick carrot", "seed": 0, "success": True},
        {"object": "carrot", "instruction": "pick carrot", "seed": 1, "success": False},
        {"object": "cube", "instruction": "pick carrot", "seed": 0, "success": True},
    ]
    cells = plots.success_cells(rows)
    assert [(c.object, c.successes, c.episodes) for c in cells] == [("carrot", 1, 2), ("cube", 1, 1)]
    assert cells[0].rate == 0.5
    heat = plots.success_figure(rows).data[0]
    assert list(heat.y) == ["carrot", "cube"]
    assert heat.z[0][0] == 0.5 and heat.text[0][0] == "1/2"
