"""Click-to-prompt: a click on the viewer's camera image marks where the user believes the object is.

gradio_rerun 0.39 forwards the viewer's raw event JSON; a click on an image in a 2D view reads

    {"type": "selection_change", "application_id": ..., "recording_id": ..., "segment_id": null,
     "items": [{"type": "entity", "entity_path": "/world/camera/image", "instance_id": null,
                "view_name": "st4vla-tiny", "position": [x, y, 0.0]}]}

with `position` in the view's space (image pixels). Independent A/B logs each lane under
branches/<name>/, so the entity path also says whose image was clicked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.spatial import Box, Point

USER_POINT_COLOR = (255, 230, 0)


@dataclass(frozen=True)
class Click:
    entity_path: str
    x: float
    y: float
    branch: str  # "main", or the lane / branch whose image it is


@dataclass
class UserPoint:
    """A point the user clicked as 'this is right', in original-image pixels, and at which step."""

    x: float
    y: float
    step: int
    branch: str = "main"  # the lane whose image was clicked (independent A/B has one per checkpoint)


def click_from_items(items: list) -> Click | None:
    """The first entity item with a position on a camera entity (EntitySelectionItem objects or the
    raw dicts); None when the selection is not a click on an image (a view, a container, a plot)."""
    for item in items:
        get = item.get if isinstance(item, dict) else lambda k, _i=item: getattr(_i, k, None)
        kind = item.get("type") if isinstance(item, dict) else getattr(item, "type", "")
        path, pos = str(get("entity_path") or ""), get("position")
        if kind != "entity" or pos is None or len(pos) < 2 or "world/camera" not in path:
            continue
        return Click(path, float(pos[0]), float(pos[1]), branch_of(path))
    return None


def branch_of(entity_path: str) -> str:
    """'/branches/<b>/world/camera/image' -> '<b>' (unescaped); anything else -> 'main'."""
    parts = _split_path(entity_path)
    return parts[1] if len(parts) > 1 and parts[0] == "branches" else "main"


def _split_path(entity_path: str) -> list[str]:
    """Entity path parts, unescaped: Rerun writes '/' inside a part (branch 'b1/tiny') as '\\/'."""
    parts, cur, escaped = [], [], False
    for ch in entity_path.strip("/"):
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "/":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    return [*parts, "".join(cur)]


def predicted_centre(geometry: list) -> tuple[float, float] | None:
    """The first predicted point, else the first box's centre, else None."""
    for g in geometry:
        if isinstance(g, Point):
            return (g.x, g.y)
    for g in geometry:
        if isinstance(g, Box):
            return g.center
    return None


def compare_point(geometry: list, x: float, y: float) -> dict | None:
    """{"distance": px to the predicted point / box centre, "inside": in the first predicted box
    (None without a box)}; None when the policy predicted neither a point nor a box."""
    centre = predicted_centre(geometry)
    if centre is None:
        return None
    box = next((g for g in geometry if isinstance(g, Box)), None)
    inside = None if box is None else bool(box.x1 <= x <= box.x2 and box.y1 <= y <= box.y2)
    return {"distance": round(float(np.hypot(centre[0] - x, centre[1] - y)), 2), "inside": inside}


def user_point_paths(branch: str, policies: list[str]) -> list[str]:
    """Where the point is drawn: beside each policy's prediction on the clicked lane's camera (every
    blueprint's camera view shows world/camera/<policy>/**, so it appears in each view)."""
    from workbench.viz.rerun_log import branch_root, policy_part

    return [f"{branch_root(branch)}world/camera/{policy_part(p)}/user_point" for p in policies]


def log_user_point(rec, x: float, y: float, step: int, branch: str, policies: list[str]) -> None:
    """Draw the user's point on the clicked image at its step (a yellow dot labelled 'you')."""
    import rerun as rr

    from workbench.viz.rerun_log import TIMELINE

    rec.set_time(TIMELINE, sequence=int(step))
    for path in user_point_paths(branch, policies):
        rec.log(path, rr.Points2D([[x, y]], labels=["you"], colors=[USER_POINT_COLOR], radii=5.0))


def clear_user_point(rec, step: int, branch: str, policies: list[str]) -> None:
    """Take the dot away from `step` on: it marked one frame, and the object may have moved since."""
    import rerun as rr

    from workbench.viz.rerun_log import TIMELINE

    rec.set_time(TIMELINE, sequence=int(step))
    for path in user_point_paths(branch, policies):
        rec.log(path, rr.Clear(recursive=False))
