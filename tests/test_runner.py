"""The runner on the real built-in simulator (224x224) with a real tiny random ST4VLA policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import expected_entities

from workbench.controller import euler_to_axis_angle, project_path, rollout_path
from workbench.protocols import BranchError
from workbench.records import Camera
from workbench.runner import PolicySlot, Runner
from workbench.sessions import SessionStore, load_session
from workbench.sources import SimSource
from workbench.viz.rerun_log import RerunLogger, rrd_entities_by_step

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def policy():
    from workbench.policy import ST4VLAPolicy
    from workbench.policy.configuration import tiny_config

    torch.manual_seed(0)
    policy = ST4VLAPolicy.from_config(tiny_config())
    # The action head is zero-initialised (as upstream), so an untrained policy's actions ignore the
    # observation. Give it small random weights so actions depend on image and instruction.
    for p in policy.model.action_model.net.final_layer.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return policy


class Spy:
    """The real policy, with the instructions it was asked with written down."""

    def __init__(self, policy):
        self.policy, self.asked = policy, []

    def spatial(self, images, instruction, query="box"):
        self.asked.append(("spatial", instruction))
        return self.policy.spatial(images, instruction, query=query)

    def act(self, images, instruction, **kw):
        self.asked.append(("act", instruction))
        return self.policy.act(images, instruction, **kw)


@pytest.fixture(scope="module")
def task():
    from workbench.sim import list_tasks

    return list_tasks()[0]


def make_source(task):
    return SimSource.from_task(task, width=224, height=224)


def slot(policy, name="A", spatial=False, **kw):
    # the explicit grounding decode of an untrained VLM runs to max tokens: ask it only where tested
    return PolicySlot(name, policy, num_ddim_steps=2, spatial_query="box" if spatial else None, **kw)


def same_image(a, b):
    return np.array_equal(
        a.observation.images[a.observation.main_camera], b.observation.images[b.observation.main_camera]
    )


# -- pure controller maths ---------------------------------------------------------------------------


def test_rollout_integrates_deltas_and_projects():
    actions = np.zeros((4, 7))
    actions[:, 0] = 0.01
    path = rollout_path(np.array([0.3, 0.0, 0.2, 1, 0, 0, 0]), actions)
    assert path.shape == (5, 3)
    np.testing.assert_allclose(path[:, 0], [0.3, 0.31, 0.32, 0.33, 0.34])
    # a camera 1 m in front of the origin, looking down +z: world x maps to pixel u
    ext = np.eye(4)
    ext[2, 3] = 1.0
    cam = Camera(np.array([[100.0, 0, 50], [0, 100.0, 50], [0, 0, 1]]), ext, 100, 100)
    trace = project_path(cam, path)
    assert len(trace.points) == 5 and trace.points[0] == pytest.approx((50 + 100 * 0.3 / 1.2, 50.0))
    behind = project_path(cam, np.array([[0, 0, -2.0], [0, 0, 0.0]]))
    assert len(behind.points) == 1
    with pytest.raises(ValueError, match=r"\[T, 7\]"):
        rollout_path(np.zeros(7), np.zeros(7))


def test_euler_to_axis_angle_matches_single_axis_rotations():
    np.testing.assert_allclose(euler_to_axis_angle(np.array([0.3, 0, 0])), [0.3, 0, 0], atol=1e-9)
    np.testing.assert_allclose(euler_to_axis_angle(np.array([0, 0, -0.5])), [0, 0, -0.5], atol=1e-9)
    np.testing.assert_allclose(euler_to_axis_angle(np.zeros(3)), 0.0)


# -- the runner on the simulator ---------------------------------------------------------------------


def test_runner_steps_the_sim_and_fills_records(policy, task):
    runner = Runner(make_source(task), [slot(policy, spatial=True)])
    records = [runner.reset(seed=0), *runner.run(3)]
    assert [r.step for r in records] == [0, 1, 2, 3] and runner.history == records
    for r in records:
        image = r.observation.images[r.observation.main_camera]
        assert image.shape == (224, 224, 3) and image.dtype == np.uint8
        ps = r.policies["A"]
        assert ps.spatial is not None and ps.chunk.actions.ndim == 2 and ps.chunk.actions.shape[1] == 7
        assert ps.executed.shape == (7,) and ps.executed[6] in (-1.0, 1.0)
        np.testing.assert_array_equal(r.executed_action, ps.executed)
        assert ps.chunk.ee_path_3d.shape == (ps.chunk.actions.shape[0] + 1, 3)
        np.testing.assert_allclose(ps.chunk.ee_path_3d[0], r.observation.tcp_pose[:3])
        assert ps.chunk.ee_path_2d is not None and len(ps.chunk.ee_path_2d.points) >= 1
        assert "box_iou" in ps.metrics or "num_predicted" in ps.metrics
        assert {"env", "policy", "snapshot", "runner"} <= set(r.timings)
    # the env really moved: the gripper is not where it started
    assert not np.allclose(
        records[0].observation.tcp_pose[:3], records[-1].observation.tcp_pose[:3], atol=1e-4
    )
    with pytest.raises(RuntimeError, match="reset"):
        Runner(make_source(task), [slot(policy)]).step()


def test_a_policy_that_acts_on_its_answer_shows_that_answer_decoded_once(task, monkeypatch):
    from workbench.policy import ST4VLAPolicy
    from workbench.policy.configuration import tiny_config

    cfg = tiny_config()
    cfg.condition_on_answer = True
    p = ST4VLAPolicy.from_config(cfg, seed=0)
    assert p.acts_on_its_box_answer

    def no_second_decode(*args, **kwargs):
        raise AssertionError("the runner decoded the spatial answer a second time")

    monkeypatch.setattr(p, "spatial", no_second_decode)
    ps = Runner(make_source(task), [slot(p, spatial=True)]).reset(seed=0).policies["A"]
    assert ps.chunk.answer and ps.spatial.text == ps.chunk.answer  # shown = what the action read
    assert ps.spatial.frame.orig_width == 224  # mapped onto the original image


def test_reask_does_not_advance_and_set_instruction_reaches_the_policy(policy, task):
    spy = Spy(policy)
    runner = Runner(make_source(task), [slot(spy, spatial=True)])
    runner.reset(seed=1)
    first = runner.step()
    again = runner.reask()
    assert again.step == first.step and same_image(first, again)
    np.testing.assert_array_equal(first.policies["A"].chunk.actions, again.policies["A"].chunk.actions)
    np.testing.assert_array_equal(
        first.executed_action, again.executed_action
    )  # ensembler not double-counted
    assert runner.lanes[0].source.env.elapsed_steps == 1  # the env did not step
    assert len(runner.history) == 2
    runner.set_instruction("lift the object slowly")
    edited = runner.reask()
    assert edited.policies["A"].instruction == "lift the object slowly" and edited.step == first.step
    assert spy.asked[-2:] == [("spatial", "lift the object slowly"), ("act", "lift the object slowly")]
    assert not np.array_equal(edited.policies["A"].chunk.actions, first.policies["A"].chunk.actions)
    nxt = runner.step()
    assert nxt.step == 2 and nxt.policies["A"].instruction == "lift the object slowly"
    with pytest.raises(ValueError, match="empty"):
        runner.set_instruction("  ")
    with pytest.raises(KeyError, match="no slot"):
        runner.set_instruction("x", slot="Z")


def test_branch_reproduces_the_steps_up_to_k_exactly(policy, task):
    runner = Runner(make_source(task), [slot(policy)])
    main = [runner.reset(seed=2), *runner.run(4)]
    k = 2
    rec = runner.branch(k, "again")
    assert rec.branch == "again" and rec.step == k
    assert same_image(rec, main[k])
    np.testing.assert_array_equal(rec.policies["A"].chunk.actions, main[k].policies["A"].chunk.actions)
    np.testing.assert_array_equal(rec.executed_action, main[k].executed_action)
    nxt = runner.step()  # physics restored exactly: the next step is the same too
    assert nxt.step == k + 1 and same_image(nxt, main[k + 1])
    np.testing.assert_array_equal(nxt.executed_action, main[k + 1].executed_action)
    # a branch with another instruction starts from the same observation and asks differently
    para = runner.branch(1, "para", instruction="move the thing over there")
    assert same_image(para, main[1]) and para.policies["A"].instruction == "move the thing over there"
    with pytest.raises(BranchError, match="taken"):
        runner.branch(1, "para")
    with pytest.raises(BranchError, match="no step 9"):
        runner.branch(9, "far")


def test_shared_and_independent_modes(policy, task):
    shared = Runner(make_source(task), [slot(policy, "A"), slot(policy, "B", instruction="pick it up")])
    r = shared.reset(seed=3)
    assert set(r.policies) == {"A", "B"} and r.policies["B"].instruction == "pick it up"
    np.testing.assert_array_equal(r.executed_action, r.policies["A"].executed)  # slot 0 drives
    ind = Runner(
        SimSource.from_task(task, width=224, height=224),
        [slot(policy, "A"), slot(policy, "B", instruction="pick it up")],
        mode="independent",
    )
    ind.reset(seed=3)
    first = [*ind.history, *ind.run(1)]
    assert [(x.branch, x.step) for x in first] == [("A", 0), ("B", 0), ("A", 1), ("B", 1)]
    assert ind.history == first
    assert same_image(first[0], first[1])  # same seed, same start
    assert not np.array_equal(first[0].executed_action, first[1].executed_action)  # other instruction


class SeedSpy(Spy):
    """The real policy, with the seed of every act() written down."""

    def act(self, images, instruction, **kw):
        self.asked.append(("seed", kw.get("seed")))
        return self.policy.act(images, instruction, **kw)


def test_one_seeding_rule_episode_seed_times_1000_plus_step(policy, task):
    """act() at step k of the episode of seed s is seeded with s * 1000 + k, for every slot and lane:
    the same episode replays exactly, A and B see the same noise, and another seed is another episode."""
    from workbench.runner import act_seed, run_episode

    spy = SeedSpy(policy)
    runner = Runner(make_source(task), [slot(spy, "A"), slot(spy, "B")], branching=False)
    first = run_episode(runner, 7, max_steps=2)
    assert [s for _, s in spy.asked] == [7000, 7000, 7001, 7001, 7002, 7002]
    assert act_seed(7, 2) == 7002 and len(first) == 3
    for r in first:  # same observation, same instruction, same noise
        np.testing.assert_array_equal(r.policies["A"].chunk.actions, r.policies["B"].chunk.actions)
    again = run_episode(Runner(make_source(task), [slot(policy, "A")], branching=False), 7, max_steps=2)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.executed_action, b.executed_action)
    other = run_episode(Runner(make_source(task), [slot(policy, "A")], branching=False), 8, max_steps=2)
    assert not np.array_equal(first[1].executed_action, other[1].executed_action)
    with pytest.raises(BranchError, match="branching=False"):
        runner.branch(1, "elsewhere")


def test_step_0_carries_what_the_sim_said_at_reset(policy, task):
    """The reset's info (the built-in sim's distances) is step 0's, so triage reads the start too."""
    record = Runner(make_source(task), [slot(policy)]).reset(seed=0)
    assert record.info["episode_seed"] == 0 and record.info["tcp_to_object"] > 0


