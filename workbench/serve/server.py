"""`PolicyServer`: serve a policy over upstream InternVLA-M1's websocket + msgpack-numpy protocol.

Wire protocol (as upstream's deployment/model_server/tools/websocket_policy_server.py; see the package
docstring for the full message shapes): on connect the server sends its metadata map; then each binary
message from the client is one request map and gets one response map:

    request   {"type": "infer" (default) | "predict_action" | "ping" | "spatial", "request_id": ..., and the
               payload either inline or under "payload": batch_images, instructions, unnorm_key, cfg_scale,
               use_ddim, num_ddim_steps (+ this server's optional "seed")}
    response  {"status": "ok", "ok": True, "type": "inference_result", "request_id": ...,
               "data": {"normalized_actions": float32 [B, T, 7], "actions": float32 [B, T, 7] (extension)}}
    error     {"status": "error", "ok": False, "type": ..., "request_id": ..., "error": {"message": ...}}

Unlike upstream, a request that cannot be decoded at all also gets an error map (upstream sends a
traceback as a text frame and closes the connection); the connection and the server keep serving.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import numpy as np
import websockets
import websockets.asyncio.server

from workbench.serve import msgpack_numpy
from workbench.serve.protocol import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    MAX_MESSAGE_BYTES,
    RequestError,
    error_reply,
    parse_infer_request,
    spatial_to_wire,
)

log = logging.getLogger(__name__)


class PolicyServer:
    """Serve `policy` on ws://host:port. Binds 127.0.0.1 unless told otherwise (it runs arbitrary
    inference for anyone who can connect); `port=0` picks a free port (see `.port` after `start()`).

    The policy is either a workbench policy, `act(images, instruction, *, num_ddim_steps, cfg_scale,
    seed) -> ActionChunk` (optionally `spatial(image, instruction) -> SpatialAnswer`), or an upstream
    framework with `predict_action(**request) -> {"normalized_actions": ...}`, which gets the request as is.
    """

    def __init__(
        self,
        policy: Any,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        metadata: dict | None = None,
    ) -> None:
        if not (hasattr(policy, "act") or hasattr(policy, "predict_action")):
            raise TypeError(f"{type(policy).__name__} has neither act(...) nor predict_action(...) to serve")
        self.policy = policy
        self.host = host
        self._port = port
        extensions = ["actions", "seed", "states", "tcp_poses"] + (
            ["spatial"] if hasattr(policy, "spatial") else []
        )
        self.metadata = {"server": "st4vla-workbench", "protocol": "internvla-m1", "extensions": extensions}
        self.metadata |= metadata or {}
        self._lock = threading.Lock()  # one inference at a time: the model is not re-entrant
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.requests_served = 0

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self._port}"

    # --- lifecycle -------------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Block serving until interrupted (Ctrl-C)."""
        try:
            asyncio.run(self._run())
        except KeyboardInterrupt:
            log.info("server stopped")
        if self._error is not None:
            raise self._error

    def start(self, timeout: float = 10.0) -> PolicyServer:
        """Serve from a background thread; returns once the port is bound."""
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._run()), name="policy-server", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"policy server did not start within {timeout} s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def wait(self, timeout: float | None = None) -> None:
        """Block until a server started with `start()` stops."""
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server = await websockets.asyncio.server.serve(
                self._handler, self.host, self._port, compression=None, max_size=MAX_MESSAGE_BYTES
            )
        except OSError as e:
            self._error = OSError(f"cannot serve on {self.host}:{self._port} ({e}); pick another --port")
            self._ready.set()
            return
        self._port = server.sockets[0].getsockname()[1]
        log.info("policy server listening on %s", self.url)
        self._ready.set()
        async with server:
            await self._stop.wait()

    # --- messages --------------------------------------------------------------------------------

    async def _handler(self, ws: websockets.asyncio.server.ServerConnection) -> None:
        await ws.send(msgpack_numpy.packb(self.metadata))
        async for raw in ws:
            # the policy runs in a worker thread so the event loop keeps answering pings meanwhile
            reply = await asyncio.to_thread(self.handle_bytes, raw)
            await ws.send(reply)

    def handle_bytes(self, raw: bytes | str) -> bytes:
        """One request frame -> one response frame; never raises."""
        if isinstance(raw, str):
            reply = error_reply(
                "default", "unknown", "requests must be binary msgpack frames, got a text frame"
            )
        else:
            try:
                msg = msgpack_numpy.unpackb(raw)
            except Exception as e:  # any undecodable bytes: msgpack raises several unrelated types
                reply = error_reply("default", "unknown", f"cannot decode the request as msgpack: {e}")
            else:
                reply = self.handle(msg)
        try:
            return msgpack_numpy.packb(reply)
        except TypeError as e:
            return msgpack_numpy.packb(error_reply("default", "unknown", f"cannot encode the reply: {e}"))

    def handle(self, msg: Any) -> dict:
        """Route one decoded request to the policy; errors become error replies, never exceptions."""
        if not isinstance(msg, dict):
            return error_reply(
                "default", "inference_result", f"a request must be a map, got {type(msg).__name__}"
            )
        req_id = msg.get("request_id", "default")
        mtype = msg.get("type", "infer")
        payload = msg.get("payload", msg)
        if mtype == "ping":
            return {"status": "ok", "ok": True, "type": "ping", "request_id": req_id}
        if mtype not in ("infer", "predict_action", "spatial"):
            return error_reply(req_id, "unknown", f"unsupported message type {mtype!r}")
        rtype = "spatial_result" if mtype == "spatial" else "inference_result"
        if not isinstance(payload, dict):
            return error_reply(req_id, rtype, f"payload must be a map, got {type(payload).__name__}")
        try:
            with self._lock:
                data = self._spatial(payload) if mtype == "spatial" else self._infer(payload)
        except RequestError as e:
            return error_reply(req_id, rtype, str(e))
        except Exception as e:
            log.exception("policy failed on request %s", req_id)
            return error_reply(req_id, rtype, f"{type(e).__name__}: {e}")
        self.requests_served += 1
        return {"status": "ok", "ok": True, "type": rtype, "request_id": req_id, "data": data}

    def _infer(self, payload: dict) -> dict:
        if not hasattr(self.policy, "act"):
            return dict(self.policy.predict_action(**payload))  # upstream framework: its own request handling
        req = parse_infer_request(payload)
        normalized, actions, timings = [], [], []
        states = req.states or [None] * len(req.instructions)
        tcps = req.tcp_poses or [None] * len(req.instructions)
        for views, instruction, state, tcp in zip(
            req.batch_images, req.instructions, states, tcps, strict=True
        ):
            t0 = time.perf_counter()
            extra = {} if state is None else {"state": state}  # policies without a state token never see one
            if tcp is not None:
                extra["tcp_pose"] = tcp
            chunk = self.policy.act(
                views, instruction, num_ddim_steps=req.num_ddim_steps, cfg_scale=req.cfg_scale, seed=req.seed,
                **extra,
            )  # fmt: skip
            timings.append(time.perf_counter() - t0)
            normalized.append(np.asarray(chunk.normalized, dtype=np.float32))
            actions.append(np.asarray(chunk.actions, dtype=np.float32))
        return {
            "normalized_actions": np.stack(normalized),  # [B, T, 7]
            "actions": np.stack(actions),  # [B, T, 7] unnormalised with the server's statistics
            "policy_seconds": np.asarray(timings, dtype=np.float64),  # [B]
        }

    def _spatial(self, payload: dict) -> dict:
        if not hasattr(self.policy, "spatial"):
            raise RequestError(
                f"this server's policy ({type(self.policy).__name__}) does not answer spatial requests"
            )
        views = payload.get("images", [payload.get("image")])
        req = parse_infer_request({"batch_images": [views], "instructions": [payload.get("instruction")]})
        options = {k: payload[k] for k in ("query", "max_new_tokens") if k in payload}
        answer = self.policy.spatial(req.batch_images[0], req.instructions[0], **options)
        return spatial_to_wire(answer)
