"""What the policy server knows about the policy it serves, and how a checked request becomes a reply.

`ServedPolicy` wraps a workbench policy (`act(...) -> ActionChunk`) or an upstream framework
(`predict_action(**request) -> {"normalized_actions": ...}`) and owns the decisions a client needs
to know in advance, all announced in the metadata frame:

  * unnorm keys: the statistics keys the policy holds ("unnorm_keys") and the default ("unnorm_key").
    A request's `unnorm_key` is honoured (the state is normalised and the actions unnormalised with
    that key's statistics) or, when the policy has no such key, refused by name before any work.
  * the robot state: a checkpoint whose action expert reads the state needs one per batch item.
    Upstream's clients send none, so the server is started with a state policy ("state"."policy"):
    "refuse" (a request without a state gets an error reply naming the field to send), "mean" (the
    key's dataset-mean state) or "zeros". Replies say where each item's state came from.
  * the chunk: every reply carries the policy's whole chunk ("chunk_length" actions; upstream's OXE
    checkpoints predict 16, its LIBERO ones 8; the bundled demo checkpoints were trained with 8).
  * limits: instruction length in characters and tokens, batch size, spatial answer length. A request
    over a limit is refused by `check` (cheap, outside the model's lock) with the limit in the message.

A checked batch item becomes a workbench.policy_input.PolicyInput and goes through its `act`, the call the
runner makes for an observation (one observation -> policy-input path; the state policy fills the state).

Invariant: `check` never runs the model and never mutates the policy; `run` is only called from the
server's single model thread, so switching the policy's statistics key for one request is safe.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from workbench.policy_input import PolicyInput, act
from workbench.serve.protocol import InferRequest, RequestError, parse_infer_request

STATE_POLICIES = ("refuse", "mean", "zeros")


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask for; larger requests are refused before they reach the model."""

    max_instruction_chars: int = 1000  # the app caps typed instructions at 300
    max_instruction_tokens: int = 256  # counted with the checkpoint's tokenizer, the instruction alone
    max_batch: int = 16
    max_new_tokens: int = 512  # spatial answers
    max_queue: int = 8  # requests waiting for the model beyond this are refused as "busy"

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ServeLimits.{name} must be a positive integer, got {value!r}")


@dataclass
class Job:
    """A checked inference or spatial request, ready for the model thread."""

    kind: str  # "infer" | "spatial" | "upstream"
    request: InferRequest | None = None
    key: str | None = None  # the statistics key to use (resolved), None = the policy's own
    payload: dict = field(default_factory=dict)  # spatial options, or the raw upstream request


def _token_counter(policy: Any):
    """An independent copy of the policy's fast tokenizer (so counting never races the model's use of
    its own), or None when the policy has no tokenizer."""
    try:
        from tokenizers import Tokenizer

        return Tokenizer.from_str(policy.tokenizer.backend_tokenizer.to_str())
    except Exception:  # no tokenizer, or not a fast one: only the character cap applies
        return None


