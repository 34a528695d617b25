"""How close a spatial answer is to the truth: box IoU, points in boxes, trace distances.

Empty input: IoU 0.0, point_in_box False, distances inf when one side is missing and 0.0 when
both traces are empty (nothing vs nothing is a perfect match).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from workbench.spatial import Box, Point, SpatialAnswer, Trace

if TYPE_CHECKING:
    from workbench.records import GroundTruth


def box_iou(a: Box | None, b: Box | None) -> float:
    """Intersection over union; 0.0 when either box is missing or the union has no area."""
    if a is None or b is None:
        return 0.0
    iw = min(a.x2, b.x2) - max(a.x1, b.x1)
    ih = min(a.y2, b.y2) - max(a.y1, b.y1)
    inter = max(0.0, iw) * max(0.0, ih)
    union = a.area + b.area - inter
    return float(inter / union) if union > 0 else 0.0


def point_in_box(p: Point | tuple[float, float] | None, box: Box | None) -> bool:
    """True when p lies in the box, edges included; False when either is missing."""
    if p is None or box is None:
        return False
    x, y = (p.x, p.y) if isinstance(p, Point) else p
    return bool(box.x1 <= x <= box.x2 and box.y1 <= y <= box.y2)


def point_distance(a: Point | tuple[float, float] | None, b: Point | tuple[float, float] | None) -> float:
    """Euclidean distance in pixels; inf when either point is missing."""
    if a is None or b is None:
        return math.inf
    ax, ay = (a.x, a.y) if isinstance(a, Point) else a
    bx, by = (b.x, b.y) if isinstance(b, Point) else b
    return float(math.hypot(ax - bx, ay - by))


def _as_array(t: Trace | Sequence[tuple[float, float]] | np.ndarray | None) -> np.ndarray:
    pts = t.points if isinstance(t, Trace) else ([] if t is None else t)
    arr = np.asarray(pts, dtype=np.float64).reshape(-1, 2)  # [N, 2]
    return arr


def _empty_distance(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) == 0 and len(b) == 0:
        return 0.0
    if len(a) == 0 or len(b) == 0:
        return math.inf
    return None


def resample_trace(t: Trace | Sequence[tuple[float, float]] | np.ndarray, n: int) -> np.ndarray:
    """n points spaced evenly by arc length along the polyline ([n, 2]); a static trace repeats its point."""
    pts = _as_array(t)
    if len(pts) == 0 or n < 1:
        raise ValueError(f"resample needs a non-empty trace and n >= 1 (got {len(pts)} points, n={n})")
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)  # [N-1]
    cum = np.concatenate([[0.0], np.cumsum(seg)])  # [N]
    if cum[-1] == 0:
        return np.repeat(pts[:1], n, axis=0)
    s = np.linspace(0.0, cum[-1], n)
    return np.stack([np.interp(s, cum, pts[:, 0]), np.interp(s, cum, pts[:, 1])], axis=1)


def trace_mean_distance(a: Trace | None, b: Trace | None, n: int = 32) -> float:
    """Mean distance between the two traces after resampling both to n points by arc length."""
    pa, pb = _as_array(a), _as_array(b)
    empty = _empty_distance(pa, pb)
    if empty is not None:
        return empty
    ra, rb = resample_trace(pa, n), resample_trace(pb, n)
    return float(np.linalg.norm(ra - rb, axis=1).mean())


def trace_final_distance(a: Trace | None, b: Trace | None) -> float:
    """Distance between the two traces' last points."""
    pa, pb = _as_array(a), _as_array(b)
    empty = _empty_distance(pa, pb)
    if empty is not None:
        return empty
    return float(np.linalg.norm(pa[-1] - pb[-1]))


def discrete_frechet(a: Trace | None, b: Trace | None) -> float:
    """Discrete Fréchet distance (Eiter & Mannila), O(len(a) * len(b)) time."""
    pa, pb = _as_array(a), _as_array(b)
    empty = _empty_distance(pa, pb)
    if empty is not None:
        return empty
    d = np.linalg.norm(pa[:, None, :] - pb[None, :, :], axis=2)  # [N, M]
    ca = np.empty_like(d)
    ca[0, 0] = d[0, 0]
    ca[0, 1:] = np.maximum.accumulate(d[0, 1:].clip(min=d[0, 0]))
    ca[1:, 0] = np.maximum.accumulate(d[1:, 0].clip(min=d[0, 0]))
    for i in range(1, len(pa)):
        for j in range(1, len(pb)):
            ca[i, j] = max(min(ca[i - 1, j], ca[i - 1, j - 1], ca[i, j - 1]), d[i, j])
    return float(ca[-1, -1])


