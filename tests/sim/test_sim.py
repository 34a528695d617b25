"""The built-in tabletop simulator: interface, ground truth, determinism, snapshots, expert, bad input."""

from __future__ import annotations

import json

import numpy as np
import pybullet as pb
import pytest

from workbench.records import Observation
from workbench.sim import catalog, instructions, list_tasks, make, to_observation
from workbench.sim.base import ACTION_HIGH, Env, SimEnv
from workbench.sim.snapshots import snapshot_from_bytes, snapshot_to_bytes
from workbench.sim.tabletop import TabletopEnv

CAM = "3rd_view_camera"
# SimplerEnv's info keys for its put-on tasks (reference/simplerenv.md); ours put, stack and place alike.
PUT_KEYS = {
    "moved_correct_obj",
    "moved_wrong_obj",
    "is_src_obj_grasped",
    "consecutive_grasp",
    "src_on_target",
    "success",
}
TASK_KEYS = {
    "tabletop_put_on": PUT_KEYS,
    "tabletop_put_in": PUT_KEYS,
    "tabletop_stack": PUT_KEYS,
    "tabletop_pick": {
        "is_grasped",
        "consecutive_grasp",
        "lifted_object",
        "lifted_object_significantly",
        "success",
    },
    "tabletop_move_near": {
        "moved_correct_obj",
        "moved_wrong_obj",
        "near_tgt_obj",
        "is_closest_to_tgt",
        "success",
    },
}


@pytest.fixture(scope="module")
def env():
    e = make("tabletop_put_on", width=160, height=120, segmentation=True)
    yield e
    e.close()


def run_expert(env: TabletopEnv, seed: int, options: dict | None = None) -> dict:
    obs, info = env.reset(seed=seed, options=options)
    expert = env.expert()
    for _ in range(env.max_episode_steps):
        obs, _, terminated, truncated, info = env.step(expert.act(obs))
        assert info["action_clipped"] is False  # the expert's actions are exactly what step() applies
        if terminated or truncated:
            break
    return info


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def test_list_tasks_and_make_errors():
    assert list_tasks() == sorted(TASK_KEYS)
    with pytest.raises(KeyError, match="available"):
        make("tabletop_juggle")
    with pytest.raises(TypeError, match="unknown simulator options"):
        make("tabletop_pick", colour="red")


def test_interface_matches_simplerenv_layout(env):
    assert isinstance(env, Env) and isinstance(env, SimEnv)
    obs, info = env.reset(seed=0)
    img = obs["image"][CAM]
    assert img["rgb"].dtype == np.uint8 and img["rgb"].shape == (120, 160, 3)
    assert img["depth"].dtype == np.float32 and img["depth"].shape == (120, 160, 1)
    assert img["Segmentation"].shape == (120, 160, 1)
    params = obs["camera_param"][CAM]
    assert params["intrinsic_cv"].shape == (3, 3) and params["extrinsic_cv"].shape == (4, 4)
    np.testing.assert_allclose(
        params["cam2world_gl"] @ np.diag([1, -1, -1, 1]) @ params["extrinsic_cv"], np.eye(4), atol=1e-5
    )
    assert obs["agent"]["qpos"].shape == (9,)
    tcp = obs["extra"]["tcp_pose"]
    assert tcp.shape == (7,) and abs(np.linalg.norm(tcp[3:]) - 1) < 1e-5
    assert tcp[5] == pytest.approx(0, abs=0.05)  # wxyz: pointing down is a half turn about x -> |qx| ~ 1
    assert env.get_language_instruction() == f"put {env.obj.name} on {env.target.name}"
    obs, reward, terminated, truncated, info = env.step(np.zeros(7))
    assert isinstance(reward, float) and terminated is False and truncated is False
    assert TASK_KEYS["tabletop_put_on"] <= set(info) and info["elapsed_steps"] == 1
    assert env.gripper_convention == "absolute_open_positive" and env.control_hz == 5
    assert env.max_episode_steps == 60


