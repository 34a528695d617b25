"""Sweeps (workbench/sweep.py): one outcome per spec, in process or on a local two-worker Ray; a failed
episode is retried once then reported with its error, a killed actor's episode reruns on a fresh one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from workbench import sweep


class Flaky:
    """A worker: spec "boom" always raises; spec ("once", path) raises (or, with die=True, kills its
    process) the first time only, as recorded by a marker file at path; anything else is doubled."""

    def __init__(self, die: bool = False) -> None:
        self.die, self.pid = die, os.getpid()

    def __call__(self, spec):
        if spec == "boom":
            raise ValueError("no such object: boom")
        if isinstance(spec, tuple) and spec[0] == "once":
            marker = Path(spec[1])
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                if self.die:
                    os._exit(1)  # the worker process dies mid-episode
                raise RuntimeError("first try fails")
            return ("ok", os.getpid())
        return (spec * 2, self.pid)


def _broken_worker():
    raise FileNotFoundError("checkpoint /nowhere is not readable here")


def _by_index(outcomes):
    return {o.index: o for o in outcomes}


def test_in_process_every_spec_yields_one_outcome_and_failures_are_retried_once(tmp_path):
    specs = [1, "boom", ("once", str(tmp_path / "m")), 3]
    out = _by_index(sweep.run(specs, Flaky))
    assert sorted(out) == [0, 1, 2, 3]
    assert out[0].ok and out[0].result[0] == 2 and out[0].attempts == 1
    assert not out[1].ok and out[1].result is None and out[1].attempts == 2
    assert out[1].error == "ValueError: no such object: boom"
    assert out[2].ok and out[2].attempts == 2 and out[2].result[0] == "ok"
    assert out[3].result[0] == 6
    assert [o.index for o in sweep.run([1, 2, 3], Flaky, should_stop=lambda: True)] == []


def test_bad_workers_are_refused():
    with pytest.raises(sweep.SweepError, match="workers must be >= 1"):
        list(sweep.run([1], Flaky, workers=0))


ray = pytest.importorskip("ray", reason='the ray extra: pip install -e ".[ray]"')


@pytest.fixture(scope="module")
def local_ray():
    """One local two-CPU Ray for the module, shut down after it."""
    sweep.connect(sweep.LOCAL, workers=2)
    # the test module's worker classes travel by value: Ray's worker processes do not import tests/
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


def test_ray_runs_every_spec_on_two_actors_and_retries_a_failure_once(local_ray, tmp_path):
    specs = [1, 2, "boom", ("once", str(tmp_path / "m")), 5, 6]
    outcomes = list(sweep.run(specs, Flaky, ray=sweep.LOCAL, workers=2))
    out = _by_index(outcomes)
    assert sorted(out) == list(range(6))  # none dropped, none twice
    assert [out[i].result[0] for i in (0, 1, 4, 5)] == [2, 4, 10, 12]
    assert len({out[i].result[1] for i in (0, 1, 4, 5)}) == 2  # two actors ran them, neither is us
    assert os.getpid() not in {out[i].result[1] for i in (0, 1, 4, 5)}
    assert not out[2].ok and out[2].attempts == 2 and out[2].error == "ValueError: no such object: boom"
    assert out[3].ok and out[3].attempts == 2


def test_ray_a_killed_actor_is_replaced_and_its_episode_retried(local_ray, tmp_path):
    marker = tmp_path / "died"
    specs = [1, ("once", str(marker)), 3, 4]
    out = _by_index(sweep.run(specs, lambda: Flaky(die=True), ray=sweep.LOCAL, workers=2))
    assert sorted(out) == [0, 1, 2, 3]
    assert all(o.ok for o in out.values())
    assert out[1].attempts == 2
    died, rerun = int(marker.read_text()), out[1].result[1]
    assert died != rerun  # a fresh actor (another process) ran the retry


def test_ray_a_worker_that_cannot_start_stops_the_sweep_with_a_clear_error(local_ray):
    with pytest.raises(sweep.SweepError, match="could not start .*FileNotFoundError.*every node"):
        list(sweep.run([1, 2], _broken_worker, ray=sweep.LOCAL, workers=2))
