"""The messages of the policy protocol: checking requests, shaping replies, the spatial extension.

Shared by the server (which checks what clients send) and the client (which builds what upstream
servers expect). Request fields follow upstream's SimplerEnv / LIBERO clients exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.spatial import Box, Frame, Point, SpatialAnswer, Trace

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 10093  # upstream's SimplerEnv server port
MAX_MESSAGE_BYTES = 256 * 2**20  # a batch of 224x224 views is ~150 kB each; refuse absurd frames
DEFAULT_CFG_SCALE = 1.5
DEFAULT_DDIM_STEPS = 5  # upstream predict_action's default; its eval clients send 10


class RequestError(ValueError):
    """A request the server cannot act on; the message says what to send instead."""


class RemotePolicyError(RuntimeError):
    """The remote server answered with an error (its message is included)."""


def error_reply(request_id: Any, rtype: str, message: str) -> dict:
    return {
        "status": "error",
        "ok": False,
        "type": rtype,
        "request_id": request_id,
        "error": {"message": message},
    }


@dataclass
class InferRequest:
    batch_images: list[list[np.ndarray]]  # B lists of V views, each [H, W, 3] uint8
    instructions: list[str]  # [B]
    cfg_scale: float = DEFAULT_CFG_SCALE
    num_ddim_steps: int = DEFAULT_DDIM_STEPS
    unnorm_key: str | None = None
    seed: int | None = None
    states: list[np.ndarray | None] | None = None  # [B] robot states (our extension, optional)
    tcp_poses: list[np.ndarray | None] | None = None  # [B] TCP poses (our extension, optional)


def _states(payload: dict, batch: int, key: str = "states") -> list[np.ndarray | None] | None:
    """The optional per-item vectors under `key` ("states" or "tcp_poses"), checked."""
    states = payload.get(key)
    if states is None:
        return None
    if not isinstance(states, list | tuple | np.ndarray) or len(states) != batch:
        raise RequestError(f"'{key}' must be a list of {batch} vectors (one per batch item) or absent")
    out = []
    for b, x in enumerate(states):
        try:
            arr = None if x is None else np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            arr = np.array([np.nan])  # not numbers: refused below with the same message
        if arr is not None and (arr.ndim != 1 or not np.isfinite(arr).all()):
            raise RequestError(f"{key}[{b}] must be a flat vector of finite numbers")
        out.append(arr)
    return out


def _image(x: Any, where: str) -> np.ndarray:
    img = np.asarray(x) if isinstance(x, np.ndarray) else None
    if img is None or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or 0 in img.shape:
        got = f"{img.dtype} {img.shape}" if img is not None else type(x).__name__
        raise RequestError(f"{where} must be an RGB image, a uint8 ndarray [H, W, 3]; got {got}")
    return img


def parse_infer_request(payload: dict) -> InferRequest:
    """Check an upstream-shaped inference request; raises RequestError saying what is wrong."""
    images, instructions = payload.get("batch_images"), payload.get("instructions")
    if not isinstance(images, list | tuple) or not images:
        raise RequestError(
            "'batch_images' must be a non-empty list (one entry per batch item) of lists of images"
        )
    if not isinstance(instructions, list | tuple) or not all(isinstance(s, str) for s in instructions):
        raise RequestError("'instructions' must be a list of strings, one per batch item")
    if len(instructions) != len(images):
        raise RequestError(
            f"got {len(images)} image lists but {len(instructions)} instructions; send one of each per item"
        )
    batch = []
    for b, views in enumerate(images):
        views = [views] if isinstance(views, np.ndarray) and views.ndim == 3 else views
        if isinstance(views, np.ndarray):  # [V, H, W, 3]
            views = list(views)
        if not isinstance(views, list | tuple) or not views:
            raise RequestError(f"batch_images[{b}] must be a non-empty list of images")
        batch.append([_image(v, f"batch_images[{b}][{k}]") for k, v in enumerate(views)])
    if payload.get("use_ddim", True) is not True:
        raise RequestError("use_ddim=False (full DDPM sampling) is not supported here; send use_ddim=True")
    steps, cfg, seed = (
        payload.get("num_ddim_steps", DEFAULT_DDIM_STEPS),
        payload.get("cfg_scale", DEFAULT_CFG_SCALE),
        payload.get("seed"),
    )
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or not 1 <= steps <= 1000:
        raise RequestError(f"'num_ddim_steps' must be an integer in 1..1000, got {steps!r}")
    if isinstance(cfg, bool) or not isinstance(cfg, int | float | np.floating) or not np.isfinite(cfg):
        raise RequestError(f"'cfg_scale' must be a finite number, got {cfg!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise RequestError(f"'seed' must be an integer or absent, got {seed!r}")
    key = payload.get("unnorm_key")
    return InferRequest(
        batch,
        [str(s) for s in instructions],
        float(cfg),
        int(steps),
        key,
        None if seed is None else int(seed),
        _states(payload, len(batch)),
        _states(payload, len(batch), "tcp_poses"),
    )


# --- the spatial extension ---------------------------------------------------------------------


def spatial_to_wire(answer: SpatialAnswer) -> dict:
    geometry = []
    for g in answer.geometry:
        if isinstance(g, Box):
            geometry.append({"label": g.label, "bbox_2d": [g.x1, g.y1, g.x2, g.y2]})
        elif isinstance(g, Point):
            geometry.append({"label": g.label, "point_2d": [g.x, g.y]})
        elif isinstance(g, Trace):
            geometry.append({"label": g.label, "trace_2d": [list(p) for p in g.points]})
    frame = answer.frame
    return {
        "text": answer.text,
        "geometry": geometry,
        "frame": None if frame is None else [frame.width, frame.height, frame.orig_width, frame.orig_height],
        "problems": list(answer.problems),
    }


def spatial_from_wire(data: dict) -> SpatialAnswer:
    geometry = []
    for g in data.get("geometry", []):
        label = g.get("label", "")
        if "bbox_2d" in g:
            geometry.append(Box(*map(float, g["bbox_2d"]), label=label))
        elif "point_2d" in g:
            geometry.append(Point(*map(float, g["point_2d"]), label=label))
        elif "trace_2d" in g:
            geometry.append(Trace(tuple((float(x), float(y)) for x, y in g["trace_2d"]), label=label))
    frame = data.get("frame")
    return SpatialAnswer(
        text=data.get("text", ""),
        geometry=geometry,
        frame=Frame(*map(int, frame)) if frame else None,
        problems=list(data.get("problems", [])),
    )
