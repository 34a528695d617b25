"""Policy server and client: upstream InternVLA-M1's websocket + msgpack-numpy protocol.

Compatible both ways: our `PolicyServer` answers upstream's SimplerEnv / LIBERO clients, and our
`PolicyClient` / `RemotePolicy` drive a policy served on a GPU box by upstream's `server_policy_M1.py`.

    connect            server -> client  metadata map ({"server", "protocol", "extensions", "control",
                                          "unnorm_key", "unnorm_keys", "chunk_length", "state": {"reads",
                                          "dim", "tcp", "policy"}, "limits", ...}; see `served`)
    infer request      client -> server  {"batch_images": [[view uint8 [H, W, 3], ...]] * B,
                                          "instructions": [str] * B, "unnorm_key": str | None,
                                          "cfg_scale": 1.5, "use_ddim": True, "num_ddim_steps": 10,
                                          "seed": int (extension, optional),
                                          "states": [[S floats] | None] * B (extension, optional:
                                          the robot state, for models whose DiT reads it),
                                          "tcp_poses": [[7 floats] | None] * B (extension, optional:
                                          the TCP pose, for models whose state ends with it)}
    infer response     server -> client  {"status": "ok", "ok": True, "type": "inference_result",
                                          "request_id": ..., "data": {"normalized_actions": [B, T, 7],
                                          "actions": [B, T, 7] (extension: unnormalised on the server
                                          with the request's unnorm_key; an unknown key is refused),
                                          "unnorm_key", "policy_seconds": [B], "state_source": [B]
                                          (extensions)}}
    control            as upstream's server: {"type": "ping"} -> type "pong"; {"type": "init"} or
                       {"device": ...} -> "init_result"; {"type": "reset"} or {"reset": True, ...} ->
                       "reset_result"
    spatial (extension) {"type": "spatial", "payload": {"images": [[H, W, 3], ...], "instruction": str,
                                          "query": "box", "max_new_tokens": 128}}
                       -> data {"text", "geometry": [{"label", "bbox_2d" | "point_2d" | "trace_2d"}],
                                "frame": [w, h, orig_w, orig_h] | None, "problems": [str]}
    error              {"status": "error", "ok": False, "type": ..., "error": {"message": str}}

Arrays are msgpack maps {b"__ndarray__": True, b"data", b"dtype", b"shape"} (openpi's encoding; see
`msgpack_numpy`). The server binds 127.0.0.1:10093 by default.
"""

from workbench.serve.client import PolicyClient, RemotePolicy
from workbench.serve.protocol import (
    DEFAULT_PORT,
    RemotePolicyError,
    RequestError,
)
from workbench.serve.server import PolicyServer

__all__ = [
    "DEFAULT_PORT",
    "PolicyClient",
    "PolicyServer",
    "RemotePolicy",
    "RemotePolicyError",
    "RequestError",
]