def test_sinks_get_every_step_and_the_session_replays_as_a_source(policy, task, tmp_path):
    from workbench.sources import EpisodeSource

    writer = SessionStore(tmp_path).create("run1", {"task": task})
    logger = RerunLogger(rrd_path=writer.rrd_path, stream=True)
    runner = Runner(make_source(task), [slot(policy, spatial=True)], sinks=[writer, logger])
    records = [runner.reset(seed=4), *runner.run(2)]
    runner.set_instruction("push it left")
    runner.close()
    by_step = rrd_entities_by_step(writer.rrd_path)
    for r in records:
        assert expected_entities(r) <= by_step[r.step]
        assert (
            "world/camera/A/rollout" in by_step[r.step]
            and "world/camera/ground_truth/boxes" in by_step[r.step]
        )
    session = load_session(writer.path)
    assert [r.step for r in session.records] == [0, 1, 2]
    assert session.edits[0]["instruction"] == "push it left"
    assert same_image(session.records[2], records[2])

    # the saved session as a recorded source: predicted vs recorded actions, no branching
    replay = Runner(EpisodeSource.from_session(writer.path), [slot(policy, spatial=True)])
    replay.reset(seed=4)  # the episode's seed: the same act() noise at every step (one seeding rule)
    out = [*replay.history, *replay.run()]
    assert [r.step for r in out] == [0, 1, 2] and replay.done
    np.testing.assert_array_equal(out[1].recorded_action, records[1].executed_action)
    # lossless images + seeded sampling: the policy says the same on the replayed observation
    np.testing.assert_array_equal(out[0].policies["A"].chunk.actions, records[0].policies["A"].chunk.actions)
    assert out[0].policies["A"].spatial.text == records[0].policies["A"].spatial.text
    with pytest.raises(BranchError, match="recording"):
        replay.branch(0, "nope")


