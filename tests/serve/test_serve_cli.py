"""`workbench serve --checkpoint PATH`: a saved checkpoint, served from a real subprocess."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import REPO

from workbench.serve import RemotePolicy

ROOT = REPO


@pytest.mark.slow
def test_serve_command_serves_a_saved_checkpoint(tmp_path):
    import torch

    from workbench.policy import ST4VLAPolicy, tiny_config

    torch.set_num_threads(1)
    policy = ST4VLAPolicy.from_config(tiny_config(), name="tiny")
    policy.save(tmp_path / "ckpt")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workbench.cli",
            "serve",
            "--checkpoint",
            str(tmp_path / "ckpt"),
            "--port",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # "serving ckpt on ws://127.0.0.1:PORT (Ctrl-C stops)"
        assert "ws://127.0.0.1:" in line, line
        port = int(line.split("ws://127.0.0.1:")[1].split()[0])
        remote = RemotePolicy.connect(port=port)
        assert remote.client.metadata["checkpoint"] == "ckpt"
        image = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
        chunk = remote.act([image], "open the drawer", num_ddim_steps=2, seed=3)
        local = policy.act([image], "open the drawer", num_ddim_steps=2, seed=3)
        assert np.allclose(chunk.normalized, local.normalized, atol=1e-6)
        remote.client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_command_is_registered():
    out = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "serve", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0 and "--checkpoint" in out.stdout and "10093" not in out.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "serve"], cwd=ROOT, capture_output=True, text=True
    )
    assert missing.returncode == 2 and "--checkpoint" in missing.stderr


@pytest.mark.slow
@pytest.mark.parametrize("state_policy", ["refuse", "mean"])
def test_serve_announces_its_state_policy_for_the_bundled_checkpoint(state_policy):
    """`workbench serve` on a state-reading bundled checkpoint says at start what a stateless request
    (upstream's clients) gets, and the metadata says the same."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "serve", "--checkpoint", "assets/checkpoints/st4vla-tiny",
         "--port", "0", "--state-policy", state_policy],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        port = int(proc.stdout.readline().split("ws://127.0.0.1:")[1].split()[0])
        notice = proc.stdout.readline()
        assert "reads a 9-number robot state" in notice
        assert ("are refused" if state_policy == "refuse" else "mean state") in notice
        remote = RemotePolicy.connect(port=port, unnorm_key="tabletop_panda")
        assert remote.client.metadata["state"]["policy"] == state_policy
        image = np.zeros((224, 224, 3), dtype=np.uint8)
        if state_policy == "refuse":
            with pytest.raises(Exception, match="--state-policy mean"):
                remote.act([image], "pick the can", num_ddim_steps=2)
        else:
            assert remote.act([image], "pick the can", num_ddim_steps=2).actions.shape == (8, 7)
        remote.client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
