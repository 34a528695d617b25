"""`PolicyClient` speaks upstream's policy protocol; `RemotePolicy` makes a served policy look local.

`PolicyClient` works against our `PolicyServer` and against upstream servers whose inference routing
calls the model's `predict_action(**request)` and returns its map as "data" (InternVLA-M1's
deployment/model_server/server_policy_M1.py releases). Upstream's first release's server
(server_policy.py, September 2025) routes to a `step` method and nests its answer under "raw_action";
`RemotePolicy` names that case instead of failing on a missing key. It reads the metadata frame on
connect, sends one msgpack map per request and returns the response map. `RemotePolicy` wraps it in
the workbench policy API (`act(...) -> ActionChunk`). Upstream servers return only normalised actions;
`RemotePolicy` then unnormalises them on the client with the checkpoint's dataset_statistics.json,
exactly as upstream's SimplerEnv client does.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import websockets
import websockets.sync.client

from workbench.policy.normalization import ActionNormalizer
from workbench.records import ActionChunk
from workbench.serve import msgpack_numpy
from workbench.serve.protocol import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    MAX_MESSAGE_BYTES,
    RemotePolicyError,
    spatial_from_wire,
)
from workbench.spatial import SpatialAnswer


class PolicyClient:
    """A connection to a policy server at ws://host:port (retries until `connect_timeout`)."""

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        connect_timeout: float = 30.0,
        timeout: float | None = 300.0,
    ) -> None:
        self.uri = f"ws://{host}:{port}"
        self.timeout = timeout
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self._ws = websockets.sync.client.connect(
                    self.uri, compression=None, max_size=MAX_MESSAGE_BYTES, open_timeout=connect_timeout
                )
                break
            except (ConnectionRefusedError, OSError) as e:
                if time.monotonic() > deadline:
                    raise ConnectionError(
                        f"no policy server at {self.uri} after {connect_timeout:.0f} s: {e}"
                    ) from e
                time.sleep(0.2)
        self.metadata: dict = msgpack_numpy.unpackb(self._ws.recv(timeout=timeout))

    def infer(self, request: dict) -> dict:
        """Send one request map and return the server's whole response map (upstream `client.infer`)."""
        self._ws.send(msgpack_numpy.packb(request))
        try:
            raw = self._ws.recv(timeout=self.timeout)
        except TimeoutError as e:
            raise TimeoutError(f"{self.uri} gave no answer within {self.timeout} s") from e
        except websockets.ConnectionClosed as e:
            raise RemotePolicyError(f"{self.uri} closed the connection: {e}") from e
        if isinstance(raw, str):  # upstream servers send a traceback as text, then close
            raise RemotePolicyError(f"error in the policy server at {self.uri}:\n{raw}")
        return msgpack_numpy.unpackb(raw)

    def predict_action(self, **request: Any) -> dict:
        """An inference request -> its "data" map ({"normalized_actions": [B, T, 7], ...})."""
        response = self.infer(request)
        if "status" not in response:  # bare openpi-style servers answer with the data itself
            return response
        if not response.get("ok", response.get("status") == "ok"):
            message = (response.get("error") or {}).get("message", "no message")
            raise RemotePolicyError(f"the policy server refused the request: {message}")
        return response["data"]

    def ping(self) -> bool:
        return self.infer({"type": "ping"}).get("status") == "ok"

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RemotePolicy:
    """The workbench policy API over a `PolicyClient`.

    statistics: upstream dataset_statistics.json (dict, file or run dir) to unnormalise with when the
    server returns only normalised actions (upstream servers); our server also returns "actions".
    image_size: views are resized to this square with INTER_AREA before sending, as upstream's clients
    do (None sends them as they are).
    """

    def __init__(
        self,
        client: PolicyClient,
        *,
        statistics: dict | str | Path | None = None,
        unnorm_key: str | None = None,
        image_size: int | None = 224,
        name: str = "remote",
    ) -> None:
        self.client = client
        self.unnorm_key = unnorm_key
        self.image_size = image_size
        self.name = name
        # built now, so a wrong file or key fails here rather than at the first step
        self.normalizer = None if statistics is None else ActionNormalizer(statistics, unnorm_key)
        served_keys = getattr(client, "metadata", {}).get("unnorm_keys")  # our server lists its keys
        if unnorm_key is not None and served_keys and unnorm_key not in served_keys:
            raise RemotePolicyError(
                f"unnorm_key {unnorm_key!r} is not served by {client.uri}: it has statistics for "
                f"{served_keys}; pass one of them"
            )

    @classmethod
    def connect(cls, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, **kwargs: Any) -> RemotePolicy:
        return cls(PolicyClient(host, port), **kwargs)

    def _views(self, images: Any) -> list[np.ndarray]:
        views = list(images.values()) if isinstance(images, dict) else images
        views = [views] if isinstance(views, np.ndarray) and views.ndim == 3 else list(views)
        if self.image_size is not None:
            size = (self.image_size, self.image_size)
            views = [cv2.resize(v, size, interpolation=cv2.INTER_AREA) for v in views]
        return [np.ascontiguousarray(v, dtype=np.uint8) for v in views]

    def act(
        self,
        images: Any,
        instruction: str,
        *,
        num_ddim_steps: int = 10,
        cfg_scale: float = 1.5,
        seed: int | None = None,
        return_internals: bool = False,
        state: Any = None,
        tcp_pose: Any = None,
    ) -> ActionChunk:
        """images: {camera: [H, W, 3]}, a list of views, or one view. Internals (attention) are not
        part of the protocol, so `return_internals` gives the same chunk without them."""
        request = {
            "batch_images": [self._views(images)],
            "instructions": [instruction],
            "unnorm_key": self.unnorm_key,
            "do_sample": False,
            "cfg_scale": float(cfg_scale),
            "use_ddim": True,
            "num_ddim_steps": int(num_ddim_steps),
        }
        if seed is not None:
            request["seed"] = int(seed)  # our extension; upstream servers ignore unknown keys
        if state is not None:
            request["states"] = [np.asarray(state, dtype=np.float64)]  # our extension too
        if tcp_pose is not None:
            request["tcp_poses"] = [np.asarray(tcp_pose, dtype=np.float64)]  # for state_tcp models
        t0 = time.perf_counter()
        data = self.client.predict_action(**request)
        elapsed = time.perf_counter() - t0
        if "normalized_actions" not in data:
            raise RemotePolicyError(
                f"the reply of {self.client.uri} has no 'normalized_actions' (it has {sorted(data)}). "
                + (
                    "A reply nested under 'raw_action' comes from upstream's first release's server, which "
                    "routes to step() and cannot serve the M1 model: serve it with a later release's "
                    "deployment/model_server/server_policy_M1.py (predict_action returned as 'data') or "
                    "with `workbench serve`."
                    if "raw_action" in data
                    else "Serve the policy with upstream's server_policy_M1.py or `workbench serve`."
                )
            )
        normalized = np.asarray(data["normalized_actions"], dtype=np.float64)[0]  # [T, 7]
        if "actions" in data:
            actions = np.asarray(data["actions"], dtype=np.float64)[0]
        elif self.normalizer is not None:
            actions = self.normalizer.unnormalize(normalized)  # upstream's client-side rule
        else:
            raise RemotePolicyError(
                "the server returned only normalised actions; pass statistics= (the checkpoint's "
                "dataset_statistics.json) to RemotePolicy so the client can unnormalise them"
            )
        return ActionChunk(normalized=normalized, actions=actions, timings={"remote": elapsed})

    def spatial(
        self, images: Any, instruction: str, query: str = "box", max_new_tokens: int = 128
    ) -> SpatialAnswer:
        """The policy's spatial answer (geometry in the first view's original pixels). Only our server
        answers this (message type "spatial", a workbench extension); views are sent unresized."""
        if "spatial" not in self.client.metadata.get("extensions", []):
            raise NotImplementedError(
                f"the server at {self.client.uri} does not offer spatial answers: upstream's protocol only "
                "returns actions. Run the checkpoint locally or serve it with `workbench serve` to see them."
            )
        views = list(images.values()) if isinstance(images, dict) else images
        views = [views] if isinstance(views, np.ndarray) and views.ndim == 3 else list(views)
        payload = {
            "images": views,
            "instruction": instruction,
            "query": query,
            "max_new_tokens": int(max_new_tokens),
        }
        response = self.client.infer({"type": "spatial", "payload": payload})
        if not response.get("ok"):
            raise RemotePolicyError(f"spatial request failed: {(response.get('error') or {}).get('message')}")
        return spatial_from_wire(response["data"])