@pytest.mark.parametrize("task", sorted(TASK_KEYS))
def test_every_task_reports_its_info_keys(task):
    e = make(task, render=False)
    try:
        e.reset(seed=1)
        _, _, _, _, info = e.step(np.zeros(7))
        assert TASK_KEYS[task] <= set(info)
        assert info["success"] is False
    finally:
        e.close()


def test_actions_move_the_tcp_in_the_base_frame():
    e = make("tabletop_pick", render=False)
    obs, _ = e.reset(seed=0)
    start = obs["extra"]["tcp_pose"][:3].copy()
    for _ in range(4):
        obs, *_ = e.step(np.array([0.02, -0.01, 0.0, 0, 0, 0, 1.0]))
    np.testing.assert_allclose(obs["extra"]["tcp_pose"][:3] - start, [0.08, -0.04, 0.0], atol=0.006)
    obs, *_ = e.step(np.array([0, 0, 0, 0, 0, 0, -1.0]))  # absolute gripper: -1 closes
    assert obs["agent"]["qpos"][7:].sum() < 0.01
    e.close()


def test_camera_matches_pybullet_projection(env):
    env.reset(seed=0)
    cam = env.camera(CAM)
    pts = np.array([[0.5, 0.1, 0.0], [0.4, -0.15, 0.1], [0.6, 0.0, 0.05]])
    # pybullet's own OpenGL pipeline: clip = P @ V @ p, pixel from NDC (y flipped).
    view = np.asarray(env.rig.view).reshape(4, 4, order="F")
    proj = np.asarray(env.rig.proj).reshape(4, 4, order="F")
    clip = (proj @ view @ np.c_[pts, np.ones(3)].T).T
    ndc = clip[:, :3] / clip[:, 3:]
    px = np.stack([(ndc[:, 0] + 1) / 2 * cam.width, (1 - ndc[:, 1]) / 2 * cam.height], axis=1)
    np.testing.assert_allclose(cam.project(pts), px, atol=1e-6)
    with pytest.raises(KeyError):
        env.camera("wrist")


def test_depth_is_metric(env):
    obs, _ = env.reset(seed=2)
    cam = env.camera()
    top = np.asarray(env.client.getBasePositionAndOrientation(env.target.body)[0]) + [0, 0, 0.006]
    u, v = cam.project(top[None])[0]
    z_cam = (cam.extrinsic[:3, :3] @ top + cam.extrinsic[:3, 3])[2]
    assert obs["image"][CAM]["depth"][int(v), int(u), 0] == pytest.approx(z_cam, abs=0.01)


@pytest.mark.parametrize("task", sorted(TASK_KEYS))
def test_ground_truth_boxes_match_segmentation(task):
    e = make(task, width=320, height=240, render=False)  # render_segmentation() renders on demand
    try:
        for seed in (0, 1):
            e.reset(seed=seed)
            seg = e.render_segmentation()
            gt = e.ground_truth()
            by_label = {b.label: b for b in gt.objects}
            assert set(by_label) == {o.name for o in e.objects}
            for obj in e.objects:
                ys, xs = np.nonzero(seg == obj.body)
                assert len(xs) > 20, f"{obj.name} not visible"
                mask_box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
                b = by_label[obj.name]
                assert iou((b.x1, b.y1, b.x2, b.y2), mask_box) > 0.8, (task, seed, obj.name)
    finally:
        e.close()


def test_ground_truth_labels_points_target_and_trace(env):
    env.reset(seed=3)
    gt = env.ground_truth()
    assert gt.object_label == env.obj.name and gt.target_label == env.target.name
    assert gt.target is not None and gt.target.label == env.target.name
    for p in gt.key_points:
        box = next(b for b in gt.objects if b.label == p.label)
        assert box.x1 <= p.x <= box.x2 and box.y1 <= p.y <= box.y2
    trace = gt.expert_trace.points
    assert len(trace) >= 5  # tcp, approach, descend, lift, carry, lower, ...
    tcp_px = env.camera().project(env.robot.tcp_pose()[None, :3])[0]
    np.testing.assert_allclose(trace[0], tcp_px, atol=1e-6)
    obj_box = next(b for b in gt.objects if b.label == env.obj.name)
    # the descend waypoint (the grasp) lies on the object to move in the image
    assert any(obj_box.x1 <= x <= obj_box.x2 and obj_box.y1 <= y <= obj_box.y2 for x, y in trace[1:4])


