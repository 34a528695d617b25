"""The spatial grammar: points, boxes and traces, the model text that carries them, frames, metrics.

Every other part of the workbench speaks in these types. Geometry is always in pixels; a `Frame`
says which image those pixels belong to (the model's input frame or the original image).

Text format (Qwen2.5-VL style, absolute pixels of the model's input frame):
    [{"label": "carrot", "bbox_2d": [x1, y1, x2, y2]}]
    {"label": "carrot", "point_2d": [x, y]}
    {"label": "gripper", "trace_2d": [[x, y], ...]}
The point and trace keys are this project's choice: upstream never published its stage-1 formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str = ""


@dataclass(frozen=True)
class Box:
    """Axis-aligned box, corners (x1, y1) top-left and (x2, y2) bottom-right, in pixels."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str = ""

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)

    @property
    def area(self) -> float:
        return max(0.0, self.x2 - self.x1) * max(0.0, self.y2 - self.y1)


@dataclass(frozen=True)
class Trace:
    """An ordered path of pixel positions (for example the end-effector's, projected)."""

    points: tuple[tuple[float, float], ...]
    label: str = ""


Geometry = Point | Box | Trace


@dataclass(frozen=True)
class Frame:
    """The pixel frame geometry is expressed in.

    `width`/`height` is the model's input frame; `orig_width`/`orig_height` the original image.
    For a plain resize (e.g. 224x224) the two differ by independent x and y scales.
    """

    width: int
    height: int
    orig_width: int
    orig_height: int

    @property
    def scale_x(self) -> float:
        return self.orig_width / self.width

    @property
    def scale_y(self) -> float:
        return self.orig_height / self.height


@dataclass
class SpatialAnswer:
    """What the model said, what we could read of it, and where it lies on the original image."""

    text: str
    geometry: list[Geometry] = field(default_factory=list)  # pixels of the ORIGINAL image
    frame: Frame | None = None  # the frame the model predicted in
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.geometry) and not self.problems
