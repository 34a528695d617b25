"""The optional robot-state token of the action expert (ActionConfig.state_dim > 0; not upstream)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers import dataset_statistics, randomize_head

from workbench.policy import ST4VLAPolicy, tiny_config
from workbench.policy.checkpoint import CheckpointError
from workbench.policy.extras import robot_state
from workbench.serve import PolicyServer, RemotePolicy

STATE_DIM = 3
STATS = dataset_statistics("toy", state={"q01": [-1.0, 0.0, 0.0], "q99": [1.0, 2.0, 0.04]})


def state_config(state_dim: int = STATE_DIM):
    cfg = tiny_config()
    cfg.action.state_dim = state_dim
    return cfg


@pytest.fixture(scope="module")
def policy() -> ST4VLAPolicy:
    torch.set_num_threads(1)
    p = ST4VLAPolicy.from_config(state_config(), statistics=STATS, seed=0)
    randomize_head(p)
    return p


@pytest.fixture()
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)


def test_actions_depend_on_the_state(policy, image):
    a = policy.act([image], "pick the can", seed=0, state=np.array([0.0, 1.0, 0.02]))
    b = policy.act([image], "pick the can", seed=0, state=np.array([0.0, 1.0, 0.02]))
    c = policy.act([image], "pick the can", seed=0, state=np.array([0.9, 0.1, 0.0]))
    assert np.array_equal(a.normalized, b.normalized)
    assert not np.allclose(a.normalized, c.normalized)


def test_state_is_normalised_with_the_checkpoint_statistics(policy):
    got = policy.state_tensor(np.array([1.0, 0.0, 0.02]))
    assert torch.allclose(got, torch.tensor([[1.0, -1.0, 0.0]]), atol=1e-5)
    # Outside [q01, q99] it is clipped, as the actions are.
    assert policy.state_tensor(np.array([5.0, -3.0, 0.04]))[0, :2].tolist() == [1.0, -1.0]


def test_missing_or_wrong_state_is_a_clear_error(policy, image):
    with pytest.raises(ValueError, match="reads the robot state .*pass state="):
        policy.act([image], "pick the can")
    with pytest.raises(ValueError, match="must have 3 values"):
        policy.act([image], "pick the can", state=np.zeros(9))
    with pytest.raises(ValueError, match="NaN"):
        policy.act([image], "pick the can", state=np.array([0.0, np.nan, 0.0]))


def test_models_without_a_state_token_ignore_the_state(image):
    p = ST4VLAPolicy.from_config(tiny_config(), statistics=STATS, seed=0)
    assert not p.reads_state and p.state_tensor(None) is None
    a = p.act([image], "go", seed=1)
    b = p.act([image], "go", seed=1, state=np.zeros(3))
    assert np.array_equal(a.normalized, b.normalized)
    assert "state_embedder" not in dict(p.model.action_model.net.named_children())


def test_statistics_without_a_state_block_are_refused():
    stats = copy.deepcopy(STATS)
    del stats["toy"]["state"]
    with pytest.raises(CheckpointError, match="no 'state' block"):
        ST4VLAPolicy.from_config(state_config(), statistics=stats)
    with pytest.raises(CheckpointError, match="reads 5 state values .* describe 3"):
        ST4VLAPolicy.from_config(state_config(5), statistics=STATS)


def test_save_load_round_trip_keeps_the_state_token(policy, image, tmp_path):
    policy.save(tmp_path / "ckpt")
    back = ST4VLAPolicy.load(tmp_path / "ckpt")
    assert back.config.action.state_dim == STATE_DIM
    s = np.array([0.3, 1.5, 0.01])
    want = policy.act([image], "pick the can", seed=2, state=s).normalized
    assert np.array_equal(back.act([image], "pick the can", seed=2, state=s).normalized, want)


def test_state_gradient_reaches_the_state_embedder(policy):
    model = policy.model
    vlm = model.qwen_vl_interface
    views = [np.zeros((112, 112, 3), np.uint8)]
    model.train()
    try:
        cond, _ = model.condition(vlm.build_inputs([views], ["go"]), [views])
        loss = model.action_loss(
            torch.rand(1, policy.chunk_length, 7) * 2 - 1, cond, torch.rand(1, STATE_DIM)
        )
        loss.backward()
        with pytest.raises(ValueError, match="reads the robot state"):
            model.action_loss(torch.zeros(1, policy.chunk_length, 7), cond)
    finally:
        model.eval()
    grad = model.action_model.net.state_embedder.mlp[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_the_state_travels_over_the_wire(policy, image):
    s = np.array([0.5, 0.5, 0.03])
    want = policy.act([image], "pick the can", num_ddim_steps=3, seed=4, state=s)
    with PolicyServer(policy, port=0) as server:
        remote = RemotePolicy.connect(port=server.port, image_size=None)
        try:
            got = remote.act([image], "pick the can", num_ddim_steps=3, seed=4, state=s)
            assert np.allclose(got.normalized, want.normalized, atol=1e-6)
            with pytest.raises(Exception, match="reads the robot state"):
                remote.act([image], "pick the can", num_ddim_steps=3, seed=4)
            with pytest.raises(Exception, match="states"):
                remote.client.predict_action(
                    batch_images=[[image]], instructions=["go"], states=[[1.0], [2.0]]
                )
            with pytest.raises(Exception, match=r"states\[0\] must be a flat vector"):
                remote.client.predict_action(
                    batch_images=[[image]], instructions=["go"], states=[["a", "b", "c"]]
                )
            again = remote.act([image], "pick the can", num_ddim_steps=3, seed=4, state=s)  # still serving
            assert np.array_equal(again.normalized, got.normalized)
        finally:
            remote.client.close()


def tcp_policy() -> ST4VLAPolicy:
    """3 joints, then the TCP's x, y, z (ST4VLAConfig.state_tcp)."""
    cfg = state_config(STATE_DIM + 3)
    cfg.state_tcp = True
    stats = copy.deepcopy(STATS)
    stats["toy"]["state"] = {"q01": [-1.0, 0.0, 0.0, 0.2, -0.4, 0.0], "q99": [1.0, 2.0, 0.04, 0.8, 0.4, 0.5]}
    p = ST4VLAPolicy.from_config(cfg, statistics=stats, seed=0)
    randomize_head(p)
    return p


