"""OpenCV drawing of points, boxes and traces on an image (for video export and thumbnails).

Colours are fixed per role so a viewer learns them once: ground truth thin (objects green, the target
teal, the expert's path grey), each policy thick in its slot colour (its spatial answer, and its
rollout with a dot per step). No policy colour is green, teal or grey, so ground truth never shares
a colour with a policy. An object's name is written once (on its ground-truth box); `legend` lists
what each colour means, for the page and the video.
All geometry is in pixels of the image it is drawn on (records keep ORIGINAL-image pixels).
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import cv2
import numpy as np

from workbench.records import StepRecord
from workbench.spatial import Box, Geometry, Point, Trace

RGB = tuple[int, int, int]

GROUND_TRUTH: RGB = (60, 200, 60)
TARGET: RGB = (0, 210, 200)
EXPERT: RGB = (200, 200, 200)
# One colour per policy slot, in slot order (A, B, C ...): orange, magenta, yellow, red.
POLICY_COLORS: tuple[RGB, ...] = ((255, 130, 0), (230, 50, 220), (255, 230, 0), (255, 40, 40))


def policy_color(index: int) -> RGB:
    return POLICY_COLORS[index % len(POLICY_COLORS)]


def legend(policies: Sequence[str]) -> list[tuple[str, RGB, str]]:
    """(what, colour, line style) for every colour the overlays use, policies in slot order."""
    rows = [
        ("ground truth: objects", GROUND_TRUTH, "thin"),
        ("ground truth: target", TARGET, "thin"),
        ("expert's path", EXPERT, "thin"),
    ]
    rows += [(f"{name}: its answer and rollout", policy_color(i), "thick") for i, name in enumerate(policies)]
    return rows


def legend_html(policies: Sequence[str]) -> str:
    """The legend as one line of HTML swatches (thin = outline only, thick = solid)."""
    items = []
    for what, (r, g, b), style in legend(policies):
        border = "1px solid" if style == "thin" else "4px solid"
        swatch = (f'<span style="display:inline-block;width:14px;height:10px;border:{border} rgb({r},{g},{b});'
                  'margin:0 4px -1px 0"></span>')  # fmt: skip
        items.append(f'<span style="margin-right:14px;white-space:nowrap">{swatch}{html.escape(what)}</span>')
    return f'<div class="legend" style="font-size:0.85em">{"".join(items)}</div>'


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


def draw_geometry(
    image: np.ndarray, geometry: Sequence[Geometry], color: RGB, thickness: int = 1, named: Sequence[str] = ()
) -> np.ndarray:
    """Draw points/boxes/traces in place on an RGB uint8 image and return it. Boxes whose label is
    in `named` (already written on the image) are drawn without it: one label per object."""
    _check_image(image)
    for g in geometry:
        if isinstance(g, Box):
            draw_box(image, g if g.label not in named else Box(g.x1, g.y1, g.x2, g.y2, ""), color, thickness)
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
    named: list[str] = []
    if gt is not None:
        draw_geometry(out, s(gt.objects), GROUND_TRUTH)
        named = [b.label for b in gt.objects if b.label]
        if gt.target is not None:
            draw_geometry(out, s([gt.target]), TARGET, named=named)
            named.append(gt.target.label)
        if gt.expert_trace is not None:
            draw_geometry(out, s([gt.expert_trace]), EXPERT)
    for i, ps in enumerate(record.policies.values()):
        color = policy_color(i)
        if ps.spatial is not None:
            draw_geometry(out, s(ps.spatial.geometry), color, thickness=2, named=named)
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
