"""Upstream InternVLA-M1's own client code drives `PolicyServer`, and `RemotePolicy` drives servers that
route as upstream's do.

The client is upstream's `WebsocketClientPolicy` and `msgpack_numpy`, copied verbatim under
tests/data/upstream_client/ (origin and licence there). The requests are the ones upstream's SimplerEnv
and LIBERO evaluation clients build (`M1Inference.step` in examples/SimplerEnv/model2simpler_interface.py
and examples/LIBERO/model2libero_interface.py), written out field by field.
"""

from __future__ import annotations

import asyncio
import copy
import sys
import threading
import traceback
import types

import cv2
import numpy as np
import pytest
import websockets.asyncio.server
import websockets.frames
from helpers import REPO

from workbench.policy import ST4VLAPolicy, tiny_config
from workbench.policy.normalization import ActionNormalizer
from workbench.serve import PolicyServer, RemotePolicy, RemotePolicyError

ROOT = REPO
UPSTREAM = ROOT / "tests" / "data" / "upstream_client"


def load_upstream_client() -> types.ModuleType:
    """Upstream's client module, loaded from the verbatim copy as the package `upstream_tools`."""
    if "upstream_tools.websocket_policy_client" in sys.modules:
        return sys.modules["upstream_tools.websocket_policy_client"]
    package = types.ModuleType("upstream_tools")
    package.__path__ = []
    sys.modules["upstream_tools"] = package
    for name in ("msgpack_numpy", "websocket_policy_client"):
        module = types.ModuleType(f"upstream_tools.{name}")
        module.__package__ = "upstream_tools"
        source = (UPSTREAM / f"{name}.py.txt").read_text()
        sys.modules[module.__name__] = module
        exec(compile(source, str(UPSTREAM / f"{name}.py"), "exec"), module.__dict__)
        setattr(package, name, module)
    return sys.modules["upstream_tools.websocket_policy_client"]


def upstream_unnormalize(normalized: np.ndarray, stats: dict) -> np.ndarray:
    """M1Inference.unnormalize_actions of upstream's SimplerEnv / LIBERO clients, restated."""
    mask = stats.get("mask", np.ones_like(stats["q01"], dtype=bool))
    high, low = np.array(stats["q99"]), np.array(stats["q01"])
    normalized = np.clip(normalized, -1, 1)
    normalized[:, 6] = np.where(normalized[:, 6] < 0.5, 0, 1)
    return np.where(mask, 0.5 * (normalized + 1) * (high - low) + low, normalized)


def simpler_request(frame: np.ndarray, instruction: str, unnorm_key: str) -> dict:
    """What upstream's SimplerEnv M1Inference.step sends (image_size [224, 224], cfg 1.5, 10 DDIM steps)."""
    image = cv2.resize(frame, (224, 224), interpolation=cv2.INTER_AREA)
    return {
        "batch_images": [[image]],
        "instructions": [instruction],
        "unnorm_key": unnorm_key,
        "do_sample": False,
        "cfg_scale": 1.5,
        "use_ddim": True,
        "num_ddim_steps": 10,
    }


def libero_request(frames: list[np.ndarray], instruction: str) -> dict:
    """What upstream's LIBERO M1Inference.step sends: no cfg_scale, and unnorm_key None by default."""
    images = [cv2.resize(f, (224, 224), interpolation=cv2.INTER_AREA) for f in frames]
    return {
        "batch_images": [images],
        "instructions": [instruction],
        "unnorm_key": None,
        "do_sample": False,
        "use_ddim": True,
        "num_ddim_steps": 10,
    }


def _frame(seed: int, h: int = 480, w: int = 640) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def upstream():
    return load_upstream_client()


@pytest.fixture(scope="module")
def mean_server(bundled):
    with PolicyServer(bundled, port=0, state_policy="mean") as server:
        yield server


@pytest.fixture()
def client(upstream, mean_server):
    c = upstream.WebsocketClientPolicy(host="127.0.0.1", port=mean_server.port)
    yield c
    c.close()