def test_pause_stops_run(policy, task):
    runner = Runner(make_source(task), [slot(policy)])
    runner.reset(seed=0)  # (some random layouts succeed by a random push at step 1: keep it fixed)
    seen = [0]
    for r in runner.run(10):
        seen.append(r.step)
        if r.step == 1:
            runner.pause()
    assert seen == [0, 1]
    assert [r.step for r in runner.run(1)] == [2]


def test_recorded_lerobot_episode_as_a_source(policy):
    from workbench.episodes.lerobot import LeRobotDataset
    from workbench.sources import EpisodeSource

    root = Path(__file__).resolve().parents[1] / "assets" / "episodes" / "sample"
    episode = LeRobotDataset(root).episode(0)
    runner = Runner(EpisodeSource.from_lerobot(root, 0), [slot(policy)])
    records = [runner.reset(), *runner.run(3)]
    assert [r.step for r in records] == [0, 1, 2, 3]
    for r in records:
        frame = episode.frames[r.step]
        np.testing.assert_array_equal(
            r.observation.images[r.observation.main_camera], next(iter(frame.images.values()))
        )
        np.testing.assert_allclose(r.recorded_action, frame.action)  # predicted vs recorded, step by step
        assert r.policies["A"].chunk.ee_path_2d is not None  # tcp + camera are recorded: rollouts work
    assert records[1].info["frame_index"] == 1 and "action_error" in records[1].info
    with pytest.raises(BranchError, match="recording"):
        runner.branch(1, "what-if")
    rest = list(runner.run())
    assert rest[-1].step == len(episode) - 1 and rest[-1].truncated and runner.done
    with pytest.raises(RuntimeError, match="over"):
        runner.step()


