"""The policy server and client over real websockets on 127.0.0.1, with a small real torch policy."""

from __future__ import annotations

import json
import threading

import msgpack
import numpy as np
import pytest
import torch
import websockets.sync.client

from workbench.policy.normalization import ActionNormalizer, UnnormKeyError
from workbench.records import ActionChunk
from workbench.serve import (
    PolicyClient,
    PolicyServer,
    RemotePolicy,
    RemotePolicyError,
)
from workbench.serve import msgpack_numpy as mn
from workbench.serve.served import ServeLimits
from workbench.spatial import Box, Frame, SpatialAnswer

T = 8
STATS = {
    "toy": {
        "action": {
            "q01": [-0.05, -0.04, -0.03, -0.2, -0.2, -0.2, 0.0],
            "q99": [0.05, 0.06, 0.03, 0.2, 0.1, 0.2, 1.0],
            "mask": [True, True, True, True, True, True, False],
        }
    }
}


class TinyTorchPolicy(torch.nn.Module):
    """A small real policy: a conv encoder of the views plus an instruction embedding -> a [T, 7]
    chunk, with seeded noise refined over `num_ddim_steps` steps, so every argument changes the output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 5, stride=4)
        self.text = torch.nn.Embedding(256, 8)
        self.head = torch.nn.Linear(16 + 7, 7)
        self.normalizer = ActionNormalizer(STATS)

    @torch.no_grad()
    def act(self, images, instruction, *, num_ddim_steps=5, cfg_scale=1.5, seed=None, return_internals=False):
        if instruction == "explode":
            raise RuntimeError("the policy failed on purpose")
        views = list(images.values()) if isinstance(images, dict) else images
        x = torch.stack([torch.from_numpy(np.asarray(v)).permute(2, 0, 1).float() / 255 for v in views])
        img = self.conv(x).mean(dim=(0, 2, 3))  # [8]
        txt = self.text(torch.tensor(list(instruction.encode()[:64]) or [0])).mean(0)  # [8]
        g = torch.Generator().manual_seed(0 if seed is None else seed)
        a = torch.randn(T, 7, generator=g)
        for _ in range(num_ddim_steps):
            features = torch.cat([torch.cat([img, txt]).expand(T, -1), a], dim=1)  # [T, 16 + 7]
            a = a + 0.5 * (torch.tanh(self.head(features)) * cfg_scale - a)
        normalized = a.clamp(-1, 1).double().numpy()
        return ActionChunk(normalized=normalized, actions=self.normalizer.unnormalize(normalized))

    def spatial(self, images, instruction, query="box", max_new_tokens=128):
        """Box around the brightest pixel of the first view: a real computation on the image."""
        image = images[0] if isinstance(images, list) else images
        gray = torch.from_numpy(image).float().mean(-1)
        y, x = divmod(int(gray.argmax()), gray.shape[1])
        h, w = gray.shape
        box = Box(
            float(max(x - 5, 0)), float(max(y - 5, 0)), float(min(x + 5, w)), float(min(y + 5, h)), "bright"
        )
        return SpatialAnswer(text=json.dumps([{"label": "bright"}]), geometry=[box], frame=Frame(w, h, w, h))


class UpstreamStylePolicy:
    """Shaped like upstream's InternVLA_M1 framework: predict_action(**request) -> normalised only."""

    def __init__(self) -> None:
        self.inner = TinyTorchPolicy()
        self.requests: list[dict] = []

    def predict_action(
        self, batch_images, instructions, cfg_scale=1.5, use_ddim=True, num_ddim_steps=5, **kwargs
    ):
        self.requests.append({"instructions": instructions, **kwargs})
        chunks = [
            self.inner.act(v, s, num_ddim_steps=num_ddim_steps, cfg_scale=cfg_scale).normalized
            for v, s in zip(batch_images, instructions, strict=True)
        ]
        return {"normalized_actions": np.stack(chunks).astype(np.float32)}