def test_to_observation(env):
    obs, _ = env.reset(seed=0)
    o = to_observation(env, obs)
    assert isinstance(o, Observation)
    assert o.images[CAM] is obs["image"][CAM]["rgb"] and o.main_camera == CAM
    assert o.instruction == env.get_language_instruction()
    np.testing.assert_allclose(o.cameras[CAM].intrinsic, obs["camera_param"][CAM]["intrinsic_cv"], rtol=1e-6)
    assert o.tcp_pose.shape == (7,) and o.state.shape == (9,)
    assert o.ground_truth.object_label == env.obj.name


def _rollout(env, actions) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    out = []
    for a in actions:
        obs, _, _, _, info = env.step(a)
        out.append((obs["image"][CAM]["rgb"].copy(), obs["agent"]["qpos"].copy(), info))
    return out


def test_same_seed_same_actions_identical_observations():
    a, b = make("tabletop_stack", width=96, height=96), make("tabletop_stack", width=96, height=96)
    try:
        oa, _ = a.reset(seed=7)
        ob, _ = b.reset(seed=7)
        assert np.array_equal(oa["image"][CAM]["rgb"], ob["image"][CAM]["rgb"])
        actions, ra = [], []
        for _ in range(12):
            actions.append(a.expert().act(None))
            ra += _rollout(a, actions[-1:])
        rb = _rollout(b, actions)
        for (ia, qa, _), (ib, qb, _) in zip(ra, rb, strict=True):
            assert np.array_equal(ia, ib) and np.array_equal(qa, qb)
        # a different seed gives a different scene
        oc, _ = b.reset(seed=8)
        assert not np.array_equal(oa["image"][CAM]["rgb"], oc["image"][CAM]["rgb"])
    finally:
        a.close()
        b.close()


def test_restore_replays_the_branch_exactly():
    e = make("tabletop_put_in", width=96, height=96)
    try:
        obs, _ = e.reset(seed=4)
        expert = e.expert()
        for _ in range(10):  # into the grasp: contacts and the expert's phase matter
            obs, *_ = e.step(expert.act(obs))
        snap = e.snapshot()
        at_snap = obs["image"][CAM]["rgb"].copy()
        actions = [expert.act(None)]
        first = _rollout(e, actions[:1])
        for _ in range(9):
            actions.append(expert.act(None))
            first += _rollout(e, actions[-1:])
        # branch off: a different instruction, then back, and across a reset into another episode
        e.set_language_instruction("do something else")
        e.reset(seed=11)
        obs = e.restore(snap)
        assert np.array_equal(obs["image"][CAM]["rgb"], at_snap)
        assert e.get_language_instruction() == "put " + e.obj.name + " into " + e.target.name
        assert e.expert().state_dict() == snap["expert"]
        again = _rollout(e, actions)
        for (ia, qa, fa), (ib, qb, fb) in zip(first, again, strict=True):
            assert np.array_equal(ia, ib) and np.array_equal(qa, qb)
            assert fa == fb
        # the expert resumes from the same phase and proposes the same next action
        e.restore(snap)
        assert np.array_equal(e.expert().act(None), actions[0])
    finally:
        e.close()


@pytest.mark.parametrize(
    "bad", [[np.nan] * 7, [0, 0, 0, 0, 0, np.inf, 1], [0.0] * 6, np.zeros((2, 7)), "forward", None]
)
def test_bad_actions_raise_and_leave_the_state_alone(env, bad):
    obs, _ = env.reset(seed=5)
    before = env.snapshot()
    with pytest.raises(ValueError):
        env.step(bad)
    after = env.snapshot()
    assert after["bullet"] == before["bullet"] and after["elapsed_steps"] == 0
    np.testing.assert_array_equal(after["robot"]["target_pos"], before["robot"]["target_pos"])