# -- upstream's client against `workbench serve` -------------------------------------------------


def test_handshake_and_control_messages_answer_as_upstream(client, bundled):
    meta = client.get_server_metadata()
    assert meta["unnorm_keys"] == ["tabletop_panda"] and meta["unnorm_key"] == "tabletop_panda"
    assert meta["state"] == {"reads": True, "dim": 9, "tcp": False, "policy": "mean"}
    assert meta["chunk_length"] == bundled.chunk_length == 8 and "whole chunk" in meta["chunk"]
    init = client.init_device("cuda")  # upstream's {"device": ...} message
    assert (init["status"], init["ok"], init["type"]) == ("ok", True, "init_result")
    client.reset("put the carrot on the plate")  # upstream reads (and drops) the reply
    pong = client.infer({"type": "ping", "request_id": "p1"})
    assert pong == {"status": "ok", "ok": True, "type": "pong", "request_id": "p1"}
    reset = client.infer({"type": "reset", "payload": {"instruction": "go"}})
    assert reset["type"] == "reset_result"


def test_simplerenv_request_gets_the_whole_chunk(client, bundled):
    """Upstream's SimplerEnv client, unmodified, with the bundled checkpoint's key: the state-reading
    checkpoint acts on the mean state (announced), and the reply reads as upstream's client reads it."""
    request = simpler_request(_frame(0), "put the carrot on the plate", "tabletop_panda")
    response = client.infer(request)
    assert response["status"] == "ok", response
    normalized_actions = response["data"]["normalized_actions"][0]  # as M1Inference.step reads it
    assert normalized_actions.shape == (8, 7) and normalized_actions.dtype == np.float32
    assert response["data"]["state_source"] == ["mean"]
    stats = bundled.statistics["tabletop_panda"]["action"]
    client_side = upstream_unnormalize(normalized_actions.astype(np.float64), stats)
    np.testing.assert_allclose(response["data"]["actions"][0], client_side, rtol=1e-5, atol=1e-6)
    # the same request with a seed equals the local policy acting on the statistics' mean state
    seeded = client.infer({**request, "seed": 3})["data"]["normalized_actions"][0]
    mean = np.asarray(bundled.statistics["tabletop_panda"]["state"]["mean"])
    local = bundled.act(request["batch_images"][0], request["instructions"][0], seed=3, state=mean)
    np.testing.assert_allclose(seeded, local.normalized, atol=1e-5)


def test_libero_request_uses_the_default_key(client):
    response = client.infer(libero_request([_frame(1, 256, 256)], "open the top drawer"))
    assert response["status"] == "ok", response
    assert response["data"]["normalized_actions"].shape == (1, 8, 7)
    assert response["data"]["unnorm_key"] == "tabletop_panda"


def test_unknown_unnorm_key_is_refused_by_name(client):
    for key in ("bridge_dataset", "no_such_dataset"):  # upstream's SimplerEnv default, and nonsense
        response = client.infer(simpler_request(_frame(2), "put the spoon on the towel", key))
        assert response["status"] == "error" and "data" not in response
        message = response["error"]["message"]
        assert f"unknown unnorm_key {key!r}" in message and "tabletop_panda" in message
    assert client.infer({"type": "ping"})["type"] == "pong"  # still serving


def test_state_reading_checkpoint_refuses_a_stateless_request_by_default(upstream, bundled):
    with PolicyServer(bundled, port=0) as server:
        c = upstream.WebsocketClientPolicy(host="127.0.0.1", port=server.port)
        try:
            assert c.get_server_metadata()["state"]["policy"] == "refuse"
            response = c.infer(simpler_request(_frame(3), "pick the can", "tabletop_panda"))
            message = response["error"]["message"]
            assert "reads the robot state (9 numbers)" in message and "--state-policy mean" in message
            state = np.asarray(bundled.statistics["tabletop_panda"]["state"]["mean"]) + 0.01
            ok = c.infer({**simpler_request(_frame(3), "pick the can", "tabletop_panda"), "states": [state]})
            assert ok["status"] == "ok" and ok["data"]["state_source"] == ["request"]
        finally:
            c.close()