def _image(seed: int, h: int = 64, w: int = 80) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def policy():
    return TinyTorchPolicy()


@pytest.fixture(scope="module")
def server(policy):
    with PolicyServer(policy, port=0) as s:
        yield s


@pytest.fixture()
def client(server):
    with PolicyClient(port=server.port, connect_timeout=5, timeout=30) as c:
        yield c


# -- msgpack-numpy encoding ---------------------------------------------------------------------


def test_ndarray_wire_layout_matches_openpi():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    raw = msgpack.unpackb(mn.packb({"x": a, "n": np.int64(7)}))  # plain msgpack sees the layout
    assert raw["x"] == {b"__ndarray__": True, b"data": a.tobytes(), b"dtype": "<f4", b"shape": [2, 3]}
    assert raw["n"] == {b"__npgeneric__": True, b"data": 7, b"dtype": "<i8"}


def test_decodes_the_documented_layout_built_by_hand():
    img = _image(0, 4, 5)
    wire = msgpack.packb({b"__ndarray__": True, b"data": img.tobytes(), b"dtype": "|u1", b"shape": [4, 5, 3]})
    out = mn.unpackb(wire)
    assert out.dtype == np.uint8 and np.array_equal(out, img)
    out[0, 0, 0] = 1  # decoded arrays are writable copies
    assert np.array_equal(
        mn.unpackb(msgpack.packb({"__ndarray__": True, "data": b"\x01\x00", "dtype": "<i2", "shape": [1]})),
        [1],
    )


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_]
)
def test_round_trip_dtypes(dtype):
    a = (np.random.default_rng(1).normal(size=(3, 2, 4)) * 10).astype(dtype)
    b = mn.unpackb(mn.packb({"a": a, "nested": [a[0], {"s": a[0, 0, 0]}]}))
    assert b["a"].dtype == a.dtype and np.array_equal(b["a"], a)
    assert np.array_equal(b["nested"][0], a[0]) and b["nested"][1]["s"] == a[0, 0, 0]
    assert np.array_equal(mn.unpackb(mn.packb(np.asfortranarray(a))), a)  # non-contiguous input


def test_refuses_object_arrays_and_bad_sizes():
    with pytest.raises(TypeError, match="object"):
        mn.packb(np.array([{}, None], dtype=object))
    bad = msgpack.packb({b"__ndarray__": True, b"data": b"\x00" * 5, b"dtype": "<f4", b"shape": [2]})
    with pytest.raises(mn.ArrayDecodeError, match="wrong size"):
        mn.unpackb(bad)
    obj = msgpack.packb({b"__ndarray__": True, b"data": b"\x00" * 8, b"dtype": "|O", b"shape": [1]})
    with pytest.raises(mn.ArrayDecodeError):
        mn.unpackb(obj)


# -- server and client --------------------------------------------------------------------------


def test_defaults_are_local_and_upstream_port(policy):
    s = PolicyServer(policy)
    assert (s.host, s.port) == ("127.0.0.1", 10093)
    with pytest.raises(TypeError, match="act"):
        PolicyServer(object())


def test_round_trip_actions_equal_the_policy_output(policy, client):
    assert client.metadata["protocol"] == "internvla-m1" and "spatial" in client.metadata["extensions"]
    views = [_image(1), _image(2)]
    want = policy.act(views, "put the carrot on the plate", num_ddim_steps=3, cfg_scale=1.2, seed=4)
    response = client.infer(
        {
            "batch_images": [views],
            "instructions": ["put the carrot on the plate"],
            "unnorm_key": "toy",
            "do_sample": False,
            "cfg_scale": 1.2,
            "use_ddim": True,
            "num_ddim_steps": 3,
            "seed": 4,
            "request_id": "r1",
        }
    )
    assert (response["status"], response["ok"], response["type"], response["request_id"]) == (
        "ok",
        True,
        "inference_result",
        "r1",
    )
    data = response["data"]
    assert data["normalized_actions"].shape == (1, T, 7) and data["normalized_actions"].dtype == np.float32
    assert np.array_equal(data["normalized_actions"][0], want.normalized.astype(np.float32))
    assert np.array_equal(data["actions"][0], want.actions.astype(np.float32))
    # a different seed or step count changes the answer: the arguments really reach the policy
    other = client.predict_action(
        batch_images=[views],
        instructions=["put the carrot on the plate"],
        num_ddim_steps=3,
        cfg_scale=1.2,
        seed=5,
    )
    assert not np.array_equal(other["normalized_actions"], data["normalized_actions"])


