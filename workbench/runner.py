"""The step loop: one StepRecord per control step, for any source and one or more policies.

    record k = observation k + every policy's spatial answer and action chunk on it
               + the action the driving policy sends to the env from it
    step()   = execute record k's action, observe k+1, ask the policies again

Modes: "shared": slot 0 drives, the other slots are evaluated on the very same observations;
"independent": each slot drives its own copy of the source, all reset from the same seed (one
lane per slot, branch name = slot name). Every step keeps a snapshot (source state, observation,
controller state, instructions) so branch(k, ...) restores step k exactly and goes on elsewhere;
with branching=False (evaluation, the probe) no snapshot is taken and the source runs undisturbed.
Sinks (Rerun, session store, video) receive every record; adding one never touches the others.

One seeding rule for every caller (app, probe, evaluation, sample session): act() at step k of the
episode reset with seed s is seeded with act_seed(s, k) = s * 1000 + k, so an episode replays exactly,
a branch replays the same noise, A and B see the same noise, and no two episodes of different seeds
share a noise seed. `run_episode` is the one episode loop (reset, step until done or a step limit).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from workbench.compat import Compatibility, IncompatibleSource, check, checkpoint_needs, source_gives
from workbench.controller import Controller, ControllerConfig, base_rotation, project_path, rollout_path
from workbench.policy_input import InputTransform, PolicyInput, act
from workbench.protocols import BranchError, Policy, Sink, Source, Transition
from workbench.records import Observation, PolicyStep, StepRecord
from workbench.spatial_metrics import grounding_metrics

# -- configuration --------------------------------------------------------------------------------

ACT_SEED_STRIDE = 1000  # act() seeds of one episode: episode seed * stride + step (episodes < 1000 steps)


def act_seed(episode_seed: int, step: int) -> int:
    """The seed of act() at `step` of the episode reset with `episode_seed` (the module docstring)."""
    return int(episode_seed) * ACT_SEED_STRIDE + int(step)


@dataclass
class PolicySlot:
    name: str
    policy: Policy
    instruction: str | None = None  # None: the source's instruction
    num_ddim_steps: int = 10
    cfg_scale: float = 1.5
    ensemble_horizon: int = 7
    ensemble_alpha: float = 0.1
    spatial_query: str | None = "box"  # None: skip the explicit grounding call
    spatial_each_step: bool = True  # False: ask the spatial question at step 0 only (evaluation)
    return_internals: bool = True  # attention heatmaps for the viewer
    rotation: str = "axis_angle"  # the model's rotation convention (see controller.ControllerConfig)
    # How the source's joint values become what the checkpoint reads (workbench.compat.MAPPINGS); None:
    # the source's own, and the runner refuses to start when they do not fit the checkpoint.
    state_mapping: str | None = None
    # A last transform of the policy's input, after the state mapping (research: an oracle state).
    input_transform: InputTransform | None = None


@dataclass
class _Snapshot:
    source_state: Any
    observation: Observation
    transition: Transition
    controllers: dict[str, tuple]
    slots: list[PolicySlot]


@dataclass
class _Lane:
    """One source driven by slots[0]; the other slots are evaluated on its observations."""

    branch: str
    source: Source
    slots: list[PolicySlot]
    controllers: dict[str, Controller]
    step: int = -1
    observation: Observation | None = None
    transition: Transition | None = None
    record: StepRecord | None = None
    done: bool = False
    snapshots: dict[int, _Snapshot] = field(default_factory=dict)


# -- the runner -----------------------------------------------------------------------------------


class Runner:
    def __init__(
        self,
        source: Source,
        slots: Sequence[PolicySlot],
        *,
        mode: Literal["shared", "independent"] = "shared",
        sinks: Sequence[Sink] = (),
        background_sinks: bool = False,
        branching: bool = True,
    ) -> None:
        """background_sinks: sinks write on a worker thread, so a step does not wait for JPEG/PNG
        encoding and fsync; call flush() before reading what a sink wrote (e.g. RerunLogger.read()).
        branching=False: no snapshot of the source is taken (branch() refuses); the built-in sim
        re-anchors its physics on a snapshot, so evaluation and the probe run without."""
        if not slots:
            raise ValueError("Runner needs at least one PolicySlot")
        names = [s.name for s in slots]
        if len(set(names)) != len(names):
            raise ValueError(f"slot names must be unique, got {names}")
        if mode not in ("shared", "independent"):
            raise ValueError(f"mode must be 'shared' or 'independent', got {mode!r}")
        self.mode = mode
        self.branching = branching
        self.sinks = list(sinks)
        self.history: list[StepRecord] = []
        self._paused = False
        self.seed: int | None = None
        self.sink_seconds: dict[str, float] = {}  # sink class -> seconds its last write took
        self._worker = _SinkWorker(self._deliver) if background_sinks else None
        slots = [dataclasses.replace(s) for s in slots]  # ours to edit (set_instruction)
        self.compatibility: dict[str, Compatibility] = {}  # slot name -> what Load would say
        for s in slots:
            self._check(s, source)
        if mode == "shared":
            self.lanes = [self._lane("main", source, slots)]
        else:
            sources = [source] + [source.fork() for _ in slots[1:]]
            self.lanes = [self._lane(s.name, src, [s]) for s, src in zip(slots, sources, strict=True)]

    def _check(self, slot: PolicySlot, source: Source) -> None:
        """Compare what the slot's checkpoint reads with what the source gives; refuse now, in words,
        rather than fail at reset or step (workbench.compat)."""
        report = check(checkpoint_needs(slot.policy, slot.rotation), source_gives(source), slot.state_mapping)
        if not report.actions_ok:
            raise IncompatibleSource(report.text())
        self.compatibility[slot.name] = report

    def _lane(self, branch: str, source: Source, slots: list[PolicySlot]) -> _Lane:
        return _Lane(branch, source, slots, {s.name: self._controller(s, source) for s in slots})

    @staticmethod
    def _controller(slot: PolicySlot, source: Source) -> Controller:
        cfg = ControllerConfig(
            slot.ensemble_horizon, slot.ensemble_alpha, slot.rotation, source.gripper_convention
        )
        return Controller(cfg)

    # -- public API -------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return all(lane.done for lane in self.lanes)

    @property
    def slots(self) -> list[PolicySlot]:
        return [s for lane in self.lanes for s in lane.slots]

    def reset(self, seed: int | None = None, options: dict | None = None) -> StepRecord:
        """Step 0 on every lane: observe and predict. Returns the first lane's record.

        With seed=None a seed is drawn (and kept in self.seed) so independent lanes start alike."""
        self.seed = int(np.random.default_rng().integers(2**31)) if seed is None else int(seed)
        seed = self.seed
        for lane in self.lanes:
            t0 = time.perf_counter()
            obs = lane.source.reset(seed=seed, options=options)
            for c in lane.controllers.values():
                c.reset()
            lane.step, lane.observation, lane.done = 0, obs, False
            # what the env said at reset (the built-in sim: distances, the episode seed), when it says
            lane.transition = Transition(obs, info=dict(getattr(lane.source, "reset_info", None) or {}))
            lane.snapshots.clear()
            self._emit(self._observe(lane, env_seconds=time.perf_counter() - t0))
        return self.lanes[0].record

    def step(self) -> StepRecord:
        """Execute the current action on every lane still running; observe and predict again."""
        self._require_started()
        if self.done:
            raise RuntimeError("the episode is over: call reset() or branch() to go on")
        for lane in self.lanes:
            if lane.done:
                continue
            t0 = time.perf_counter()
            tr = lane.source.step(lane.record.executed_action)
            env_seconds = time.perf_counter() - t0
            lane.step += 1
            lane.observation, lane.transition = tr.observation, tr
            lane.done = bool(tr.terminated or tr.truncated)
            self._emit(self._observe(lane, env_seconds=env_seconds))
        return self.lanes[0].record

    def run(self, n: int | None = None) -> Iterator[StepRecord]:
        """Step until done, paused, or n steps (starting with reset() if never started)."""
        self._paused = False
        if self.lanes[0].record is None:
            self.reset()
            yield from self.history[-len(self.lanes) :]
        count = 0
        while not self.done and not self._paused and (n is None or count < n):
            before = len(self.history)
            self.step()
            count += 1
            yield from self.history[before:]

    def pause(self) -> None:
        """Stop run() after the step in progress (safe to call from another thread)."""
        self._paused = True

    def set_instruction(self, text: str, slot: str | None = None) -> None:
        """Use `text` from the next prediction on, for one slot or (slot=None) all of them."""
        if not text or not text.strip():
            raise ValueError("instruction is empty: type what the robot should do")
        targets = [s for s in self.slots if slot is None or s.name == slot]
        if not targets:
            raise KeyError(f"no slot named {slot!r}; slots are {[s.name for s in self.slots]}")
        for s in targets:
            s.instruction = text
        step = self.lanes[0].step
        branch = self.lanes[0].branch
        self._note({"kind": "instruction", "step": step, "slot": slot, "instruction": text, "branch": branch})

    def reask(self) -> StepRecord:
        """Ask the policies again on the current observation (e.g. after an instruction edit) without stepping."""
        self._require_started()
        for lane in self.lanes:
            snap = lane.snapshots[lane.step]
            for name, c in lane.controllers.items():
                c.set_state(snap.controllers[name])  # the ensembler must not count this step twice
            record = self._observe(lane, env_seconds=0.0, snapshot=False)
            idx = next(
                i for i in range(len(self.history) - 1, -1, -1) if self.history[i].branch == lane.branch
            )
            self.history[idx] = record
            self._write(record)
        return self.lanes[0].record

    def branch(
        self, step: int, name: str, *, instruction: str | None = None, slot: PolicySlot | None = None
    ) -> StepRecord:
        """Restore step `step` of the current branch and continue on a new branch `name`.

        instruction: used by every slot from then on; slot: replaces the slot of the same name (or
        the driving slot). In independent mode each lane branches to "{name}/{slot}".
        """
        self._require_started()
        taken = {r.branch for r in self.history}
        if not self.branching:
            raise BranchError(
                "this runner was built with branching=False: it keeps no snapshots to branch from"
            )
        for lane in self.lanes:
            if not lane.source.can_branch:
                raise BranchError(
                    f"source {lane.source.name!r} is a recording: its future cannot change, so no branch"
                )
            if step not in lane.snapshots:
                raise BranchError(f"no step {step} on branch {lane.branch!r} (it has 0..{lane.step})")
        news = [name if self.mode == "shared" else f"{name}/{lane.slots[0].name}" for lane in self.lanes]
        for new in news:
            if new in taken:
                raise BranchError(f"branch name {new!r} is taken; choose another")
        if slot is not None:  # a new checkpoint must fit the source before anything changes
            for lane in self.lanes:
                self._check(slot, lane.source)
        for lane, new in zip(self.lanes, news, strict=True):
            self._note(
                {"kind": "branch", "from": lane.branch, "step": step, "name": new, "instruction": instruction}
            )
            self._restore(lane, step, new, instruction, slot)
        for lane in self.lanes:
            self._emit(self._observe(lane, env_seconds=0.0))
        return self.lanes[0].record

    def flush(self) -> None:
        """Wait until every sink has written every record so far (a no-op without background sinks)."""
        if self._worker is not None:
            self._worker.flush()

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
        for s in self.sinks:
            s.close()
        for lane in self.lanes:
            lane.source.close()

    def policy_input(self, slot: PolicySlot, obs: Observation, step: int, instruction: str) -> PolicyInput:
        """What `slot`'s policy reads at `step` on `obs`: the state through the slot's mapping, then its
        input transform. With act_seed(self.seed, step) it repeats the runner's act() call exactly."""
        inputs = PolicyInput.from_observation(obs, instruction, self.compatibility[slot.name].mapping)
        return inputs if slot.input_transform is None else slot.input_transform(inputs, step)

    # -- internals --------------------------------------------------------------------------------

    def _restore(
        self, lane: _Lane, step: int, new: str, instruction: str | None, slot: PolicySlot | None
    ) -> None:
        snap = lane.snapshots[step]
        lane.source.restore(snap.source_state)
        slots = [dataclasses.replace(s) for s in snap.slots]
        for name, c in lane.controllers.items():
            if name in snap.controllers:
                c.set_state(snap.controllers[name])
        if slot is not None:  # a new checkpoint starts with a fresh ensembler
            i = next((i for i, s in enumerate(slots) if s.name == slot.name), 0)
            lane.controllers.pop(slots[i].name)
            slots[i] = dataclasses.replace(slot)
            lane.controllers[slot.name] = self._controller(slot, lane.source)
        if instruction is not None:
            for s in slots:
                s.instruction = instruction
        lane.slots = slots
        # the new branch shares the parent's history up to `step`
        lane.snapshots = {k: v for k, v in lane.snapshots.items() if k < step}
        lane.step, lane.observation, lane.transition, lane.done = (
            step,
            snap.observation,
            snap.transition,
            False,
        )
        lane.branch = new

    def _observe(self, lane: _Lane, *, env_seconds: float, snapshot: bool = True) -> StepRecord:
        """Snapshot, ask every slot, turn the driver's chunk into the env action, build the record."""
        t_start = time.perf_counter()
        obs = lane.observation
        if snapshot:
            t_snap = time.perf_counter()
            lane.snapshots[lane.step] = _Snapshot(
                lane.source.snapshot() if lane.source.can_branch and self.branching else None,
                obs,
                lane.transition,
                {k: c.state() for k, c in lane.controllers.items()},
                [dataclasses.replace(s) for s in lane.slots],
            )
            snapshot_seconds = time.perf_counter() - t_snap
        else:
            snapshot_seconds = 0.0
        policy_seconds = 0.0
        policies: dict[str, PolicyStep] = {}
        for slot in lane.slots:
            ps, seconds = self._ask(slot, lane, obs)
            policies[slot.name] = ps
            policy_seconds += seconds
        tr = lane.transition
        record = StepRecord(
            step=lane.step,
            observation=obs,
            policies=policies,
            executed_action=policies[lane.slots[0].name].executed,
            recorded_action=lane.source.recorded_action(),
            reward=float(tr.reward),
            terminated=bool(tr.terminated),
            truncated=bool(tr.truncated),
            info=dict(tr.info),
            branch=lane.branch,
        )
        total = time.perf_counter() - t_start
        # snapshot: the source saving its state (physics), kept apart from the runner's own overhead
        record.timings = {
            "env": env_seconds,
            "policy": policy_seconds,
            "snapshot": snapshot_seconds,
            "runner": total - policy_seconds - snapshot_seconds,
        }
        lane.record = record
        return record

    def _ask(self, slot: PolicySlot, lane: _Lane, obs: Observation) -> tuple[PolicyStep, float]:
        instruction = slot.instruction or obs.instruction
        inputs = self.policy_input(slot, obs, lane.step, instruction)
        images = inputs.images
        timings: dict[str, float] = {}
        spatial = None
        query = slot.spatial_query if slot.spatial_each_step or lane.step == 0 else None
        # A model that acts on its own answer to the spatial prompt writes it inside act(): show that one
        # (what the action read) instead of decoding the same greedy text twice.
        from_chunk = query == "box" and getattr(slot.policy, "acts_on_its_box_answer", False)
        t0 = time.perf_counter()
        if query and not from_chunk:
            spatial = slot.policy.spatial(images, instruction, query=query)
        t1 = time.perf_counter()
        chunk = act(
            slot.policy,
            inputs,
            num_ddim_steps=slot.num_ddim_steps,
            cfg_scale=slot.cfg_scale,
            seed=act_seed(self.seed, lane.step),
            return_internals=slot.return_internals,
        )
        if from_chunk:
            spatial = slot.policy.read_answer(images, chunk.answer)
        t2 = time.perf_counter()
        timings["spatial"], timings["act"] = t1 - t0, t2 - t1
        executed = lane.controllers[slot.name].env_action(chunk)
        cam = obs.cameras.get(obs.main_camera)
        if obs.tcp_pose is not None:
            # actions are base-frame deltas; the tcp and the camera are in the world
            chunk.ee_path_3d = rollout_path(obs.tcp_pose, chunk.actions, base_rotation(obs.base_pose))
            chunk.ee_path_2d = project_path(cam, chunk.ee_path_3d) if cam is not None else None
        metrics = {}
        if spatial is not None and obs.ground_truth is not None:
            metrics = grounding_metrics(spatial, obs.ground_truth)
        ps = PolicyStep(slot.name, instruction, spatial, chunk, executed, metrics, timings)
        return ps, t2 - t0

    def _emit(self, record: StepRecord) -> None:
        self.history.append(record)
        self._write(record)

    def _write(self, record: StepRecord) -> None:
        if self._worker is not None:
            self._worker.put(("write", record))
        else:
            self._deliver(("write", record))

    def _note(self, event: dict) -> None:
        if self._worker is not None:
            self._worker.put(("note", event))
        else:
            self._deliver(("note", event))

    def _deliver(self, item: tuple[str, Any]) -> None:
        kind, payload = item
        for s in self.sinks:
            if kind == "note":
                if (note := getattr(s, "note", None)) is not None:
                    note(payload)
                continue
            # Sink time is kept here, not in the record: the sinks have seen the record by then.
            t0 = time.perf_counter()
            s.write(payload)
            self.sink_seconds[type(s).__name__] = time.perf_counter() - t0

    def _require_started(self) -> None:
        if self.lanes[0].record is None:
            raise RuntimeError("call reset() first: the runner has no observation yet")


def run_episode(
    runner: Runner, seed: int, options: dict | None = None, max_steps: int | None = None
) -> list[StepRecord]:
    """The one episode loop: reset with `seed` (and the source's reset `options`), then step until the
    source ends the episode or `max_steps` steps were taken (None: the source's own limit). Returns the
    first lane's records, step 0 (the reset) first, so len(records) - 1 env steps were taken."""
    records = [runner.reset(seed=seed, options=options)]
    while not runner.done and (max_steps is None or len(records) <= max_steps):
        records.append(runner.step())
    return records


class _SinkWorker:
    """One thread that hands records to the sinks in order; a sink's error surfaces on the next call."""

    def __init__(self, deliver) -> None:
        self._deliver = deliver
        self._queue: queue.Queue = queue.Queue(maxsize=16)  # bounded: a slow sink slows the loop, not memory
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="runner-sinks", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                if self._error is None:
                    self._deliver(item)
            except BaseException as e:  # kept and raised in the runner's thread
                self._error = e
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"a sink failed in the background: {self._error!r}") from self._error

    def put(self, item: tuple[str, Any]) -> None:
        self._raise()
        self._queue.put(item)

    def flush(self) -> None:
        self._queue.join()
        self._raise()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._raise()