# An unanswered question scored as an answer half the image away on both axes (its far side).
UNANSWERED_OFFSET = (0.5, 0.5)


def centre_offset(
    answer: SpatialAnswer, truth: tuple[float, float], width: int, height: int
) -> tuple[float, float] | None:
    """Where the answer's first box centre (or first point) lies from `truth`, per axis, as a fraction
    of the image's width and height; None when the answer holds neither.

    This is the unit in which the action expert needs the spatial answer to be right (a few percent
    of the image: research/training-notes.md, "What if the spatial answer were perfect?").
    """
    geo = next((g for g in answer.geometry if isinstance(g, Box | Point)), None)
    if geo is None:
        return None
    x, y = geo.center if isinstance(geo, Box) else (geo.x, geo.y)
    return ((x - truth[0]) / width, (y - truth[1]) / height)


def rms(values) -> float:
    """Root mean square of offsets or errors (any shape); NaN when there are none."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.sqrt(np.mean(np.square(values)))) if values.size else float("nan")


def object_centre(truth: GroundTruth) -> tuple[float, float] | None:
    """The key point of the object to move, or its box centre when it has none (original-image pixels)."""
    label = truth.object_label
    for p in truth.key_points:
        if _same(p.label, label):
            return (p.x, p.y)
    return next((b.center for b in truth.objects if _same(b.label, label)), None)


def _same(a: str, b: str) -> bool:
    return a.strip().lower() == b.strip().lower()


def grounding_metrics(
    answer: SpatialAnswer, truth: GroundTruth, label: str | None = None
) -> dict[str, float]:
    """How well `answer` grounds the object `label` (default: truth.object_label) against `truth`.

    Keys, present when the truth has what they need:
      box_iou           best IoU of any predicted box with the labelled truth box(es) (0.0 if none)
      box_center_in_box 1.0 if the best-IoU predicted box's centre lies in that truth box
      point_in_box      1.0 if any predicted point lies in a labelled truth box
      point_distance    smallest distance from a predicted point to the labelled key point
                        (or the truth box centre when no key point), inf when nothing predicted
      trace_mean_distance / trace_final_distance / trace_frechet: the first predicted trace
                        against truth.expert_trace (inf when no trace was predicted)
      num_predicted     how many geometries the answer holds
    Unlabelled truth (no label given and no object_label) uses every truth object.
    """
    label = label if label is not None else (truth.object_label or None)
    boxes = [b for b in truth.objects if label is None or _same(b.label, label)]
    keys = [p for p in truth.key_points if label is None or _same(p.label, label)]
    pred_boxes = [g for g in answer.geometry if isinstance(g, Box)]
    pred_points = [g for g in answer.geometry if isinstance(g, Point)]
    pred_traces = [g for g in answer.geometry if isinstance(g, Trace) and g.points]
    out: dict[str, float] = {"num_predicted": float(len(answer.geometry))}
    if boxes:
        pairs = [(box_iou(p, t), p, t) for p in pred_boxes for t in boxes]
        best = max(pairs, key=lambda x: x[0], default=(0.0, None, None))
        out["box_iou"] = best[0]
        out["box_center_in_box"] = float(best[1] is not None and point_in_box(best[1].center, best[2]))
        out["point_in_box"] = float(any(point_in_box(p, t) for p in pred_points for t in boxes))
    targets = [(p.x, p.y) for p in keys] or [b.center for b in boxes]
    if targets:
        dists = [point_distance(p, t) for p in pred_points for t in targets]
        out["point_distance"] = min(dists, default=math.inf)
    if truth.expert_trace is not None and truth.expert_trace.points:
        pred = pred_traces[0] if pred_traces else None
        out["trace_mean_distance"] = trace_mean_distance(pred, truth.expert_trace)
        out["trace_final_distance"] = trace_final_distance(pred, truth.expert_trace)
        out["trace_frechet"] = discrete_frechet(pred, truth.expert_trace)
    return out