def test_batch_of_two(policy, client):
    data = client.predict_action(
        batch_images=[[_image(3)], [_image(4)]], instructions=["a", "b"], num_ddim_steps=2, seed=0
    )
    assert data["normalized_actions"].shape == (2, T, 7)
    for b, (img, s) in enumerate([(_image(3), "a"), (_image(4), "b")]):
        want = policy.act([img], s, num_ddim_steps=2, seed=0).normalized.astype(np.float32)
        assert np.array_equal(data["normalized_actions"][b], want)


def test_remote_policy_matches_local(policy, server):
    remote = RemotePolicy.connect(port=server.port, image_size=None)
    images = {"image": _image(5)}
    chunk = remote.act(images, "pick the can", num_ddim_steps=4, cfg_scale=1.5, seed=1)
    want = policy.act(images, "pick the can", num_ddim_steps=4, cfg_scale=1.5, seed=1)
    assert isinstance(chunk, ActionChunk) and chunk.timings["remote"] > 0
    assert np.allclose(chunk.normalized, want.normalized, atol=1e-6)
    assert np.allclose(chunk.actions, want.actions, atol=1e-6)
    answer = remote.spatial(_image(6), "where is it")
    assert answer.geometry == policy.spatial(_image(6), "where is it").geometry
    assert answer.frame == Frame(80, 64, 80, 64)
    remote.client.close()


def test_malformed_requests_get_errors_and_serving_continues(server):
    with websockets.sync.client.connect(f"ws://127.0.0.1:{server.port}") as ws:
        mn.unpackb(ws.recv(timeout=10))  # metadata

        def ask(frame):
            ws.send(frame)
            return mn.unpackb(ws.recv(timeout=30))

        good = {"batch_images": [[_image(7)]], "instructions": ["go"], "num_ddim_steps": 2}
        bad_requests = {
            "text frame": "hello",
            "garbage bytes": b"\xc1\xff\x00",
            "not a map": mn.packb([1, 2, 3]),
            "no images": mn.packb({"instructions": ["go"]}),
            "float image": mn.packb({**good, "batch_images": [[_image(7).astype(np.float32)]]}),
            "grey image": mn.packb({**good, "batch_images": [[_image(7)[..., 0]]]}),
            "count mismatch": mn.packb({**good, "instructions": ["go", "again"]}),
            "ddpm": mn.packb({**good, "use_ddim": False}),
            "bad steps": mn.packb({**good, "num_ddim_steps": 0}),
            "unknown type": mn.packb({"type": "dance"}),
            "policy raises": mn.packb({**good, "instructions": ["explode"]}),
        }
        expected = {
            "text frame": "binary",
            "garbage bytes": "msgpack",
            "not a map": "map",
            "no images": "batch_images",
            "float image": "uint8",
            "grey image": "[H, W, 3]",
            "count mismatch": "instructions",
            "ddpm": "use_ddim",
            "bad steps": "num_ddim_steps",
            "unknown type": "dance",
            "policy raises": "on purpose",
        }
        for name, frame in bad_requests.items():
            reply = ask(frame)
            assert reply["status"] == "error" and reply["ok"] is False, name
            assert expected[name] in reply["error"]["message"], (name, reply["error"]["message"])
        assert ask(mn.packb(good))["status"] == "ok"  # the same connection still serves
        assert ask(mn.packb({"type": "ping", "request_id": 9})) == {
            "status": "ok",
            "ok": True,
            "type": "pong",  # as upstream's server answers
            "request_id": 9,
        }
    with PolicyClient(port=server.port) as c:  # and so does a new one
        assert c.ping()
        with pytest.raises(RemotePolicyError, match="on purpose"):
            c.predict_action(batch_images=[[_image(8)]], instructions=["explode"])