def test_a_second_key_is_honoured_for_actions_and_state(upstream, bundled):
    """Statistics with two keys: a request naming the other key gets that key's unnormalisation and
    state normalisation, exactly as a local policy set to that key."""
    stats = copy.deepcopy(bundled.statistics)
    other = copy.deepcopy(stats["tabletop_panda"])
    other["action"]["q01"] = [2 * x for x in other["action"]["q01"]]
    other["action"]["q99"] = [3 * x for x in other["action"]["q99"]]
    other["state"]["q01"] = [x - 0.5 for x in other["state"]["q01"]]
    stats["other"] = other
    two = ST4VLAPolicy(bundled.model, stats, unnorm_key="tabletop_panda", name="two-keys")
    state = np.asarray(stats["tabletop_panda"]["state"]["mean"])
    request = {**simpler_request(_frame(4), "stack the block", "other"), "seed": 1, "states": [state]}
    with PolicyServer(two, port=0) as server:
        c = upstream.WebsocketClientPolicy(host="127.0.0.1", port=server.port)
        try:
            assert c.get_server_metadata()["unnorm_keys"] == ["tabletop_panda", "other"]
            data = c.infer(request)["data"]
            default = c.infer({**request, "unnorm_key": "tabletop_panda"})["data"]
        finally:
            c.close()
    assert data["unnorm_key"] == "other" and two.unnorm_key == "tabletop_panda"  # switched back
    want_actions = ActionNormalizer(stats, "other").unnormalize(
        data["normalized_actions"][0].astype(np.float64)
    )
    np.testing.assert_allclose(data["actions"][0], want_actions, rtol=1e-5, atol=1e-6)
    local = ST4VLAPolicy(bundled.model, stats, unnorm_key="other")
    want = local.act(request["batch_images"][0], "stack the block", seed=1, state=state)
    np.testing.assert_allclose(data["normalized_actions"][0], want.normalized, atol=1e-5)
    assert not np.allclose(default["normalized_actions"], data["normalized_actions"])  # the state moved


def test_a_sixteen_action_checkpoint_returns_sixteen(upstream):
    policy = ST4VLAPolicy.from_config(tiny_config(chunk_length=16), name="chunk16")
    with PolicyServer(policy, port=0) as server:
        c = upstream.WebsocketClientPolicy(host="127.0.0.1", port=server.port)
        try:
            assert c.get_server_metadata()["chunk_length"] == 16
            response = c.infer(simpler_request(_frame(5), "pick the can", "default"))
        finally:
            c.close()
    assert response["data"]["normalized_actions"].shape == (1, 16, 7)


# -- RemotePolicy against servers that route as upstream's ----------------------------------------

STATS = {"oxe_bridge": {"action": {"q01": [-0.02] * 6 + [0.0], "q99": [0.03] * 6 + [1.0]}}}