def test_background_sinks_write_in_order_and_surface_errors(policy, task, tmp_path):
    writer = SessionStore(tmp_path).create("bg")
    runner = Runner(make_source(task), [slot(policy)], sinks=[writer], background_sinks=True)
    records = [runner.reset(seed=0), *runner.run(2)]
    runner.flush()
    assert [r.step for r in load_session(writer.path).records] == [0, 1, 2]
    runner.close()
    assert [r.step for r in records] == [0, 1, 2]

    class Broken:
        def write(self, record):
            raise OSError("disk full")

        def close(self):
            pass

    runner = Runner(make_source(task), [slot(policy)], sinks=[Broken()], background_sinks=True)
    runner.reset(seed=0)
    with pytest.raises(RuntimeError, match="disk full"):
        runner.flush()


def test_a_policy_that_reads_the_tcp_gets_each_steps_pose(task):
    """ST4VLAConfig.state_tcp: the runner hands the observation's TCP pose to act() with the joints."""
    from workbench.policy import ST4VLAPolicy
    from workbench.policy.configuration import tiny_config

    cfg = tiny_config()
    cfg.action.state_dim, cfg.state_tcp = 12, True  # 9 joints, then the TCP's x, y, z
    state = {"q01": [-3.0] * 9 + [0.0, -0.5, 0.0], "q99": [3.0] * 9 + [1.0, 0.5, 0.6]}
    action = {"q01": [-0.05] * 6 + [0.0], "q99": [0.05] * 6 + [1.0], "mask": [True] * 6 + [False]}
    torch.manual_seed(0)
    policy = ST4VLAPolicy.from_config(cfg, statistics={"sim": {"action": action, "state": state}})
    received = []

    class TcpSpy(Spy):
        config = policy.config

        def act(self, images, instruction, **kw):
            received.append((kw["state"], kw["tcp_pose"]))
            return self.policy.act(images, instruction, **kw)

    runner = Runner(make_source(task), [slot(TcpSpy(policy))])
    records = [runner.reset(seed=0), *runner.run(2)]
    assert len(received) == 3
    for r, (joints, tcp) in zip(records, received, strict=True):
        np.testing.assert_array_equal(tcp, r.observation.tcp_pose)
        np.testing.assert_array_equal(joints, r.observation.state)