def test_a_tcp_state_needs_the_tcp_pose_and_reads_its_position(image):
    p = tcp_policy()
    s, tcp = np.array([0.5, 0.5, 0.03]), np.array([0.5, 0.1, 0.2, 1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(robot_state(p, s, tcp, tcp=True), [0.5, 0.5, 0.03, 0.5, 0.1, 0.2])
    with pytest.raises(ValueError, match="tcp_pose="):
        p.act([image], "pick the can", num_ddim_steps=3, seed=4, state=s)
    with pytest.raises(ValueError, match="x, y, z"):
        p.act([image], "pick the can", num_ddim_steps=3, seed=4, state=s, tcp_pose=[0.5, 0.1])
    a = p.act([image], "pick the can", num_ddim_steps=3, seed=4, state=s, tcp_pose=tcp).normalized
    moved = tcp.copy()
    moved[1] = -0.3
    b = p.act([image], "pick the can", num_ddim_steps=3, seed=4, state=s, tcp_pose=moved).normalized
    assert not np.allclose(a, b)
    # the orientation is not read: only the position joins the state
    turned = tcp.copy()
    turned[3:] = [0.0, 1.0, 0.0, 0.0]
    c = p.act([image], "pick the can", num_ddim_steps=3, seed=4, state=s, tcp_pose=turned).normalized
    np.testing.assert_allclose(a, c)
    with pytest.raises(ValueError, match="state_tcp needs"):
        cfg = state_config(3)
        cfg.state_tcp = True
        cfg.validate()


def test_the_tcp_pose_travels_over_the_wire(image):
    p = tcp_policy()
    s, tcp = np.array([0.5, 0.5, 0.03]), np.array([0.5, 0.1, 0.2, 1.0, 0.0, 0.0, 0.0])
    want = p.act([image], "pick the can", num_ddim_steps=3, seed=4, state=s, tcp_pose=tcp)
    with PolicyServer(p, port=0) as server:
        remote = RemotePolicy.connect(port=server.port, image_size=None)
        try:
            assert "tcp_poses" in remote.client.metadata["extensions"]
            got = remote.act([image], "pick the can", num_ddim_steps=3, seed=4, state=s, tcp_pose=tcp)
            assert np.allclose(got.normalized, want.normalized, atol=1e-6)
            with pytest.raises(Exception, match="tcp_pose="):
                remote.act([image], "pick the can", num_ddim_steps=3, seed=4, state=s)
            with pytest.raises(Exception, match=r"tcp_poses\[0\] must be a flat vector"):
                remote.client.predict_action(
                    batch_images=[[image]], instructions=["go"], states=[s], tcp_poses=[[np.nan] * 7]
                )
        finally:
            remote.client.close()
