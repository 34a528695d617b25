"""Serving the real ST4VLA policy (a tiny random one): what a remote client gets is what the policy says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.serve import PolicyClient, PolicyServer, RemotePolicy

policy_mod = pytest.importorskip("workbench.policy")


@pytest.fixture(scope="module")
def policy():
    torch.set_num_threads(1)
    return policy_mod.ST4VLAPolicy.from_config(policy_mod.tiny_config())


@pytest.fixture(scope="module")
def served(policy):
    with PolicyServer(policy, port=0) as server:
        yield server


def test_remote_act_equals_local(policy, served):
    image = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    remote = RemotePolicy.connect(port=served.port)
    chunk = remote.act(
        {"image": image}, "put the carrot on the plate", num_ddim_steps=3, cfg_scale=1.5, seed=7
    )
    local = policy.act([image], "put the carrot on the plate", num_ddim_steps=3, cfg_scale=1.5, seed=7)
    assert chunk.normalized.shape == (policy.chunk_length, 7)
    assert np.allclose(chunk.normalized, local.normalized, atol=1e-6)
    assert np.allclose(chunk.actions, local.actions, atol=1e-6)
    remote.client.close()


def test_upstream_request_shape_and_remote_spatial(policy, served):
    image = np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    with PolicyClient(port=served.port) as client:
        # exactly what upstream's SimplerEnv client sends (no seed: the policy samples fresh noise)
        response = client.infer(
            {
                "batch_images": [[image]],
                "instructions": ["pick the can"],
                "unnorm_key": "default",
                "do_sample": False,
                "cfg_scale": 1.5,
                "use_ddim": True,
                "num_ddim_steps": 10,
            }
        )
        assert response["status"] == "ok"
        assert response["data"]["normalized_actions"].shape == (1, policy.chunk_length, 7)
        remote = RemotePolicy(client)
        answer = remote.spatial([image], "pick the can", max_new_tokens=12)
    local = policy.spatial([image], "pick the can", max_new_tokens=12)
    assert answer.text == local.text and answer.geometry == local.geometry
    assert answer.frame == local.frame and answer.problems == local.problems


def test_instructions_over_the_token_cap_are_refused(policy, served):
    """Within the character cap but over the token cap (counted with the checkpoint's tokenizer)."""
    image = np.zeros((112, 112, 3), dtype=np.uint8)
    text = " ".join(str(i) for i in range(300))  # one token per number: ~300+ tokens in ~1,100 chars
    text = text[: served.limits.max_instruction_chars]
    assert len(text) <= served.limits.max_instruction_chars
    with PolicyClient(port=served.port) as client:
        assert client.metadata["limits"]["max_instruction_tokens"] == 256
        response = client.infer({"batch_images": [[image]], "instructions": [text]})
        assert response["status"] == "error"
        assert "tokens long" in response["error"]["message"] and "at most 256" in response["error"]["message"]
        ok = client.infer({"batch_images": [[image]], "instructions": [text[:200]], "num_ddim_steps": 2})
        assert ok["status"] == "ok"
