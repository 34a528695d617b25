"""Snapshots of the built-in simulator as safe bytes (JSON + base64; never pickle), so a session can
save a branch point to disk and restore it in another process.

    data = snapshot_to_bytes(env.snapshot())
    env.restore(snapshot_from_bytes(data))
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict

import numpy as np

from workbench.sim.catalog import ObjectSpec

FORMAT = "workbench.sim.snapshot/1"


def _plain(x):
    if isinstance(x, np.ndarray):
        return {"__array__": x.tolist(), "dtype": str(x.dtype)}
    if isinstance(x, bytes):
        return {"__bytes__": base64.b64encode(x).decode()}
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def _typed(x):
    if isinstance(x, dict):
        if "__array__" in x:
            return np.asarray(x["__array__"], dtype=x["dtype"])
        if "__bytes__" in x:
            return base64.b64decode(x["__bytes__"])
        return {k: _typed(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_typed(v) for v in x]
    return x


def snapshot_to_bytes(state: dict) -> bytes:
    recipe = state["recipe"]
    body = {k: v for k, v in state.items() if k != "recipe"}
    body["recipe"] = {
        "specs": [asdict(s) for s in recipe.specs],
        "poses": [list(p) for p in recipe.poses],
        "object_index": recipe.object_index,
        "target_index": recipe.target_index,
    }
    return json.dumps({"format": FORMAT, "state": _plain(body)}).encode()


def snapshot_from_bytes(data: bytes) -> dict:
    from workbench.sim.tabletop import _Recipe

    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"not a simulator snapshot (expected JSON): {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"not a simulator snapshot: format should be {FORMAT!r}")
    state = _typed(doc["state"])
    r = state["recipe"]
    specs = [
        ObjectSpec(
            **{
                **s,
                "color": tuple(s["color"]) if s["color"] else None,
                "size": tuple(s["size"]),
                "tags": tuple(s["tags"]),
            }
        )
        for s in r["specs"]
    ]
    object_index = r["object_index"] if "object_index" in r else r["source_index"]  # the older name
    state["recipe"] = _Recipe(specs, [tuple(p) for p in r["poses"]], object_index, r["target_index"])
    return state