def test_out_of_range_actions_are_clipped_or_rejected():
    big = np.array([0.3, 0, 0, 0, 0, 0, 3.0])
    clipped = np.minimum(big, ACTION_HIGH)
    a, b = make("tabletop_pick", render=False), make("tabletop_pick", render=False)
    strict = make("tabletop_pick", render=False, strict_actions=True)
    try:
        a.reset(seed=0)
        b.reset(seed=0)
        oa, _, _, _, ia = a.step(big)
        ob, _, _, _, ib = b.step(clipped)
        assert ia["action_clipped"] is True and ib["action_clipped"] is False
        np.testing.assert_array_equal(oa["agent"]["qpos"], ob["agent"]["qpos"])
        strict.reset(seed=0)
        with pytest.raises(ValueError, match="outside the action box"):
            strict.step(big)
    finally:
        for e in (a, b, strict):
            e.close()


def test_step_before_reset_and_bad_reset_options():
    e = make("tabletop_pick", render=False)
    try:
        with pytest.raises(RuntimeError, match="reset"):
            e.step(np.zeros(7))
        with pytest.raises(ValueError, match="unknown reset options"):
            e.reset(options={"colour": "red"})
        with pytest.raises(KeyError, match="neither a catalog object"):
            e.reset(options={"object": "unicorn"})
        with pytest.raises(ValueError, match=r"unknown reset options \['source'\].*options\['object'\]"):
            e.reset(options={"source": "red cube"})  # the older name of the object to move
        with pytest.raises(ValueError, match="split"):
            e.reset(options={"split": "holdout"})
    finally:
        e.close()


def test_reset_options_put_any_object_and_instruction_in_a_task():
    e = make("tabletop_put_on", render=False)
    try:
        e.reset(
            seed=0,
            options={
                "object": "duck_vhacd.urdf@0.6",
                "target": "grey plate",
                "instruction": "duck to plate!",
            },
        )
        assert e.obj.name == "duck vhacd" and e.target.name == "grey plate"
        assert e.get_language_instruction() == "duck to plate!"
        e.reset(seed=1, options={"split": "unseen", "paraphrase": True})
        unseen = {s.name for s in catalog.objects("unseen")}
        assert e.obj.name in unseen and e.target.name in unseen
        assert e.get_language_instruction() in instructions.paraphrases(
            "tabletop_put_on", e.obj.name, e.target.name, "unseen"
        )
        e.reset(
            seed=2, options={"object": catalog.get("rubber duck"), "distractors": ["pink cube", "white can"]}
        )
        assert [o.name for o in e.objects][1:] == ["rubber duck", "pink cube", "white can"]
    finally:
        e.close()


def test_catalog_and_instruction_bank_are_split_and_graspable():
    seen, unseen = catalog.objects("seen"), catalog.objects("unseen")
    assert seen and unseen and not {s.name for s in seen} & {s.name for s in unseen}
    e = make("tabletop_pick", render=False)
    try:
        for spec in catalog.objects(kind="object"):
            e.reset(seed=0, options={"object": spec, "distractors": 0})
            pts = e.obj.points[:, :2] - e.obj.points[:, :2].mean(0)
            minor = np.ptp(pts @ np.linalg.eigh(np.cov(pts.T))[1][:, 0])
            assert minor < 0.07, (
                f"{spec.name} is {minor:.3f} m across its narrow side: too wide for the Panda"
            )
    finally:
        e.close()
    for task in list_tasks():
        s = instructions.paraphrases(task, "red cube", "white plate", "seen")
        u = instructions.paraphrases(task, "red cube", "white plate", "unseen")
        assert len(s) >= 3 and len(u) >= 3 and not set(s) & set(u)
        assert s[0] == instructions.canonical(task, "red cube", "white plate")
        assert all("red cube" in t for t in s + u)


