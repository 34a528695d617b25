"""Sweeps of independent episodes: in this process one after another, or on Ray, many at once.

The one parallel path of the workbench (evaluation and the probe both run through `run`).

    for outcome in run(specs, make_worker, ray="local", workers=2):
        ...   # one Outcome per spec, as episodes finish

Invariants:
- A spec fully determines its episode (seed, task, object, instruction, ...), so an episode's result
  does not depend on where or in which order it runs. Specs and results are picklable.
- `make_worker()` is called once per worker (in this process, or once per Ray actor: a checkpoint is
  loaded once per actor, never per episode); `worker(spec)` runs one episode and returns its result.
- Every spec yields exactly one Outcome, in the order episodes finish: ok with its result, or failed
  with its error after one retry (an exception, or the actor died: then a fresh actor is started).
  Nothing is dropped, and a failure is the sweep's, not the policy's: callers report it apart.
  Exceptions of the `fatal` types (a setup every episode would fail the same way, e.g. a checkpoint
  the source cannot feed) are not retried: they stop the sweep and are raised.
- On Ray each actor holds one CPU (for its life: workers beyond the cluster's CPUs at the start are not
  started) and runs torch on one thread, as the in-process path does.
- `ray=None` runs in this process; "local" (LOCAL) starts a Ray on this machine on demand (or reuses the
  one this process already joined), sized to max(workers, cores), without its dashboard or usage
  reporting; any other string is an existing cluster's address ("auto", "ray://host:10001").
  ray is an optional extra: `pip install -e ".[ray]"`.
"""

from __future__ import annotations

import os
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

LOCAL = "local"  # `--ray` with no address: a Ray started on this machine
RETRIES = 1  # a failed episode runs once more before it is reported failed


class SweepError(RuntimeError):
    """A sweep that cannot start as asked (the message says what to change)."""


@dataclass
class Outcome:
    index: int  # the spec's place in the sweep
    spec: Any
    result: Any = None  # the worker's result; None when the episode failed
    error: str | None = None  # "ExceptionType: message" of the last attempt, when it failed
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None


def run(
    specs: Iterable[Any],
    make_worker: Callable[[], Callable[[Any], Any]],
    *,
    ray: str | None = None,
    workers: int = 1,
    retries: int = RETRIES,
    should_stop: Callable[[], bool] | None = None,
    fatal: tuple[type[BaseException], ...] = (),
) -> Iterator[Outcome]:
    """One Outcome per spec as its episode finishes (see the module doc). `should_stop` is asked between
    episodes; once it says yes, no new episode starts and those running are abandoned."""
    specs = list(specs)
    if workers < 1:
        raise SweepError(f"workers must be >= 1, got {workers}")
    if ray is None:
        yield from _run_here(specs, make_worker, retries, should_stop, fatal)
    else:
        yield from _run_on_ray(specs, make_worker, ray, workers, retries, should_stop, fatal)


def error_text(e: BaseException) -> str:
    """An exception as one line: its type and message (a Ray task error: the cause's)."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        e = cause
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}".strip()


def _run_here(specs, make_worker, retries, should_stop, fatal) -> Iterator[Outcome]:
    import torch  # heavy: only a sweep that runs needs it

    torch.set_num_threads(1)
    worker = make_worker()
    try:
        for index, spec in enumerate(specs):
            if should_stop is not None and should_stop():
                return
            yield _run_one_here(worker, index, spec, retries, fatal)
    finally:
        close = getattr(worker, "close", None)  # a worker may hold simulators
        if close is not None:
            close()


def _run_one_here(worker, index: int, spec: Any, retries: int, fatal) -> Outcome:
    for attempt in range(1, retries + 2):
        try:
            return Outcome(index, spec, worker(spec), None, attempt)
        except fatal:
            raise
        except Exception as e:  # reported in the outcome, never raised: the sweep goes on
            traceback.print_exc()
            if attempt > retries:
                return Outcome(index, spec, None, error_text(e), attempt)
    raise AssertionError("unreachable")


def connect(address: str = LOCAL, workers: int = 1) -> None:
    """Join Ray: a local one started here (LOCAL) or the cluster at `address`; a no-op once joined."""
    try:
        import ray
    except ImportError as e:
        raise SweepError(
            'Ray is not installed: pip install -e ".[ray]" (or run without --ray, in this process)'
        ) from e
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing dials out
    # the workers' prints stay in Ray's logs (a failed episode's error comes back in its Outcome)
    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if address == LOCAL:
            ray.init(num_cpus=max(workers, os.cpu_count() or 1), **quiet)
        else:
            ray.init(address=address, **quiet)
    except ConnectionError as e:
        raise SweepError(
            f"could not reach a Ray cluster at {address!r} ({e}): start one with `ray start --head`, "
            "or give --ray without an address for a Ray on this machine"
        ) from e


class _Actor:
    """A Ray actor: its worker is made once (the checkpoint loaded once); each call runs one episode."""

    def __init__(self, make_worker: Callable[[], Callable[[Any], Any]]) -> None:
        import torch

        torch.set_num_threads(1)
        self.worker = make_worker()

    def run(self, spec: Any) -> Any:
        return self.worker(spec)

    def pid(self) -> int:
        return os.getpid()


def _run_on_ray(specs, make_worker, address, workers, retries, should_stop, fatal) -> Iterator[Outcome]:
    import ray

    connect(address, workers)
    actor_class = ray.remote(num_cpus=1, max_restarts=0)(_Actor)
    # an actor holds its CPU for life: more actors than the cluster's CPUs would wait forever
    cpus = int(ray.cluster_resources().get("CPU", workers))
    count = max(1, min(workers, len(specs), cpus))
    if count < min(workers, len(specs)):
        print(f"sweep: {workers} workers asked, the Ray cluster has {cpus} CPUs: running {count} at once")
    actors: list[Any] = [actor_class.remote(make_worker) for _ in range(count)]
    pending = deque((i, 1) for i in range(len(specs)))  # (spec index, attempt), retries go first
    running: dict[Any, tuple[int, int, int]] = {}  # object ref -> (actor slot, spec index, attempt)

    def submit(slot: int) -> None:
        if pending and not (should_stop is not None and should_stop()):
            index, attempt = pending.popleft()
            running[actors[slot].run.remote(specs[index])] = (slot, index, attempt)

    try:
        for slot in range(count):
            submit(slot)
        while running:
            done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            if not done:
                if should_stop is not None and should_stop():
                    return
                continue
            ref = done[0]
            slot, index, attempt = running.pop(ref)
            try:
                result = ray.get(ref)
            except fatal as e:  # a Ray task error is also an instance of its cause's type
                cause = getattr(e, "cause", None)
                raise (cause if isinstance(cause, BaseException) else e) from None
            except Exception as e:  # a task error, or the actor died (then a fresh one takes its slot)
                if getattr(e, "actor_init_failed", False):
                    raise SweepError(
                        f"a Ray worker could not start ({error_text(e)}): is the checkpoint readable at the "
                        "same path on every node, and the workbench installed there?"
                    ) from e
                if isinstance(e, ray.exceptions.RayActorError):
                    ray.kill(actors[slot], no_restart=True)
                    actors[slot] = actor_class.remote(make_worker)
                if attempt > retries:
                    yield Outcome(index, specs[index], None, error_text(e), attempt)
                else:
                    pending.appendleft((index, attempt + 1))
            else:
                yield Outcome(index, specs[index], result, None, attempt)
            submit(slot)
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