def test_upstream_style_server_and_client_side_unnormalisation():
    upstream = UpstreamStylePolicy()
    with PolicyServer(upstream, port=0) as s:
        remote = RemotePolicy.connect(port=s.port, statistics=STATS, unnorm_key="toy")
        chunk = remote.act(_image(9, 300, 400), "stack the block", num_ddim_steps=3, seed=2)
        # the client resized to 224x224 as upstream's clients do, and sent their fields
        assert upstream.requests[-1]["unnorm_key"] == "toy" and upstream.requests[-1]["do_sample"] is False
        want = ActionNormalizer(STATS, "toy").unnormalize(chunk.normalized)
        assert np.array_equal(chunk.actions, want)
        with pytest.raises(NotImplementedError, match="spatial"):
            remote.spatial(_image(9), "where")
        with pytest.raises(RemotePolicyError, match="at most 1000"):  # the limits hold for it too
            remote.act(_image(9), "stack " * 400)
        bare = RemotePolicy(remote.client)  # no statistics: a clear error, not raw numbers
        with pytest.raises(RemotePolicyError, match="statistics"):
            bare.act(_image(9), "stack the block")
        remote.client.close()


def test_remote_unnormalisation_follows_upstream_rule():
    """The rule of upstream's SimplerEnv client, computed by hand for the toy statistics."""
    normalizer = RemotePolicy(client=None, statistics=STATS, unnorm_key="toy")  # no connection needed
    a = np.array([[-2.0, 0.0, 1.0, 0.5, -1.0, 0.25, 0.49], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5]])
    out = normalizer.normalizer.unnormalize(a)
    assert np.allclose(out[0, :6], [-0.05, 0.01, 0.03, 0.1, -0.2, 0.05])
    assert out[0, 6] == 0.0 and out[1, 6] == 1.0  # gripper binarised at 0.5, mask=False keeps it
    with pytest.raises(UnnormKeyError, match="bridge_dataset"):
        RemotePolicy(client=None, statistics=STATS, unnorm_key="bridge_dataset")


def test_port_in_use_is_a_clear_error(policy, server):
    with pytest.raises(OSError, match="--port"):
        PolicyServer(policy, port=server.port).start()


def test_client_without_server_fails_clearly():
    with pytest.raises(ConnectionError, match="no policy server"):
        PolicyClient(port=1, connect_timeout=0.3)


# -- against independent implementations of the upstream side ------------------------------------


def _openpi_default(obj):
    """openpi's array hook, written from its documented layout (not our encoder)."""
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    raise TypeError(type(obj))


def _openpi_hook(obj):
    if b"__ndarray__" in obj:
        return np.ndarray(buffer=obj[b"data"], dtype=np.dtype(obj[b"dtype"]), shape=obj[b"shape"])
    return obj


def test_an_upstream_style_client_is_served(policy, server):
    """Encode and decode as upstream's client does, with plain msgpack + openpi hooks."""
    image = _image(11, 224, 224)
    with websockets.sync.client.connect(
        f"ws://127.0.0.1:{server.port}", compression=None, max_size=None
    ) as ws:
        metadata = msgpack.unpackb(ws.recv(timeout=10), object_hook=_openpi_hook)
        assert metadata["server"] == "st4vla-workbench"
        request = {
            "batch_images": [[image]],
            "instructions": ["Put the spoon on the towel"],
            "unnorm_key": "bridge_dataset",
            "do_sample": False,
            "cfg_scale": 1.5,
            "use_ddim": True,
            "num_ddim_steps": 10,
        }
        ws.send(msgpack.Packer(default=_openpi_default).pack(request))
        response = msgpack.unpackb(ws.recv(timeout=30), object_hook=_openpi_hook)
    normalized_actions = response["data"]["normalized_actions"][0]  # as upstream's M1Inference.step reads it
    want = policy.act([image], "Put the spoon on the towel", num_ddim_steps=10, cfg_scale=1.5)
    assert np.array_equal(normalized_actions, want.normalized.astype(np.float32))