def test_heldout_finds_every_unseen_paraphrase_whatever_the_names_and_no_seen_one():
    for task in list_tasks():
        unseen = instructions.paraphrases(task, "rubber duck", "grey plate", "unseen")
        seen = instructions.paraphrases(task, "red cube", "white plate", "seen")
        assert instructions.heldout(seen + unseen) == unseen
    assert instructions.heldout(["stow it", "pile them up", "put red cube on white plate"]) == []


@pytest.mark.parametrize("task", sorted(TASK_KEYS))
def test_expert_solves_each_task(task):
    e = make(task, render=False)
    try:
        results = [run_expert(e, seed)["success"] for seed in range(3)]
        assert all(results), f"{task}: expert solved {sum(results)}/3"
    finally:
        e.close()


@pytest.mark.slow
@pytest.mark.parametrize("split", ["seen", "unseen"])
@pytest.mark.parametrize("task", sorted(TASK_KEYS))
def test_expert_success_rate_over_20_seeds(task, split):
    e = make(task, render=False)
    try:
        wins = sum(run_expert(e, seed, {"split": split})["success"] for seed in range(20))
        assert wins >= (19 if split == "seen" else 16), f"{task}/{split}: {wins}/20"
    finally:
        e.close()


def test_segmentation_ids_are_pybullet_bodies(env):
    env.reset(seed=0)
    seg = env.render_segmentation()
    ids = set(np.unique(seg).tolist())
    assert {o.body for o in env.objects} <= ids and env.robot.body in ids
    assert pb.getNumBodies(physicsClientId=env.client._client) == len(env.objects) + 2


def test_bad_configuration_is_rejected():
    with pytest.raises(ValueError, match="renderer"):
        make("tabletop_pick", renderer="vulkan")
    with pytest.raises(ValueError, match="camera size"):
        make("tabletop_pick", width=0)
    e = make("tabletop_pick", render=False)
    try:
        obs, _ = e.reset(seed=0)
        assert obs["image"] == {}
        with pytest.raises(ValueError, match="render=False"):
            to_observation(e, obs)
    finally:
        e.close()


def test_snapshot_bytes_restore_in_a_fresh_env_and_reject_foreign_data():
    a = make("tabletop_move_near", width=96, height=96)
    b = make("tabletop_move_near", width=96, height=96)
    try:
        obs, _ = a.reset(seed=2, options={"split": "unseen"})
        for _ in range(12):
            obs, *_ = a.step(a.expert().act(obs))
        data = snapshot_to_bytes(a.snapshot())
        assert isinstance(data, bytes)
        obs_b = b.restore(snapshot_from_bytes(data))  # another env that never saw this episode
        assert np.array_equal(obs_b["image"][CAM]["rgb"], obs["image"][CAM]["rgb"])
        for _ in range(5):
            act = a.expert().act(None)
            assert np.array_equal(act, b.expert().act(None))
            oa, *_ = a.step(act)
            ob, *_ = b.step(act)
            assert np.array_equal(oa["image"][CAM]["rgb"], ob["image"][CAM]["rgb"])
        old = json.loads(data)  # written before the recipe's "source_index" became "object_index"
        old["state"]["recipe"]["source_index"] = old["state"]["recipe"].pop("object_index")
        assert snapshot_from_bytes(json.dumps(old).encode())["recipe"] == snapshot_from_bytes(data)["recipe"]
        assert b.restore(snapshot_from_bytes(json.dumps(old).encode()))["image"][CAM]["rgb"].shape == (
            96,
            96,
            3,
        )
        with pytest.raises(ValueError, match="not a simulator snapshot"):
            snapshot_from_bytes(b"\x80\x04 pickle")
        with pytest.raises(ValueError, match="task"):
            make("tabletop_pick", render=False).restore(snapshot_from_bytes(data))
    finally:
        a.close()
        b.close()
