"""Paths and small helpers shared by the tests (imported as `helpers`: tests/ is on sys.path via conftest.py).

Test data stays in fixed folders under tests/ (fixtures/, data/, fake_simpler/, artifacts/) whatever folder a test
file sits in, so tests find it through these constants, never relative to their own file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from panels.state import AppConfig
from workbench.records import ActionChunk, Camera, GroundTruth, Observation, PolicyStep, StepRecord
from workbench.spatial import Box, Frame, Point, SpatialAnswer, Trace
from workbench.viz.rerun_log import branch_root, policy_part

TESTS = Path(__file__).resolve().parent  # tests/
REPO = TESTS.parent  # the checkout's root: assets/, sessions/, research/, scripts/
FIXTURES = TESTS / "fixtures"  # committed test data, each folder with a README saying how it was made
CHECKPOINTS = REPO / "assets" / "checkpoints"  # the bundled tiny checkpoints (st4vla-tiny, vanilla-tiny)

# 7-dim action quantiles shared by the policy tests: xyz, rpy, gripper (the gripper is not normalised).
ACTION_Q01 = [-0.03, -0.04, -0.02, -0.1, -0.1, -0.2, 0.0]
ACTION_Q99 = [0.03, 0.04, 0.05, 0.1, 0.12, 0.2, 1.0]


def dataset_statistics(key: str, *, state: dict | None = None) -> dict:
    """A fresh dataset_statistics.json dict with one key: action quantiles and mask, and `state` if given."""
    stats: dict = {"action": {"q01": list(ACTION_Q01), "q99": list(ACTION_Q99), "mask": [True] * 6 + [False]}}
    if state is not None:
        stats["state"] = state
    return {key: stats}


def randomize_head(policy, seed: int = 1, scale: float = 0.05) -> None:
    """Upstream zero-inits the DiT's last layer; give it weights so outputs depend on the input."""
    g = torch.Generator().manual_seed(seed)
    lin = policy.model.action_model.net.final_layer.linear
    with torch.no_grad():
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * scale)


