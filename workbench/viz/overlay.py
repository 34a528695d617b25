"""OpenCV drawing of points, boxes and traces on an image (for video export and thumbnails).

Colours are fixed per role so a viewer learns them once: ground truth green, the policy's spatial
answer in its slot colour, the action rollout in the slot colour with a dot per step.
All geometry is in pixels of the image it is drawn on (records keep ORIGINAL-image pixels).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from workbench.records import StepRecord
from workbench.spatial import Box, Geometry, Point, Trace

RGB = tuple[int, int, int]

GROUND_TRUTH: RGB = (60, 200, 60)
TARGET: RGB = (40, 160, 255)
EXPERT: RGB = (200, 200, 200)
# One colour per policy slot, in slot order (A, B, C ...).
POLICY_COLORS: tuple[RGB, ...] = ((255, 80, 60), (80, 120, 255), (255, 200, 40), (200, 80, 255))


def policy_color(index: int) -> RGB:
    return POLICY_COLORS[index % len(POLICY_COLORS)]


def _check_image(image: np.ndarray) -> None:
    if not (
        isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    ):
        raise ValueError(
            f"overlay expects an [H, W, 3] uint8 RGB image, got {getattr(image, 'shape', type(image))} "
            f"{getattr(image, 'dtype', '')}; convert with np.asarray(img, dtype=np.uint8)"
        )


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x)), int(round(y))


def _finite(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(x, y) for x, y in points if np.isfinite(x) and np.isfinite(y)]


def draw_box(image: np.ndarray, box: Box, color: RGB, thickness: int = 1) -> None:
    cv2.rectangle(image, _pt(box.x1, box.y1), _pt(box.x2, box.y2), color, thickness, cv2.LINE_AA)
    if box.label:
        cv2.putText(
            image, box.label, _pt(box.x1, max(box.y1 - 3, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.3, color, 1
        )


def draw_point(image: np.ndarray, point: Point, color: RGB, radius: int = 3) -> None:
    if np.isfinite(point.x) and np.isfinite(point.y):
        cv2.circle(image, _pt(point.x, point.y), radius, color, -1, cv2.LINE_AA)


def draw_trace(image: np.ndarray, trace: Trace, color: RGB, dots: bool = False) -> None:
    pts = _finite(trace.points)
    if len(pts) >= 2:
        arr = np.array([_pt(x, y) for x, y in pts], dtype=np.int32).reshape(-1, 1, 2)
        cv2.polylines(image, [arr], False, color, 1, cv2.LINE_AA)
    if dots:
        for x, y in pts:
            cv2.circle(image, _pt(x, y), 2, color, -1, cv2.LINE_AA)


def draw_geometry(image: np.ndarray, geometry: Sequence[Geometry], color: RGB) -> np.ndarray:
    """Draw points/boxes/traces in place on an RGB uint8 image and return it."""
    _check_image(image)
    for g in geometry:
        if isinstance(g, Box):
            draw_box(image, g, color)
        elif isinstance(g, Point):
            draw_point(image, g, color)
        elif isinstance(g, Trace):
            draw_trace(image, g, color)
        else:
            raise TypeError(f"cannot draw {type(g).__name__}: expected Point, Box or Trace")
    return image


def draw_step(record: StepRecord, *, scale: int = 2, caption: bool = True) -> np.ndarray:
    """The main camera image of a step with ground truth, every policy's answer and rollout drawn.

    Upscaled by `scale` first (nearest) so thin lines stay legible on 224x224 frames.
    Returns a new [H*scale, W*scale, 3] uint8 RGB image.
    """
    obs = record.observation
    image = obs.images[obs.main_camera]
    _check_image(image)
    out = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)

    def s(geoms: Sequence[Geometry]) -> list[Geometry]:
        return [scale_geometry(g, scale) for g in geoms]

    gt = obs.ground_truth
    if gt is not None:
        draw_geometry(out, s(gt.objects), GROUND_TRUTH)
        if gt.target is not None:
            draw_geometry(out, s([gt.target]), TARGET)
        if gt.expert_trace is not None:
            draw_geometry(out, s([gt.expert_trace]), EXPERT)
    for i, ps in enumerate(record.policies.values()):
        color = policy_color(i)
        if ps.spatial is not None:
            draw_geometry(out, s(ps.spatial.geometry), color)
        if ps.chunk is not None and ps.chunk.ee_path_2d is not None:
            draw_trace(out, scale_geometry(ps.chunk.ee_path_2d, scale), color, dots=True)
    if caption:
        text = f"step {record.step}  {obs.instruction}"[:80]
        (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
        cv2.rectangle(out, (0, 0), (w + 8, h + 8), (0, 0, 0), -1)  # readable on a white background too
        cv2.putText(out, text, (4, h + 3), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def scale_geometry(g: Geometry, k: float) -> Geometry:
    if isinstance(g, Box):
        return Box(g.x1 * k, g.y1 * k, g.x2 * k, g.y2 * k, g.label)
    if isinstance(g, Point):
        return Point(g.x * k, g.y * k, g.label)
    if isinstance(g, Trace):
        return Trace(tuple((x * k, y * k) for x, y in g.points), g.label)
    raise TypeError(f"cannot scale {type(g).__name__}: expected Point, Box or Trace")