def test_client_reports_an_upstream_server_traceback():
    """Upstream's server answers an internal failure with a text frame (the traceback), then closes."""
    import asyncio
    import threading

    import websockets.asyncio.server

    ready, port = threading.Event(), []

    async def handler(ws):
        await ws.send(msgpack.packb({}))
        await ws.recv()
        await ws.send("Traceback (most recent call last):\n  ...\nCUDA out of memory")
        await ws.close()

    async def main():
        async with websockets.asyncio.server.serve(handler, "127.0.0.1", 0) as srv:
            port.append(srv.sockets[0].getsockname()[1])
            ready.set()
            await asyncio.sleep(5)

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(5)
    remote = RemotePolicy.connect(port=port[0], statistics=STATS)
    assert "spatial" not in remote.client.metadata.get("extensions", [])
    with pytest.raises(RemotePolicyError, match="CUDA out of memory"):
        remote.act(_image(12), "pick")
    remote.client.close()


# -- hostile and heavy requests -------------------------------------------------------------------


def test_undecodable_frames_say_what_was_wrong(server):
    """msgpack raises some errors with an empty message; the reply still says what went wrong."""
    with websockets.sync.client.connect(f"ws://127.0.0.1:{server.port}") as ws:
        mn.unpackb(ws.recv(timeout=10))
        for frame, kind in [
            (b"\xc1", "FormatError"),
            (b"\x91" * 5000, "StackError"),
            (b"\x92\x01", "incomplete"),
        ]:
            ws.send(frame)
            message = mn.unpackb(ws.recv(timeout=10))["error"]["message"]
            assert kind in message and "send one msgpack map per binary frame" in message, message
            assert frame[:4].hex() in message


class BlockingPolicy:
    """Holds the model until released: what a long request looks like to other clients."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()

    def act(self, images, instruction, *, num_ddim_steps=5, cfg_scale=1.5, seed=None, return_internals=False):
        self.started.set()
        assert self.release.wait(30), "never released"
        a = np.zeros((T, 7))
        return ActionChunk(normalized=a, actions=a)


def test_refusals_and_pings_are_answered_while_the_model_runs():
    policy = BlockingPolicy()
    good = {"batch_images": [[_image(20)]], "instructions": ["pick the can"]}
    with PolicyServer(policy, port=0, limits=ServeLimits(max_queue=1)) as s:
        replies = {}
        first = PolicyClient(port=s.port)
        runner = threading.Thread(target=lambda: replies.setdefault("first", first.infer(good)))
        runner.start()
        assert policy.started.wait(10)
        with PolicyClient(port=s.port, timeout=20) as other:
            long = other.infer({**good, "instructions": ["pick the can " * 8000]})  # ~100 KB
            assert long["status"] == "error" and "104000 characters" in long["error"]["message"]
            assert "at most 1000" in long["error"]["message"]
            assert other.infer({"type": "ping"})["type"] == "pong"
            busy = other.infer(good)  # one job holds the model and the queue is 1 long
            assert busy["status"] == "error" and "busy" in busy["error"]["message"]
            batch = other.infer({"batch_images": [[_image(20)]] * 17, "instructions": ["go"] * 17})
            assert (
                "at most 16" in batch["error"]["message"] and "split the batch" in batch["error"]["message"]
            )
            assert runner.is_alive() and not policy.release.is_set()  # all answered while it ran
            policy.release.set()
            runner.join(10)
            assert replies["first"]["status"] == "ok"
            assert other.infer(good)["status"] == "ok"  # and the second client is served after it
        first.close()
