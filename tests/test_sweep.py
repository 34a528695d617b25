"""Sweeps (workbench/sweep.py): one outcome per spec, in process or on a local two-worker Ray; a failed
episode is retried once then reported with its error, a killed actor's episode reruns on a fresh one."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from workbench import sweep


class Flaky:
    """A worker: spec "boom" always raises, "setup" raises LookupError; spec ("once", path) raises (or, with die=True, kills its
    process) the first time only, as recorded by a marker file at path; anything else is doubled."""

    def __init__(self, die: bool = False) -> None:
        self.die, self.pid = die, os.getpid()

    def __call__(self, spec):
        if spec == "boom":
            raise ValueError("no such object: boom")
        if spec == "setup":
            raise LookupError("every episode fails like this")
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
    with pytest.raises(LookupError, match="every episode"):  # a fatal error stops the sweep, untried again
        list(sweep.run([1, "setup", 3], Flaky, fatal=(LookupError,)))


def test_bad_workers_are_refused():
    with pytest.raises(sweep.SweepError, match="workers must be >= 1"):
        list(sweep.run([1], Flaky, workers=0))


@pytest.fixture(scope="module")
def local_ray():
    """One local two-CPU Ray for the module, shut down after it (skipped without the ray extra)."""
    ray = pytest.importorskip("ray", reason='the ray extra: pip install -e ".[ray]"')
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
    with pytest.raises(LookupError, match="every episode"):
        list(sweep.run([1, "setup", 3], Flaky, ray=sweep.LOCAL, workers=2, fatal=(LookupError,)))


def test_ray_more_workers_than_cpus_run_as_many_as_there_are_cpus(local_ray):
    import ray

    cpus = int(ray.cluster_resources()["CPU"])
    out = _by_index(sweep.run(range(cpus + 3), Flaky, ray=sweep.LOCAL, workers=cpus + 8))
    assert sorted(out) == list(range(cpus + 3)) and all(o.ok for o in out.values())
    assert len({o.result[1] for o in out.values()}) <= cpus


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


# -- evaluation and the probe on Ray: the outcomes of the serial run ---------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> str:
    from workbench.policy.policy import ST4VLAPolicy
    from workbench.train.common import model_size

    path = tmp_path_factory.mktemp("sweep") / "ckpt"
    ST4VLAPolicy.from_config(model_size("test").config(), seed=0).save(path)
    return str(path)


def _rows(episodes) -> list[dict]:
    return [{**asdict(e), "seconds": 0.0} for e in episodes]


@pytest.mark.slow
def test_evaluate_on_ray_writes_the_report_the_serial_run_writes(local_ray, tiny_checkpoint, tmp_path):
    from workbench.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(checkpoint=tiny_checkpoint, tasks=("tabletop_pick", "tabletop_stack"), episodes=2,
                     max_steps=2, cells=(("seen", "seen"), ("unseen", "unseen")))  # fmt: skip
    serial = evaluate(cfg)
    parallel = evaluate(replace(cfg, ray=sweep.LOCAL, workers=2), out=tmp_path)
    assert len(serial.episodes) == 8 and _rows(parallel.episodes) == _rows(serial.episodes)
    assert [(e.task, e.objects) for e in parallel.episodes][::2] == [
        ("tabletop_pick", "seen"), ("tabletop_pick", "unseen"), ("tabletop_stack", "seen"), ("tabletop_stack", "unseen"),
    ]  # fmt: skip
    written = json.loads((tmp_path / "report.json").read_text())  # written as episodes finished
    assert [(e["seed"], e["success"], e["steps"], e["triage"]) for e in written["episodes"]] == [
        (e.seed, e.success, e.steps, e.triage) for e in serial.episodes
    ]
    assert written["summary"]["errors"]["n"] == 0 and (tmp_path / "report.md").exists()
    with pytest.raises(ValueError, match="pass no policy"):
        evaluate(replace(cfg, ray=sweep.LOCAL, workers=2), policy=object())
    with pytest.raises(ValueError, match="add --ray"):
        evaluate(replace(cfg, workers=2))


@pytest.mark.slow
def test_an_episode_that_cannot_run_is_reported_apart_not_as_a_policy_failure(
    local_ray, tiny_checkpoint, tmp_path
):
    from workbench.eval_report import markdown
    from workbench.evaluate import EvalConfig, evaluate
    from workbench.train.command import run_evaluate

    cfg = EvalConfig(checkpoint=tiny_checkpoint, tasks=("tabletop_pick", "tabletop_nope"), episodes=1,
                     max_steps=2, cells=(("seen", "seen"),), ray=sweep.LOCAL, workers=2)  # fmt: skip
    report = evaluate(cfg)
    assert [e.task for e in report.episodes] == ["tabletop_pick", "tabletop_nope"]  # kept, in order
    broken = report.episodes[1]
    assert broken.status == "error" and "tabletop_nope" in broken.error and not broken.success
    s = report.summary()
    assert s["overall"]["n"] == 1 and s["tasks"].keys() == {"tabletop_pick"}  # in no rate
    assert s["errors"]["n"] == 1 and s["errors"]["episodes"][0]["task"] == "tabletop_nope"
    assert sum(s["triage"]["all"].values()) == 1  # not triaged as a policy failure
    assert "1 episodes could not run" in markdown(report)
    # the serial path reports it the same way; the command says so in its exit status
    assert run_evaluate(replace(cfg, ray=None, workers=1, out=str(tmp_path))) == 1
    serial = json.loads((tmp_path / "report.json").read_text())["episodes"]
    assert [{**e, "seconds": 0.0} for e in serial] == _rows(report.episodes)


@pytest.mark.slow
def test_probe_on_ray_gives_the_serial_rows_as_they_finish(local_ray, tiny_checkpoint, tmp_path):
    from workbench.policy.policy import ST4VLAPolicy
    from workbench.probe import ProbeError, ProbeSpec, run_probe

    spec = ProbeSpec(task="tabletop_pick", objects=[""], instructions=["", "pick up the thing"], seeds=[0, 1],
                     max_steps=2, num_ddim_steps=2, width=160, height=120)  # fmt: skip
    serial = run_probe(spec, ST4VLAPolicy.load(tiny_checkpoint))
    seen: list = []
    on_ray = run_probe(spec, tiny_checkpoint, ray=sweep.LOCAL, workers=2, sessions_root=tmp_path,
                       progress=lambda done, total, row: seen.append((done, total, row.seed)))  # fmt: skip
    strip = {"seconds": 0.0, "session": ""}
    assert [{**asdict(r), **strip} for r in on_ray.rows] == [{**asdict(r), **strip} for r in serial.rows]
    assert [d for d, _, _ in seen] == [1, 2, 3, 4] and all(t == 4 for _, t, _ in seen)
    assert all((tmp_path / r.session / "steps.jsonl").exists() for r in on_ray.rows)  # saved by the actors
    with pytest.raises(ProbeError, match="checkpoint folder"):
        run_probe(spec, ST4VLAPolicy.load(tiny_checkpoint), ray=sweep.LOCAL)


def test_the_ray_flag_takes_an_optional_address():
    from workbench.train.command import parse_evaluate

    base = ["--checkpoint", "c"]
    assert parse_evaluate(base).ray is None
    assert parse_evaluate([*base, "--ray", "--workers", "2"]).ray == sweep.LOCAL
    assert parse_evaluate([*base, "--ray", "auto"]).ray == "auto"
    assert parse_evaluate(["--ray", "ray://head:10001", *base]).ray == "ray://head:10001"


@pytest.mark.slow
def test_the_apps_probe_runs_on_ray_and_its_table_fills_in_as_episodes_finish(
    local_ray, tiny_checkpoint, tmp_path
):
    import shutil

    from gradio_client import Client

    from panels import app
    from panels.state import AppConfig

    shutil.copytree(tiny_checkpoint, tmp_path / "ckpts" / "tiny")
    config = AppConfig(port=7930, checkpoint_dirs=[tmp_path / "ckpts"], data_dirs=[tmp_path / "data"],
                       sessions_dir=tmp_path / "sessions", demo_checkpoint=tmp_path / "no-demo")  # fmt: skip
    demo, url = app.launch(config, block=False)
    try:
        client = Client(url, verbose=False)
        load = dict(ckpt="tiny", ckpt_b="", mode="shared", kind="sim", task="tabletop_pick", seed=0, split="seen",
                    obj="", episode="", simpler_task=None, ddim=2, cfg=1.5, horizon=7, alpha=0.1, instruction="")  # fmt: skip
        client.predict(*load.values(), api_name="/load")
        # objects, instructions, seeds, max steps, task, split, A/B, on Ray, address (local), workers
        job = client.submit(
            [], "", "0, 1, 2", 2, "tabletop_pick", "seen", "A", True, "", 2, api_name="/probe"
        )
        job.result(timeout=300)
        counts = [len(out[0]["data"]) for out in job.outputs()]  # (table, plot): the state stays
    finally:
        demo.close()
    assert counts[:3] == [1, 2, 3] and counts[-1] == 3  # a row per finished episode, then the final table
    sessions = sorted(p.name for p in (tmp_path / "sessions").iterdir())
    assert len(sessions) == 3 and all(s.startswith("probe-") for s in sessions)  # saved by the Ray workers


def test_a_probe_row_that_could_not_run_is_no_outcome_in_the_heat_map():
    from workbench.viz.probe_figure import probe_figure

    ran = {"object": "cube", "instruction": "pick", "prompt": "pick", "success": False, "triage": "reach"}
    broken = {**ran, "triage": "", "status": "error", "error": "RuntimeError: worker died"}
    assert probe_figure([ran, broken]).to_dict() == probe_figure([ran]).to_dict()
