"""`workbench serve`: load a checkpoint and serve it on upstream's policy protocol.

    workbench serve --checkpoint assets/checkpoints/<name> --port 10093
    workbench serve --checkpoint assets/checkpoints/st4vla-tiny --state-policy mean   # upstream's clients
    workbench serve --checkpoint /runs/<upstream run dir> --unnorm-key oxe_bridge --host 0.0.0.0

Clients: upstream's SimplerEnv / LIBERO eval clients, or `workbench.serve.RemotePolicy`. A checkpoint
whose action expert reads the robot state needs a state per request; upstream's clients send none, so
`--state-policy` decides at start what such a request gets (announced in the metadata and printed).
"""

from __future__ import annotations

import argparse
import logging

from workbench.serve.protocol import DEFAULT_HOST, DEFAULT_PORT
from workbench.serve.served import STATE_POLICIES, ServeLimits

_LIMITS = ServeLimits()


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a checkpoint over the upstream websocket policy protocol")
    p.add_argument("--checkpoint", required=True, help="workbench checkpoint dir, or upstream run dir / .pt")
    p.add_argument("--host", default=DEFAULT_HOST, help="bind address (0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    p.add_argument(
        "--unnorm-key", default=None, help="default dataset statistics key (needed if there are several)"
    )
    p.add_argument(
        "--base-model-dir", default=None, help="Qwen2.5-VL base model files, for upstream run dirs"
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument(
        "--state-policy",
        choices=STATE_POLICIES,
        default="refuse",
        help="for checkpoints that read the robot state, a request without one (upstream's clients send "
        "none): refuse it with an error reply, or act on the statistics' mean state, or on zeros",
    )
    p.add_argument(
        "--max-instruction-chars", type=int, default=_LIMITS.max_instruction_chars, help="longer is refused"
    )
    p.add_argument(
        "--max-instruction-tokens", type=int, default=_LIMITS.max_instruction_tokens, help="longer is refused"
    )
    p.add_argument("--max-batch", type=int, default=_LIMITS.max_batch, help="larger batches are refused")
    p.add_argument(
        "--max-queue", type=int, default=_LIMITS.max_queue, help="requests waiting beyond this are refused"
    )


def state_notice(metadata: dict) -> str | None:
    """One line saying what a request without a robot state gets, or None for state-free checkpoints."""
    state = metadata.get("state", {})
    if not state.get("reads"):
        return None
    what = {
        "refuse": "are refused (upstream's clients send none: --state-policy mean or zeros fills it)",
        "mean": "get the dataset statistics' mean state",
        "zeros": "get a state of zeros",
    }[state["policy"]]
    return (
        f"{metadata.get('checkpoint')} reads a {state['dim']}-number robot state; requests without one {what}"
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from workbench.policy import ST4VLAPolicy
    from workbench.serve.server import PolicyServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    limits = ServeLimits(
        max_instruction_chars=args.max_instruction_chars,
        max_instruction_tokens=args.max_instruction_tokens,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
    )
    policy = ST4VLAPolicy.load(
        args.checkpoint, unnorm_key=args.unnorm_key, base_model_dir=args.base_model_dir
    )
    server = PolicyServer(
        policy, host=args.host, port=args.port, state_policy=args.state_policy, limits=limits
    )
    server.start()
    print(f"serving {policy.name} on {server.url} (Ctrl-C stops)", flush=True)
    notice = state_notice(server.metadata)
    if notice:
        print(notice, flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop()
    return 0
