"""The spatial grammar: points, boxes and traces, the model text that carries them, and frames.

How close an answer is to the truth: workbench/spatial_metrics.py.

Every other part of the workbench speaks in these types. Geometry is always in pixels; a `Frame`
says which image those pixels belong to (the model's input frame or the original image).

Text format (Qwen2.5-VL style, absolute pixels of the model's input frame):
    [{"label": "carrot", "bbox_2d": [x1, y1, x2, y2]}]
    {"label": "carrot", "point_2d": [x, y]}
    {"label": "gripper", "trace_2d": [[x, y], ...]}
The point and trace keys are this project's choice: upstream never published its stage-1 formats.

Coordinates convention: `format` writes integers in the model frame (what a model emits), so
`parse(format(g, frame), frame) == g` exactly for geometry whose model-frame coordinates lie on the
integer grid (that is, `g == to_original(g_model, frame)` with integer `g_model`). Pass `decimals=d`
to write d decimals instead; round trips are then exact on the 10**-d grid.
Pixel coordinates are continuous: the left edge of the image is x=0, the right edge x=width, and a
frame change scales x by orig_width/width and y by orig_height/height (no half-pixel offsets),
which is how Qwen2.5-VL answers are mapped back to the original image.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
GEOMETRY_KEYS = ("bbox_2d", "point_2d", "trace_2d")


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

    def __post_init__(self) -> None:
        sizes = (self.width, self.height, self.orig_width, self.orig_height)
        if not all(isinstance(s, int | np.integer) and s > 0 for s in sizes):
            raise ValueError(f"Frame sizes must be positive integers, got {sizes}")

    @property
    def scale_x(self) -> float:
        return self.orig_width / self.width

    @property
    def scale_y(self) -> float:
        return self.orig_height / self.height

    @classmethod
    def fixed(cls, orig_w: int, orig_h: int, size: tuple[int, int] = (224, 224)) -> Frame:
        """A plain resize of the original image to `size` = (width, height), as the VLA path does."""
        return cls(width=size[0], height=size[1], orig_width=orig_w, orig_height=orig_h)

    @classmethod
    def smart_resize(
        cls,
        orig_w: int,
        orig_h: int,
        factor: int = 28,
        min_pixels: int = 56 * 56,
        max_pixels: int = 14 * 14 * 4 * 1280,
    ) -> Frame:
        """The frame Qwen2.5-VL's image processor resizes to (transformers' `smart_resize` rule).

        Both sides become multiples of `factor`, the area lands in [min_pixels, max_pixels], and the
        aspect ratio is kept as closely as possible. Defaults are transformers' defaults.
        """
        if orig_w <= 0 or orig_h <= 0:
            raise ValueError(f"image size must be positive, got {orig_w}x{orig_h}")
        if max(orig_w, orig_h) / min(orig_w, orig_h) > 200:
            raise ValueError(f"aspect ratio must be at most 200 (Qwen2.5-VL's limit), got {orig_w}x{orig_h}")
        h_bar = round(orig_h / factor) * factor
        w_bar = round(orig_w / factor) * factor
        if h_bar * w_bar > max_pixels:  # too big: shrink, rounding down to the factor grid
            beta = math.sqrt((orig_h * orig_w) / max_pixels)
            h_bar = max(factor, math.floor(orig_h / beta / factor) * factor)
            w_bar = max(factor, math.floor(orig_w / beta / factor) * factor)
        elif h_bar * w_bar < min_pixels:  # too small: grow, rounding up
            beta = math.sqrt(min_pixels / (orig_h * orig_w))
            h_bar = math.ceil(orig_h * beta / factor) * factor
            w_bar = math.ceil(orig_w * beta / factor) * factor
        return cls(width=w_bar, height=h_bar, orig_width=orig_w, orig_height=orig_h)


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


# ---------------------------------------------------------------------------------------------
# Frames: scaling geometry between the model frame and the original image
# ---------------------------------------------------------------------------------------------


def _scale(g: Any, sx: float, sy: float, forward: bool) -> Any:
    """Multiply (forward) or divide x by sx and y by sy on one geometry or a sequence of them."""

    def fx(x: float) -> float:
        return x * sx if forward else x / sx

    def fy(y: float) -> float:
        return y * sy if forward else y / sy

    if isinstance(g, Point):
        return Point(fx(g.x), fy(g.y), g.label)
    if isinstance(g, Box):
        return Box(fx(g.x1), fy(g.y1), fx(g.x2), fy(g.y2), g.label)
    if isinstance(g, Trace):
        return Trace(tuple((fx(x), fy(y)) for x, y in g.points), g.label)
    if isinstance(g, Sequence) and not isinstance(g, str):
        return [_scale(item, sx, sy, forward) for item in g]
    raise TypeError(f"expected Point, Box, Trace or a list of them, got {type(g).__name__}")


def to_original(geometry: Any, frame: Frame | None) -> Any:
    """Model-frame pixels -> original-image pixels (identity when frame is None)."""
    return geometry if frame is None else _scale(geometry, frame.scale_x, frame.scale_y, True)


def to_model(geometry: Any, frame: Frame | None) -> Any:
    """Original-image pixels -> model-frame pixels (identity when frame is None)."""
    return geometry if frame is None else _scale(geometry, frame.scale_x, frame.scale_y, False)


def _to_original_1000(geometry: Any, frame: Frame) -> Any:
    # Qwen2-VL convention: 0..1000 of the image, whatever its size.
    return _scale(geometry, frame.orig_width / 1000, frame.orig_height / 1000, True)


def _to_1000(geometry: Any, frame: Frame) -> Any:
    return _scale(geometry, frame.orig_width / 1000, frame.orig_height / 1000, False)


# ---------------------------------------------------------------------------------------------
# Parsing model text
# ---------------------------------------------------------------------------------------------

_DECODER = json.JSONDecoder()
_MAX_CANDIDATES = 64  # JSON start positions tried; bounds the cost on long prose full of brackets
# Characters of an answer that are read. A model's answer is bounded by its token budget (512 new tokens
# are a few kB); reading at most this much keeps every parse well under 0.1 s, whatever the text
# (64 candidate starts x one JSON decode of at most this many characters).
MAX_ANSWER_CHARS = 16_384
_WS_COMMA = " \t\r\n,"


def _decode(text: str, pos: int) -> tuple[Any, int] | None:
    try:
        return _DECODER.raw_decode(text, pos)
    except (ValueError, RecursionError):  # malformed, truncated, absurdly nested or huge numbers
        return None


def _is_items(value: Any) -> bool:
    """An object, or a list that is empty or holds at least one object (a plain [1, 2] is a coordinate)."""
    if isinstance(value, list):
        return not value or any(isinstance(v, dict) for v in value)
    return isinstance(value, dict)


def _salvage_list(text: str, pos: int) -> tuple[list[dict], int]:
    """Read complete objects of a list that opens at `pos` and was cut; returns them and where it stopped."""
    items: list[dict] = []
    i = pos + 1
    while True:
        while i < len(text) and text[i] in _WS_COMMA:
            i += 1
        if i >= len(text) or text[i] != "{":
            return items, i
        got = _decode(text, i)
        if got is None or not isinstance(got[0], dict):
            return items, i
        items.append(got[0])
        i = got[1]


def _find_items(text: str) -> tuple[list[Any], list[str]]:
    """Locate the JSON answer in model text: the items it holds, and problems met on the way."""
    starts = [i for i, c in enumerate(text) if c in "[{"][:_MAX_CANDIDATES]
    for pos in starts:
        got = _decode(text, pos)
        if got is not None and _is_items(got[0]):
            items: list[Any] = got[0] if isinstance(got[0], list) else [got[0]]
            if isinstance(got[0], list) and not got[0]:
                return [], ["the answer is an empty list"]
            return _read_more(text, got[1], items)
        if got is None and text[pos] == "[":
            salvaged, stop = _salvage_list(text, pos)
            if salvaged:
                kept = len(salvaged)
                return salvaged, [f"answer truncated at char {stop}: kept {kept} complete item(s)"]
    if not starts:
        return [], ["no JSON found in the answer"]
    if any(key in text for key in GEOMETRY_KEYS):
        return [], ["answer truncated or malformed: no complete item could be read"]
    return [], ["no JSON answer found (no list or object with bbox_2d/point_2d/trace_2d)"]


def _read_more(text: str, end: int, items: list[Any]) -> tuple[list[Any], list[str]]:
    """Models sometimes emit several top-level objects in a row; read those that follow `end`."""
    while True:
        i = end
        while i < len(text) and text[i] in _WS_COMMA:
            i += 1
        if i >= len(text) or text[i] not in "[{":
            return items, []
        got = _decode(text, i)
        if got is None:  # a cut answer, or brackets in the prose after it
            cut = any(key in text[i:] for key in GEOMETRY_KEYS)
            return items, [f"answer truncated at char {i}: kept {len(items)} complete item(s)"] if cut else []
        if not _is_items(got[0]):
            return items, []
        items.extend(got[0] if isinstance(got[0], list) else [got[0]])
        end = got[1]


def _numbers(value: Any, n: int, what: str) -> tuple[list[float] | None, str | None]:
    """`value` as n finite floats, or the reason it is not."""
    if not isinstance(value, list):
        return None, f"{what} is not a list"
    if len(value) != n:
        return None, f"{what} has {len(value)} numbers, expected {n}"
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None, f"{what} holds a non-number {json.dumps(v, ensure_ascii=False)[:20]}"
        try:
            f = float(v)
        except OverflowError:
            f = math.inf
        if not math.isfinite(f):
            return None, f"{what} holds a non-finite number"
        out.append(f)
    return out, None


def _read_item(item: Any, k: int) -> tuple[list[Geometry], list[str]]:
    """One JSON item -> its geometry (in the numbers' own frame) and problems."""
    if not isinstance(item, dict):
        return [], [f"item {k} is not an object"]
    label = item.get("label", "")
    problems = []
    if not isinstance(label, str):
        problems.append(f"item {k}: label is not a string")
        label = json.dumps(label, ensure_ascii=False)
    found: list[Geometry] = []
    if "bbox_2d" in item:
        xy, why = _numbers(item["bbox_2d"], 4, f"item {k} bbox_2d")
        if why:
            problems.append(why)
        else:
            x1, y1, x2, y2 = xy
            if x1 > x2 or y1 > y2:
                problems.append(f"item {k} bbox_2d had swapped corners; normalised")
                x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
            found.append(Box(x1, y1, x2, y2, label))
    if "point_2d" in item:
        xy, why = _numbers(item["point_2d"], 2, f"item {k} point_2d")
        if why:
            problems.append(why)
        else:
            found.append(Point(xy[0], xy[1], label))
    if "trace_2d" in item:
        trace, why = _read_trace(item["trace_2d"], k)
        if why:
            problems.append(why)
        else:
            found.append(Trace(trace, label))
    if not any(key in item for key in GEOMETRY_KEYS):
        keys = ", ".join(list(item)[:5]) or "none"
        problems.append(f"item {k} has no bbox_2d/point_2d/trace_2d (keys: {keys})")
    return found, problems


def _read_trace(value: Any, k: int) -> tuple[tuple[tuple[float, float], ...], str | None]:
    if not isinstance(value, list) or not value:
        return (), f"item {k} trace_2d is not a non-empty list of [x, y]"
    points = []
    for j, p in enumerate(value):
        xy, why = _numbers(p, 2, f"item {k} trace_2d point {j}")
        if why:
            return (), why  # a trace with a hole is not the model's trace: drop it, say so
        points.append((xy[0], xy[1]))
    return tuple(points), None


def parse(text: str, frame: Frame | None = None, *, normalized_1000: bool = False) -> SpatialAnswer:
    """Read a model's spatial answer. Never raises on a str; what it cannot read goes to `problems`.
    Only the first MAX_ANSWER_CHARS characters are read (a longer text says so in `problems`).

    The numbers are pixels of `frame`'s model input (or 0..1000 of the image with
    `normalized_1000=True`); the returned geometry is in pixels of the ORIGINAL image.
    """
    if not isinstance(text, str):
        return SpatialAnswer(str(text), [], frame, [f"answer is a {type(text).__name__}, not text"])
    if not text.strip():
        return SpatialAnswer(text, [], frame, ["empty answer"])
    cap: list[str] = []
    if len(text) > MAX_ANSWER_CHARS:
        cap = [f"answer is {len(text)} characters long: read only its first {MAX_ANSWER_CHARS} (truncated)"]
    items, problems = _find_items(text[:MAX_ANSWER_CHARS])
    problems = cap + problems
    geometry: list[Geometry] = []
    for k, item in enumerate(items):
        found, why = _read_item(item, k)
        geometry.extend(found)
        problems.extend(why)
    if normalized_1000 and frame is None:
        problems.append("normalized_1000 needs a frame: coordinates left on the 0..1000 scale")
    elif normalized_1000:
        geometry = _to_original_1000(geometry, frame)
    else:
        geometry = to_original(geometry, frame)
    return SpatialAnswer(text=text, geometry=geometry, frame=frame, problems=problems)


# ---------------------------------------------------------------------------------------------
# Formatting geometry as model text
# ---------------------------------------------------------------------------------------------


def _num(v: float, decimals: int) -> int | float:
    if not math.isfinite(v):
        raise ValueError(f"cannot format a non-finite coordinate {v}; geometry must be finite")
    return int(round(v)) if decimals == 0 else round(float(v), decimals)


def format(
    geometry: Sequence[Geometry],
    frame: Frame | None = None,
    *,
    decimals: int = 0,
    normalized_1000: bool = False,
    fence: bool = False,
) -> str:
    """Geometry on the original image -> the model's answer text in `frame` (a JSON list).

    Writes integers by default (as models do); see the module docstring for exact round trips.
    `fence=True` wraps the list in a ```json fence as Qwen2.5-VL does.
    """
    if isinstance(geometry, Point | Box | Trace):
        geometry = [geometry]
    if normalized_1000:
        if frame is None:
            raise ValueError("normalized_1000 needs the frame of the original image")
        model = _to_1000(list(geometry), frame)
    else:
        model = to_model(list(geometry), frame)
    items = []
    for g in model:
        item: dict[str, Any] = {"label": g.label} if g.label else {}
        if isinstance(g, Box):
            item["bbox_2d"] = [_num(v, decimals) for v in (g.x1, g.y1, g.x2, g.y2)]
        elif isinstance(g, Point):
            item["point_2d"] = [_num(g.x, decimals), _num(g.y, decimals)]
        else:
            if not g.points:
                raise ValueError("cannot format an empty Trace: a trace needs at least one point")
            item["trace_2d"] = [[_num(x, decimals), _num(y, decimals)] for x, y in g.points]
        items.append(item)
    text = json.dumps(items, ensure_ascii=False)
    return f"```json\n{text}\n```" if fence else text