class UpstreamFramework:
    """Shaped like upstream's InternVLA_M1: predict_action(batch_images, instructions, ...) -> a map with
    [B, 16, 7] normalised actions (a deterministic function of the images, the text and the steps)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []

    def predict_action(
        self, batch_images, instructions, cfg_scale=1.5, use_ddim=False, num_ddim_steps=5, **kw
    ):
        self.requests.append({"instructions": instructions, "cfg_scale": cfg_scale, **kw})
        out = []
        for views, text in zip(batch_images, instructions, strict=True):
            level = np.mean([np.asarray(v, dtype=np.float64).mean() for v in views]) / 255.0
            t = np.linspace(-1, 1, 16)[:, None] * np.linspace(0.1, 0.7, 7)[None]
            out.append(np.tanh(t * (level + len(text) / 50.0) * num_ddim_steps / 10.0))
        return {"normalized_actions": np.stack(out).astype(np.float32)}


class UpstreamOldFramework:
    """What upstream's first release's server calls: step(**msg) -> a raw action dict."""

    def step(self, **msg):
        return {"xyz_delta": np.zeros(3), "rotation_delta": np.zeros(3), "open_gripper": np.ones(1)}


def standin_server(policy, route: str):
    """A websocket server that routes as upstream's: "later" calls policy.predict_action(**msg) and returns
    it as "data"; "first" calls policy.step(**msg) and nests it under data.raw_action. Encodes with
    upstream's msgpack_numpy; a failure sends the traceback as text and closes, as upstream's does."""
    mn = load_upstream_client().msgpack_numpy
    ready, port, stop = threading.Event(), [], []

    def route_message(msg: dict) -> dict:
        req_id = msg.get("request_id", "default")
        if msg.get("type") == "ping":
            return {"status": "ok", "ok": True, "type": "pong", "request_id": req_id}
        if route == "later":
            data = policy.predict_action(**msg)
        else:
            data = {"raw_action": policy.step(**msg)}
        return {"status": "ok", "ok": True, "type": "inference_result", "request_id": req_id, "data": data}

    async def handler(ws):
        packer = mn.Packer()
        await ws.send(packer.pack({"env": "simpler_env"}))
        while True:
            try:
                msg = mn.unpackb(await ws.recv())
                await ws.send(packer.pack(route_message(msg)))
            except websockets.ConnectionClosed:
                break
            except Exception:
                await ws.send(traceback.format_exc())
                await ws.close(
                    code=websockets.frames.CloseCode.INTERNAL_ERROR, reason="Internal server error"
                )
                break

    async def main():
        async with websockets.asyncio.server.serve(
            handler, "127.0.0.1", 0, compression=None, max_size=None
        ) as s:
            port.append(s.sockets[0].getsockname()[1])
            stop.append((asyncio.get_running_loop(), asyncio.Event()))
            ready.set()
            await stop[0][1].wait()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(10)

    def close():
        loop, event = stop[0]
        loop.call_soon_threadsafe(event.set)
        thread.join(10)

    return port[0], close


def test_remote_policy_against_upstreams_later_routing():
    framework = UpstreamFramework()
    port, close = standin_server(framework, "later")
    try:
        remote = RemotePolicy.connect(port=port, statistics=STATS, unnorm_key="oxe_bridge")
        assert remote.client.ping()
        frame = _frame(6)
        chunk = remote.act(frame, "put the eggplant in the basket", num_ddim_steps=10, seed=2)
        remote.client.close()
    finally:
        close()
    assert chunk.normalized.shape == (16, 7) and chunk.actions.shape == (16, 7)
    sent = framework.requests[-1]
    assert sent["unnorm_key"] == "oxe_bridge" and sent["do_sample"] is False and sent["seed"] == 2
    image = cv2.resize(frame, (224, 224), interpolation=cv2.INTER_AREA)
    want = framework.predict_action([[image]], ["put the eggplant in the basket"], num_ddim_steps=10)
    np.testing.assert_allclose(chunk.normalized, want["normalized_actions"][0], atol=1e-6)
    client_side = upstream_unnormalize(chunk.normalized.copy(), STATS["oxe_bridge"]["action"])
    np.testing.assert_allclose(chunk.actions, client_side, atol=1e-9)


def test_remote_policy_names_upstreams_first_release_server():
    port, close = standin_server(UpstreamOldFramework(), "first")
    try:
        remote = RemotePolicy.connect(port=port, statistics=STATS, unnorm_key="oxe_bridge")
        with pytest.raises(RemotePolicyError, match="raw_action.*server_policy_M1.py"):
            remote.act(_frame(7), "pick the can")
        remote.client.close()
    finally:
        close()


def test_remote_policy_refuses_a_key_the_server_does_not_have(mean_server):
    with pytest.raises(RemotePolicyError, match="bridge_dataset.*tabletop_panda"):
        RemotePolicy.connect(port=mean_server.port, unnorm_key="bridge_dataset")