class ServedPolicy:
    """The served policy plus the server's decisions about it (keys, state, chunk, limits)."""

    def __init__(self, policy: Any, *, state_policy: str = "refuse", limits: ServeLimits | None = None):
        if not (hasattr(policy, "act") or hasattr(policy, "predict_action")):
            raise TypeError(f"{type(policy).__name__} has neither act(...) nor predict_action(...) to serve")
        if state_policy not in STATE_POLICIES:
            raise ValueError(f"state policy must be one of {STATE_POLICIES}, got {state_policy!r}")
        self.policy = policy
        self.limits = limits or ServeLimits()
        self.upstream = not hasattr(policy, "act")
        self.state_policy = state_policy
        stats = getattr(policy, "statistics", None)
        self.statistics: dict | None = stats if isinstance(stats, dict) else None
        self.default_key: str | None = getattr(policy, "unnorm_key", None)
        keys = list(self.statistics) if self.statistics is not None else []
        self.keys: list[str] = keys or ([self.default_key] if self.default_key else [])
        self.can_switch = self.statistics is not None and hasattr(policy, "set_statistics")
        config = getattr(policy, "config", None)
        self.state_dim = int(getattr(config, "robot_state_dim", 0) or 0) if policy_reads_state(policy) else 0
        self.state_tcp = bool(getattr(config, "state_tcp", False)) and self.state_dim > 0
        self._counter = _token_counter(policy)
        if self.state_dim and state_policy == "mean":
            for key in self.keys:  # fail at start, not at the first request
                self._filled_state(key)

    # --- what clients are told -------------------------------------------------------------------

    def metadata(self) -> dict:
        chunk = getattr(self.policy, "chunk_length", None)
        meta: dict[str, Any] = {
            "unnorm_key": self.default_key,
            "unnorm_keys": list(self.keys),
            "state": {
                "reads": bool(self.state_dim),
                "dim": self.state_dim,
                "tcp": self.state_tcp,
                "policy": self.state_policy if self.state_dim else "unused",
            },
            "limits": asdict(self.limits),
        }
        if getattr(self.policy, "name", None):
            meta["checkpoint"] = self.policy.name
        if chunk is not None:
            meta["chunk_length"] = int(chunk)
            meta["chunk"] = (
                f"every reply carries the checkpoint's whole chunk: {int(chunk)} actions, the length it "
                "was trained with (upstream's OXE checkpoints predict 16, its LIBERO ones 8)"
            )
        if getattr(self.policy, "action_dim", None) is not None:
            meta["action_dim"] = int(self.policy.action_dim)
        return meta

    # --- checks (any thread, cheap) --------------------------------------------------------------

    def check_instructions(self, instructions: list[str]) -> None:
        lim = self.limits
        for b, text in enumerate(instructions):
            if len(text) > lim.max_instruction_chars:
                raise RequestError(
                    f"instructions[{b}] has {len(text)} characters; this server takes at most "
                    f"{lim.max_instruction_chars} (metadata 'limits'): send a shorter instruction"
                )
            if self._counter is not None:
                n = len(self._counter.encode(text, add_special_tokens=False).ids)
                if n > lim.max_instruction_tokens:
                    raise RequestError(
                        f"instructions[{b}] is {n} tokens long; this server takes at most "
                        f"{lim.max_instruction_tokens} (metadata 'limits'): send a shorter instruction"
                    )

    def resolve_key(self, key: Any) -> str | None:
        """The request's unnorm_key, checked against the policy's statistics (None = the default)."""
        if key is None:
            return self.default_key
        if not isinstance(key, str):
            raise RequestError(f"'unnorm_key' must be a string or absent, got {type(key).__name__}")
        if not self.keys:
            return key  # the policy names no statistics: nothing to check the key against
        if key not in self.keys:
            raise RequestError(
                f"unknown unnorm_key {key!r}: this checkpoint has statistics for {self.keys} "
                "(metadata 'unnorm_keys'); send one of them, or none for "
                f"{self.default_key!r}"
            )
        if key != self.default_key and not self.can_switch:
            raise RequestError(
                f"this server unnormalises with {self.default_key!r} only; send that unnorm_key or none"
            )
        return key

    def check(self, payload: dict, kind: str = "infer") -> Job:
        """A request map -> a Job, or RequestError saying what to send instead. Never runs the model."""
        if self.upstream:
            if kind == "spatial":
                raise RequestError(
                    f"this server's policy ({type(self.policy).__name__}) does not answer spatial requests"
                )
            self._check_size(payload)  # the rest is the upstream framework's own checking
            return Job("upstream", payload=payload)
        if kind == "spatial":
            if not hasattr(self.policy, "spatial"):
                raise RequestError(
                    f"this server's policy ({type(self.policy).__name__}) does not answer spatial requests"
                )
            views = payload.get("images", [payload.get("image")])
            instruction = payload.get("instruction")
            req = parse_infer_request({"batch_images": [views], "instructions": [instruction]})
            self.check_instructions(req.instructions)
            options = {k: payload[k] for k in ("query", "max_new_tokens") if k in payload}
            n = options.get("max_new_tokens", 128)
            if (
                isinstance(n, bool)
                or not isinstance(n, int | np.integer)
                or not 1 <= n <= self.limits.max_new_tokens
            ):
                raise RequestError(
                    f"'max_new_tokens' must be an integer in 1..{self.limits.max_new_tokens}, got {n!r}"
                )
            return Job("spatial", request=req, payload=options)
        self._check_size(payload)  # before the images are checked: cheapest first
        req = parse_infer_request(payload)
        key = self.resolve_key(req.unnorm_key)
        self._check_states(req)
        return Job("infer", request=req, key=key)

    def _check_size(self, payload: dict) -> None:
        """The batch size and the instructions' length, whatever else the request holds."""
        images, texts = payload.get("batch_images"), payload.get("instructions")
        if isinstance(images, list | tuple) and len(images) > self.limits.max_batch:
            raise RequestError(
                f"a batch of {len(images)} items; this server takes at most {self.limits.max_batch} "
                "(metadata 'limits'): split the batch"
            )
        if isinstance(texts, list | tuple) and all(isinstance(s, str) for s in texts):
            self.check_instructions(list(texts))

    def _check_states(self, req: InferRequest) -> None:
        if not self.state_dim or self.state_policy != "refuse":
            return
        name = getattr(self.policy, "name", type(self.policy).__name__)
        for b in range(len(req.instructions)):
            if req.states is None or req.states[b] is None:
                raise RequestError(
                    f"{name} reads the robot state ({self.state_dim} numbers) and batch item {b} has none: "
                    "send 'states' (one vector per item, a workbench extension; RemotePolicy.act(state=...)), "
                    "or start the server with --state-policy mean (or zeros) to fill it"
                )
            if self.state_tcp and (req.tcp_poses is None or req.tcp_poses[b] is None):
                raise RequestError(
                    f"{name} reads the TCP position after the joints and batch item {b} has no 'tcp_poses' "
                    "entry: send one (RemotePolicy.act(tcp_pose=...)), or start the server with "
                    "--state-policy mean (or zeros)"
                )

    # --- the model thread ------------------------------------------------------------------------

    def _filled_state(self, key: str | None) -> np.ndarray:
        """The whole robot state (joints, then the TCP position with state_tcp) the state policy fills."""
        if self.state_policy == "zeros":
            return np.zeros(self.state_dim)
        block = (self.statistics or {}).get(key, {}).get("state") or {}
        mean = block.get("mean")
        if mean is None or np.asarray(mean).shape != (self.state_dim,):
            raise ValueError(
                f"--state-policy mean needs a 'state' block with a {self.state_dim}-number 'mean' in the "
                f"statistics {key!r} (dataset_statistics.json); use --state-policy zeros or refuse"
            )
        return np.asarray(mean, dtype=np.float64)

    def _state_for(self, req: InferRequest, b: int, key: str | None) -> tuple[dict, str]:
        """The state arguments for batch item b, and where they came from ("request" / policy name)."""
        if not self.state_dim:
            extra = {} if req.states is None or req.states[b] is None else {"state": req.states[b]}
            if req.tcp_poses is not None and req.tcp_poses[b] is not None:
                extra["tcp_pose"] = req.tcp_poses[b]
            return extra, "unused"
        state = None if req.states is None else req.states[b]
        tcp = None if req.tcp_poses is None else req.tcp_poses[b]
        source = "request"
        if state is None or (self.state_tcp and tcp is None):
            filled = self._filled_state(key)
            joints = self.state_dim - (3 if self.state_tcp else 0)
            state = filled[:joints] if state is None else state
            tcp = filled[joints:] if self.state_tcp and tcp is None else tcp
            source = self.state_policy
        extra = {"state": state}
        if tcp is not None:
            extra["tcp_pose"] = tcp
        return extra, source

    def run(self, job: Job) -> dict:
        """Run a checked job on the model (the caller serialises calls); returns the reply's data."""
        if job.kind == "upstream":
            return dict(self.policy.predict_action(**job.payload))
        if job.kind == "spatial":
            from workbench.serve.protocol import spatial_to_wire

            req = job.request
            return spatial_to_wire(
                self.policy.spatial(req.batch_images[0], req.instructions[0], **job.payload)
            )
        switch = self.can_switch and job.key is not None and job.key != self.default_key
        if switch:
            self.policy.set_statistics(self.statistics, job.key)
        try:
            return self._infer(job.request, job.key)
        finally:
            if switch:
                self.policy.set_statistics(self.statistics, self.default_key)

    def _infer(self, req: InferRequest, key: str | None) -> dict:
        normalized, actions, timings, sources = [], [], [], []
        for b, (views, instruction) in enumerate(zip(req.batch_images, req.instructions, strict=True)):
            extra, source = self._state_for(req, b, key)
            inputs = PolicyInput(views, instruction, extra.get("state"), extra.get("tcp_pose"))
            t0 = time.perf_counter()
            chunk = act(
                self.policy, inputs, num_ddim_steps=req.num_ddim_steps, cfg_scale=req.cfg_scale, seed=req.seed
            )
            timings.append(time.perf_counter() - t0)
            normalized.append(np.asarray(chunk.normalized, dtype=np.float32))
            actions.append(np.asarray(chunk.actions, dtype=np.float32))
            sources.append(source)
        data = {
            "normalized_actions": np.stack(normalized),  # [B, T, 7]
            "actions": np.stack(actions),  # [B, T, 7] unnormalised with the statistics of "unnorm_key"
            "unnorm_key": key,
            "policy_seconds": np.asarray(timings, dtype=np.float64),  # [B]
        }
        if self.state_dim:
            data["state_source"] = sources  # [B] "request" | "mean" | "zeros"
        return data


def policy_reads_state(policy: Any) -> bool:
    return bool(getattr(policy, "reads_state", False))
