"""`PolicyServer`: serve a policy over upstream InternVLA-M1's websocket + msgpack-numpy protocol.

Wire protocol (as upstream's deployment/model_server/tools/websocket_policy_server.py; see the package
docstring for the full message shapes): on connect the server sends its metadata map; then each binary
message from the client is one request map and gets one response map:

    request   {"type": "infer" (default) | "predict_action" | "spatial" | "ping" | "init" | "reset",
               "request_id": ..., and the payload either inline or under "payload": batch_images,
               instructions, unnorm_key, cfg_scale, use_ddim, num_ddim_steps (+ the extensions)}
    response  {"status": "ok", "ok": True, "type": "inference_result", "request_id": ...,
               "data": {"normalized_actions": float32 [B, T, 7], "actions": float32 [B, T, 7] (extension)}}
    control   as upstream's server: {"type": "ping"} -> type "pong"; {"type": "init"} or a map with a
              "device" key (upstream's client.init_device) -> type "init_result"; {"type": "reset"} or a map
              with a "reset" key (upstream's client.reset) -> type "reset_result". This server keeps no
              per-episode state, so init and reset only acknowledge.
    error     {"status": "error", "ok": False, "type": ..., "request_id": ..., "error": {"message": ...}}

Unlike upstream, a request that cannot be decoded at all also gets an error map (upstream sends a
traceback as a text frame and closes the connection); the connection and the server keep serving.

Concurrency: decoding and checking a request (limits, unnorm_key, state policy) run in worker threads
and never wait for the model, so a refusal, a ping or the metadata handshake is answered while another
client's request runs. The model itself runs in one dedicated thread (it is not re-entrant), one job at
a time; when more than `limits.max_queue` jobs wait for it, further ones are refused as busy.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Any

import websockets
import websockets.asyncio.server

from workbench.serve import msgpack_numpy
from workbench.serve.protocol import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    MAX_MESSAGE_BYTES,
    RequestError,
    error_reply,
)
from workbench.serve.served import Job, ServedPolicy, ServeLimits

log = logging.getLogger(__name__)

CONTROL_TYPES = ("ping", "init", "reset")
WORK_TYPES = ("infer", "predict_action", "spatial")


class PolicyServer:
    """Serve `policy` on ws://host:port. Binds 127.0.0.1 unless told otherwise (it runs arbitrary
    inference for anyone who can connect); `port=0` picks a free port (see `.port` after `start()`).

    The policy is either a workbench policy, `act(images, instruction, *, num_ddim_steps, cfg_scale,
    seed) -> ActionChunk` (optionally `spatial(image, instruction) -> SpatialAnswer`), or an upstream
    framework with `predict_action(**request) -> {"normalized_actions": ...}`, which gets the request as is.
    `state_policy` ("refuse" | "mean" | "zeros") says what a state-reading checkpoint gets when a client
    sends no state (see `workbench.serve.served`); `limits` bounds what one request may ask for.
    """

    def __init__(
        self,
        policy: Any,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        metadata: dict | None = None,
        *,
        state_policy: str = "refuse",
        limits: ServeLimits | None = None,
    ) -> None:
        self.served = ServedPolicy(policy, state_policy=state_policy, limits=limits)
        self.policy = policy
        self.host = host
        self._port = port
        extensions = ["actions", "seed", "states", "tcp_poses", "unnorm_keys"] + (
            ["spatial"] if hasattr(policy, "spatial") else []
        )
        self.metadata = {
            "server": "st4vla-workbench",
            "protocol": "internvla-m1",
            "extensions": extensions,
            "control": list(CONTROL_TYPES),
        }
        self.metadata |= self.served.metadata()
        self.metadata |= metadata or {}
        self._model = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="policy-model")
        self._waiting = 0  # jobs submitted to the model thread and not finished (event loop only)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.requests_served = 0

    @property
    def limits(self) -> ServeLimits:
        return self.served.limits

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
        self._model.shutdown(wait=False, cancel_futures=True)

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
            await ws.send(await self._answer(raw))

    async def _answer(self, raw: bytes | str) -> bytes:
        """One frame -> one reply frame. Checks run in a worker thread, the model in its own thread."""
        reply = await asyncio.to_thread(self.prepare_bytes, raw)
        if isinstance(reply, tuple):  # (request_id, reply type, job): work for the model
            req_id, rtype, job = reply
            if self._waiting >= self.limits.max_queue:
                reply = error_reply(
                    req_id, rtype,
                    f"the server is busy: {self._waiting} requests are waiting for the model (at most "
                    f"{self.limits.max_queue}); retry shortly",
                )  # fmt: skip
            else:
                self._waiting += 1
                try:
                    fut = asyncio.get_running_loop().run_in_executor(
                        self._model, self.run_job, req_id, rtype, job
                    )
                    reply = await fut
                finally:
                    self._waiting -= 1
        return self._pack(reply)

    @staticmethod
    def _pack(reply: dict) -> bytes:
        try:
            return msgpack_numpy.packb(reply)
        except TypeError as e:
            return msgpack_numpy.packb(error_reply("default", "unknown", f"cannot encode the reply: {e}"))

    def handle_bytes(self, raw: bytes | str) -> bytes:
        """One request frame -> one response frame, synchronously (checks and model); never raises."""
        prepared = self.prepare_bytes(raw)
        return self._pack(self.run_job(*prepared) if isinstance(prepared, tuple) else prepared)

    def prepare_bytes(self, raw: bytes | str) -> dict | tuple[Any, str, Job]:
        """Decode and check one frame: a reply map (control messages, refusals) or work for the model."""
        if isinstance(raw, str):
            return error_reply(
                "default", "unknown", "requests must be binary msgpack frames, got a text frame"
            )
        try:
            msg = msgpack_numpy.unpackb(raw)
        except Exception as e:  # any undecodable bytes: msgpack raises several unrelated types
            detail = str(e) or "no detail from msgpack"
            return error_reply(
                "default",
                "unknown",
                f"cannot decode the request as msgpack ({type(e).__name__}: {detail}; {len(raw)} bytes "
                f"starting {raw[:8].hex()}): send one msgpack map per binary frame",
            )
        return self.prepare(msg)

    def prepare(self, msg: Any) -> dict | tuple[Any, str, Job]:
        """Route one decoded request: control messages and refusals are answered here (never waiting
        for the model); work comes back as (request_id, reply type, Job)."""
        if not isinstance(msg, dict):
            return error_reply(
                "default", "inference_result", f"a request must be a map, got {type(msg).__name__}"
            )
        req_id = msg.get("request_id", "default")
        mtype = msg.get("type")
        payload = msg.get("payload", msg)
        if mtype is None:  # upstream's implicit routing: init_device sends {"device"}, reset {"reset"}
            mtype = "init" if "device" in msg else "reset" if "reset" in msg else "infer"
        if mtype in CONTROL_TYPES:
            return self._control(mtype, req_id)
        if mtype not in WORK_TYPES:
            return error_reply(
                req_id,
                "unknown",
                f"unsupported message type {mtype!r}; use one of {CONTROL_TYPES + WORK_TYPES}",
            )
        rtype = "spatial_result" if mtype == "spatial" else "inference_result"
        if not isinstance(payload, dict):
            return error_reply(req_id, rtype, f"payload must be a map, got {type(payload).__name__}")
        try:
            job = self.served.check(payload, "spatial" if mtype == "spatial" else "infer")
        except RequestError as e:
            log.info("refused request %s: %s", req_id, e)
            return error_reply(req_id, rtype, str(e))
        return req_id, rtype, job

    def _control(self, mtype: str, req_id: Any) -> dict:
        reply = {"status": "ok", "ok": True, "request_id": req_id}
        if mtype == "ping":
            return reply | {"type": "pong"}
        if mtype == "init":
            return reply | {"type": "init_result", "device": str(getattr(self.policy, "device", "cpu"))}
        return reply | {"type": "reset_result"}

    def run_job(self, req_id: Any, rtype: str, job: Job) -> dict:
        """Run checked work on the policy; errors become error replies, never exceptions."""
        try:
            data = self.served.run(job)
        except RequestError as e:
            return error_reply(req_id, rtype, str(e))
        except Exception as e:
            log.exception("policy failed on request %s", req_id)
            return error_reply(req_id, rtype, f"{type(e).__name__}: {e}")
        self.requests_served += 1
        return {"status": "ok", "ok": True, "type": rtype, "request_id": req_id, "data": data}

    def handle(self, msg: Any) -> dict:
        """One decoded request -> its reply map, synchronously (checks, then the model)."""
        prepared = self.prepare(msg)
        return self.run_job(*prepared) if isinstance(prepared, tuple) else prepared
