"""StepRecord <-> JSON, as a session's steps.jsonl stores it (arrays as dtype, shape and data).

Images are not in the JSON: the writer stores them as files and the record keeps their names.
Ground truth written before the rename names the object to move "source_label"; it reads as object_label.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from workbench.records import ActionChunk, Camera, GroundTruth, Observation, PolicyStep, StepRecord
from workbench.spatial import Box, Frame, Geometry, Point, SpatialAnswer, Trace


class SessionError(ValueError):
    """A session path or file that cannot be used as asked (the message says why and what to do)."""


def _arr(a: np.ndarray | None) -> dict | None:
    if a is None:
        return None
    a = np.asarray(a)
    return {"dtype": str(a.dtype), "shape": list(a.shape), "data": a.ravel().tolist()}


def _unarr(d: dict | None) -> np.ndarray | None:
    if d is None:
        return None
    return np.asarray(d["data"], dtype=np.dtype(d["dtype"])).reshape(d["shape"])


def _geom(g: Geometry) -> dict:
    kind = {Box: "box", Point: "point", Trace: "trace"}[type(g)]
    d = dataclasses.asdict(g)
    if isinstance(g, Trace):
        d["points"] = [list(p) for p in g.points]
    return {"type": kind, **d}


def _ungeom(d: dict) -> Geometry:
    d = dict(d)
    kind = d.pop("type")
    if kind == "box":
        return Box(**d)
    if kind == "point":
        return Point(**d)
    if kind == "trace":
        return Trace(tuple((float(x), float(y)) for x, y in d["points"]), d.get("label", ""))
    raise SessionError(f"unknown geometry type {kind!r} in session file")


def jsonable(v: Any) -> Any:
    """Env info can hold numpy scalars/arrays; keep what JSON can say, stringify the rest."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return repr(v)


def _gt(gt: GroundTruth | None) -> dict | None:
    if gt is None:
        return None
    return {
        "objects": [_geom(b) for b in gt.objects],
        "key_points": [_geom(p) for p in gt.key_points],
        "target": _geom(gt.target) if gt.target else None,
        "object_label": gt.object_label,
        "target_label": gt.target_label,
        "expert_trace": _geom(gt.expert_trace) if gt.expert_trace else None,
    }


def _ungt(d: dict | None) -> GroundTruth | None:
    if d is None:
        return None
    return GroundTruth(
        objects=[_ungeom(b) for b in d["objects"]],
        key_points=[_ungeom(p) for p in d["key_points"]],
        target=_ungeom(d["target"]) if d["target"] else None,
        object_label=d["object_label"] if "object_label" in d else d["source_label"],
        target_label=d["target_label"],
        expert_trace=_ungeom(d["expert_trace"]) if d["expert_trace"] else None,
    )


def _spatial(s: SpatialAnswer | None) -> dict | None:
    if s is None:
        return None
    frame = dataclasses.asdict(s.frame) if s.frame else None
    return {
        "text": s.text,
        "geometry": [_geom(g) for g in s.geometry],
        "frame": frame,
        "problems": s.problems,
    }


def _unspatial(d: dict | None) -> SpatialAnswer | None:
    if d is None:
        return None
    frame = Frame(**d["frame"]) if d["frame"] else None
    return SpatialAnswer(d["text"], [_ungeom(g) for g in d["geometry"]], frame, list(d["problems"]))


def _chunk(c: ActionChunk | None) -> dict | None:
    if c is None:
        return None
    return {
        "normalized": _arr(c.normalized),
        "actions": _arr(c.actions),
        "ee_path_3d": _arr(c.ee_path_3d),
        "ee_path_2d": _geom(c.ee_path_2d) if c.ee_path_2d else None,
        "attention": {k: _arr(v) for k, v in c.attention.items()} if c.attention else None,
        "timings": c.timings,
        "answer": c.answer,
    }


def _unchunk(d: dict | None) -> ActionChunk | None:
    if d is None:
        return None
    return ActionChunk(
        normalized=_unarr(d["normalized"]),
        actions=_unarr(d["actions"]),
        ee_path_3d=_unarr(d["ee_path_3d"]),
        ee_path_2d=_ungeom(d["ee_path_2d"]) if d["ee_path_2d"] else None,
        attention={k: _unarr(v) for k, v in d["attention"].items()} if d["attention"] else None,
        timings=dict(d["timings"]),
        answer=d.get("answer"),  # absent in sessions saved before answer-conditioned models
    )


def record_to_dict(record: StepRecord, image_files: dict[str, str]) -> dict:
    """A StepRecord as JSON, with images replaced by file names relative to the session dir."""
    obs = record.observation
    cams = {
        k: {
            "intrinsic": _arr(c.intrinsic),
            "extrinsic": _arr(c.extrinsic),
            "width": c.width,
            "height": c.height,
        }
        for k, c in obs.cameras.items()
    }
    policies = {
        name: {
            "policy": ps.policy,
            "instruction": ps.instruction,
            "spatial": _spatial(ps.spatial),
            "chunk": _chunk(ps.chunk),
            "executed": _arr(ps.executed),
            "metrics": jsonable(ps.metrics),
            "timings": ps.timings,
        }
        for name, ps in record.policies.items()
    }
    return {
        "step": record.step,
        "branch": record.branch,
        "observation": {
            "images": image_files,
            "instruction": obs.instruction,
            "cameras": cams,
            "tcp_pose": _arr(obs.tcp_pose),
            "state": _arr(obs.state),
            "base_pose": _arr(obs.base_pose),
            "ground_truth": _gt(obs.ground_truth),
        },
        "policies": policies,
        "executed_action": _arr(record.executed_action),
        "recorded_action": _arr(record.recorded_action),
        "reward": float(record.reward),
        "terminated": bool(record.terminated),
        "truncated": bool(record.truncated),
        "info": jsonable(record.info),
        "timings": record.timings,
    }


def record_from_dict(d: dict, images: dict[str, np.ndarray]) -> StepRecord:
    o = d["observation"]
    cams = {
        k: Camera(_unarr(c["intrinsic"]), _unarr(c["extrinsic"]), int(c["width"]), int(c["height"]))
        for k, c in o["cameras"].items()
    }
    obs = Observation(
        images=images,
        instruction=o["instruction"],
        cameras=cams,
        tcp_pose=_unarr(o["tcp_pose"]),
        state=_unarr(o["state"]),
        base_pose=_unarr(o.get("base_pose")),  # absent in sessions saved before it was recorded
        ground_truth=_ungt(o["ground_truth"]),
    )
    policies = {
        name: PolicyStep(
            policy=p["policy"],
            instruction=p["instruction"],
            spatial=_unspatial(p["spatial"]),
            chunk=_unchunk(p["chunk"]),
            executed=_unarr(p["executed"]),
            metrics=dict(p["metrics"]),
            timings=dict(p["timings"]),
        )
        for name, p in d["policies"].items()
    }
    return StepRecord(
        step=int(d["step"]),
        observation=obs,
        policies=policies,
        executed_action=_unarr(d["executed_action"]),
        recorded_action=_unarr(d["recorded_action"]),
        reward=float(d["reward"]),
        terminated=bool(d["terminated"]),
        truncated=bool(d["truncated"]),
        info=dict(d["info"]),
        timings=dict(d["timings"]),
        branch=d["branch"],
    )