# -- a turned robot base: the drawn rollout follows the gripper ------------------------------------------


class ConstantPolicy:
    """Always the same chunk: T copies of one base-frame action (no model, no state)."""

    def __init__(self, action, length=4):
        self.actions = np.tile(np.asarray(action, dtype=np.float64), (length, 1))

    def spatial(self, images, instruction, query="box"):
        raise AssertionError("not asked: spatial_query=None")

    def act(self, images, instruction, **kw):
        from workbench.records import ActionChunk

        return ActionChunk(normalized=self.actions.copy(), actions=self.actions.copy())


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def test_base_rotation_from_base_pose():
    from workbench.controller import base_rotation

    half_turn = base_rotation(np.array([0.35, 0.2, 0.08, 0.0, 0.0, 0.0, 1.0]))  # SimplerEnv's Google robot
    np.testing.assert_allclose(half_turn, np.diag([-1.0, -1.0, 1.0]), atol=1e-12)
    assert base_rotation(None) is None
    path = rollout_path(
        np.array([0.3, 0, 0.2, 1, 0, 0, 0]), np.tile([0.01, 0, 0, 0, 0, 0, 1], (3, 1)), half_turn
    )
    np.testing.assert_allclose(path[-1], [0.27, 0.0, 0.2])  # +x in the base is -x in the world
    with pytest.raises(ValueError, match="quaternion"):
        base_rotation(np.zeros(7))


@pytest.mark.parametrize("yaw", [90.0, 180.0])
def test_the_drawn_path_follows_the_gripper_of_a_turned_base(task, yaw):
    """A known base-frame action, stepped on the built-in sim with a turned base: the rollout the runner
    draws (3-D and projected into the image) points the way the TCP really moves."""
    action = [0.03, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]  # forward, in the base frame
    source = SimSource.from_task(task, width=224, height=224, base_yaw_deg=yaw)
    runner = Runner(source, [PolicySlot("A", ConstantPolicy(action), spatial_query=None, ensemble_horizon=1)])
    first = runner.reset(seed=0)
    obs = first.observation
    assert obs.base_pose is not None and obs.base_pose.shape == (7,)
    records = [first, *runner.run(3)]
    chunk = first.policies["A"].chunk
    tcp = np.array([r.observation.tcp_pose[:3] for r in records])  # [4, 3] where the gripper went
    moved = tcp[-1] - tcp[0]
    assert np.linalg.norm(moved) > 0.03  # the arm really moved
    predicted = chunk.ee_path_3d[3] - chunk.ee_path_3d[0]  # the first three steps of the drawn path
    turned = np.deg2rad(yaw)
    np.testing.assert_allclose(_unit(predicted), [np.cos(turned), np.sin(turned), 0.0], atol=1e-6)
    assert _unit(moved) @ _unit(predicted) > 0.95
    # ... and in the image: the drawn path starts at the gripper and heads where the gripper's pixels went
    cam = obs.cameras[obs.main_camera]
    seen = np.asarray(project_path(cam, tcp).points)  # [4, 2]
    drawn = np.asarray(chunk.ee_path_2d.points)  # [T + 1, 2]
    np.testing.assert_allclose(drawn[0], seen[0], atol=1e-6)
    assert len(drawn) == len(chunk.ee_path_3d)  # every point in front of the camera
    assert _unit(drawn[3] - drawn[0]) @ _unit(seen[-1] - seen[0]) > 0.9
    # without the base rotation the path would point elsewhere (what the runner drew before base_pose)
    unturned = rollout_path(obs.tcp_pose, chunk.actions)
    assert _unit(unturned[3] - unturned[0]) @ _unit(moved) < 0.2
    runner.close()


def test_the_expert_acts_in_the_base_frame_of_a_turned_base(task):
    """The scripted expert's translations are base-frame deltas too: with the base turned a quarter,
    its actions still bring the gripper to the object to move."""
    from workbench.sim import make

    env = make(task, render=False, base_yaw_deg=90.0)
    try:
        obs, info = env.reset(seed=0)
        start = info["tcp_to_object"]
        expert = env.expert()
        for _ in range(6):
            obs, _, _, _, info = env.step(expert.act(obs))
        assert info["tcp_to_object"] < start - 0.15  # 0.40 -> 0.16 m; world-frame deltas reach 0.33 m
    finally:
        env.close()