def make_record(step: int, *, policies=("A", "B"), branch: str = "main", seed: int = 0) -> StepRecord:
    """A full StepRecord with every field a sink draws (a textured image so JPEG sizes are realistic)."""
    rng = np.random.default_rng(seed + step)
    yy, xx = np.mgrid[0:224, 0:224]
    image = np.stack([(xx + 3 * step) % 256, (yy * 2) % 256, ((xx + yy) // 2) % 256], -1).astype(np.uint8)
    image[60:100, 80:130] = (200, 40, 40)
    cam = Camera(np.array([[200.0, 0, 112], [0, 200.0, 112], [0, 0, 1]]), np.eye(4), 224, 224)
    gt = GroundTruth(
        objects=[Box(80, 60, 130, 100, "carrot"), Box(150, 140, 200, 190, "plate")],
        key_points=[Point(105, 80, "carrot")],
        target=Box(150, 140, 200, 190, "plate"),
        object_label="carrot",
        target_label="plate",
        expert_trace=Trace(((105.0, 80.0), (130.0, 120.0), (175.0, 165.0)), "gripper"),
    )
    obs = Observation(
        {"main": image},
        "put the carrot on the plate",
        {"main": cam},
        np.r_[0.0, 0, 0.5, 1, 0, 0, 0],
        None,
        gt,
    )
    ps = {}
    for i, name in enumerate(policies):
        actions = rng.normal(size=(8, 7)).astype(np.float32)
        chunk = ActionChunk(
            normalized=np.clip(actions, -1, 1),
            actions=actions,
            ee_path_3d=rng.normal(size=(9, 3)),
            ee_path_2d=Trace(tuple((100.0 + 5 * k + i, 90.0 + 3 * k) for k in range(9))),
            attention={"main": rng.random((8, 8)).astype(np.float32)},
            timings={"dit": 0.01},
        )
        spatial = SpatialAnswer(
            '[{"label": "carrot", "bbox_2d": [80, 60, 130, 100]}]',
            [Box(82.0 + i, 61, 128, 99, "carrot"), Point(104.0, 81.0, "carrot")],
            Frame(224, 224, 224, 224),
            [] if i == 0 else ["trailing text ignored"],
        )
        ps[name] = PolicyStep(
            name, obs.instruction, spatial, chunk, actions[0], {"iou": 0.9 - 0.1 * i}, {"spatial": 0.02}
        )
    return StepRecord(
        step=step,
        observation=obs,
        policies=ps,
        executed_action=rng.normal(size=7),
        recorded_action=None,
        reward=0.0,
        info={"success": False, "grasped": np.bool_(False), "dist": np.float32(0.25)},
        timings={"env": 0.005, "policy/A": 0.05, "sinks": 0.001},
        branch=branch,
    )


def no_demo_config(root: Path, port: int, **fields) -> AppConfig:
    """An app config under `root` without the bundled demo checkpoint: sessions in root/sessions,
    checkpoints listed from root; `fields` set or replace any other AppConfig field."""
    defaults = {
        "sessions_dir": root / "sessions",
        "demo_checkpoint": root / "no-demo",
        "checkpoint_dirs": [root],
    }
    return AppConfig(port=port, **{**defaults, **fields})


def _finite_points(points) -> list[tuple[float, float]]:
    return [(x, y) for x, y in points if np.isfinite(x) and np.isfinite(y)]


def expected_entities(record: StepRecord, *, attention: bool = False) -> set[str]:
    """Every entity path `RerunLogger.write` puts data (not a Clear) at for this record: the tests' own account of
    the logger's layout, written apart from it (non-finite points are not drawn, so they add no entity)."""
    r = branch_root(record.branch)
    cam = f"{r}world/camera"
    out = {f"{cam}/image"}
    out |= {f"{r}world/cameras/{policy_part(n)}" for n in list(record.observation.images)[1:]}
    gt = record.observation.ground_truth
    if gt is not None:
        out |= {f"{cam}/ground_truth/boxes"} if gt.objects else set()
        out |= {f"{cam}/ground_truth/points"} if gt.key_points else set()
        out |= {f"{cam}/ground_truth/target"} if gt.target is not None else set()
        out |= (
            {f"{cam}/ground_truth/expert_trace"}
            if gt.expert_trace and _finite_points(gt.expert_trace.points)
            else set()
        )
    for name, ps in record.policies.items():
        p = policy_part(name)
        out.add(f"{r}log/{p}")
        if ps.spatial is not None:
            kinds = {
                type(g) for g in ps.spatial.geometry if not isinstance(g, Trace) or _finite_points(g.points)
            }
            out |= {
                f"{cam}/{p}/spatial/{k}"
                for t, k in ((Box, "boxes"), (Point, "points"), (Trace, "trace"))
                if t in kinds
            }
        if ps.chunk is not None:
            out.add(f"{r}actions/{p}")
            if ps.chunk.ee_path_2d is not None and _finite_points(ps.chunk.ee_path_2d.points):
                out.add(f"{cam}/{p}/rollout")
            if ps.chunk.attention and attention:
                out.add(f"{cam}/{p}/attention")
        if ps.metrics:
            out.add(f"{r}metrics/{p}")
    if record.executed_action is not None:
        out.add(f"{r}actions/executed")
    if record.recorded_action is not None:
        out.add(f"{r}actions/recorded")
    if record.observation.state is not None:
        out.add(f"{r}state")
    if record.timings:
        out.add(f"{r}timings")
    return out


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """The nodes a directed graph reaches from `start` (import graphs: module -> modules it imports)."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one node (each holds at least one circle), sorted."""
    groups, done = [], set()
    for m in sorted(graph):
        if m in done:
            continue
        group = sorted(n for n in reachable(graph, m) if m in reachable(graph, n))
        done.update(group)
        if len(group) > 1:
            groups.append(group)
    return groups


def run_together(*fns: Callable[[], None], timeout: float = 240.0) -> None:
    """Run the functions at the same time, one thread each; re-raise the first error a thread met, and
    fail if one is still running after `timeout` seconds."""
    errors: list[BaseException] = []

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as e:  # handed to the test's thread below
                errors.append(e)

        return run

    threads = [threading.Thread(target=guarded(fn)) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    if any(t.is_alive() for t in threads):
        raise AssertionError(f"a thread was still running after {timeout} s")
    if errors:
        raise errors[0]


def rrd_columns(path: Path) -> dict[str, dict[str, list]]:
    """A Rerun recording read back with Rerun's own RrdReader: entity (no leading "/") -> archetype
    column (e.g. "Boxes2D:labels") -> its rows, in the order they were logged."""
    import warnings

    from rerun.chunk import RrdReader

    out: dict[str, dict[str, list]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a stream's bytes have no footer: fine for reading
        for chunk in RrdReader(path).stream():
            batch = chunk.to_record_batch()
            columns = out.setdefault(chunk.entity_path.lstrip("/"), {})
            for name in batch.schema.names:
                if ":" in name:
                    columns.setdefault(name, []).extend(batch.column(name).to_pylist())
    return out
