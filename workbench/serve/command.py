"""`workbench serve`: load a checkpoint and serve it on upstream's policy protocol.

    workbench serve --checkpoint assets/checkpoints/<name> --port 10093
    workbench serve --checkpoint /runs/<upstream run dir> --unnorm-key oxe_bridge --host 0.0.0.0

Clients: upstream's SimplerEnv / LIBERO eval clients, or `workbench.serve.RemotePolicy`.
"""

from __future__ import annotations

import argparse
import logging

from workbench.serve.protocol import DEFAULT_HOST, DEFAULT_PORT


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a checkpoint over the upstream websocket policy protocol")
    p.add_argument("--checkpoint", required=True, help="workbench checkpoint dir, or upstream run dir / .pt")
    p.add_argument("--host", default=DEFAULT_HOST, help="bind address (0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    p.add_argument("--unnorm-key", default=None, help="dataset statistics key (needed if there are several)")
    p.add_argument(
        "--base-model-dir", default=None, help="Qwen2.5-VL base model files, for upstream run dirs"
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")


def run(args: argparse.Namespace) -> int:
    import torch

    from workbench.policy import ST4VLAPolicy
    from workbench.serve.server import PolicyServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    policy = ST4VLAPolicy.load(
        args.checkpoint, unnorm_key=args.unnorm_key, base_model_dir=args.base_model_dir
    )
    metadata = {
        "checkpoint": policy.name,
        "unnorm_key": policy.unnorm_key,
        "chunk_length": policy.chunk_length,
    }
    server = PolicyServer(policy, host=args.host, port=args.port, metadata=metadata)
    server.start()
    print(f"serving {policy.name} on {server.url} (Ctrl-C stops)", flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop()
    return 0
