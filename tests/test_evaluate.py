"""Evaluation: Wilson intervals, the report (md + json + html), and closed-loop rollouts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from workbench.eval_report import CELLS, EpisodeResult, EvalReport, markdown, wilson, write_report
from workbench.evaluate import EvalConfig, episode_seed, evaluate

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "checkpoints"


def test_wilson_matches_known_values():
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    lo, hi = wilson(10, 10)
    assert lo == pytest.approx(0.7225, abs=1e-4) and hi == 1.0
    assert wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes <= n"):
        wilson(3, 2)


def test_every_episode_of_a_task_has_its_own_scene_and_a_subset_of_cells_replays_it():
    cfg = EvalConfig(checkpoint="x", episodes=5, seed=100)
    seeds = {c: [episode_seed(cfg, *c, k) for k in range(5)] for c in CELLS}
    every = [s for cell in seeds.values() for s in cell]
    assert sorted(every) == list(range(100, 120))  # 20 distinct scenes, none skipped
    validation = EvalConfig(checkpoint="x", episodes=5, seed=100, cells=(("seen", "unseen"),))
    assert [episode_seed(validation, "seen", "unseen", k) for k in range(5)] == seeds[("seen", "unseen")]
    paired = EvalConfig(checkpoint="x", episodes=5, seed=100, paired_scenes=True)
    assert all([episode_seed(paired, *c, k) for k in range(5)] == list(range(100, 105)) for c in CELLS)
    with pytest.raises(ValueError, match="unknown cells"):
        EvalConfig(checkpoint="x", cells=(("seen", "maybe"),))


def _report() -> EvalReport:
    cfg = EvalConfig(checkpoint="ckpt", tasks=("tabletop_pick",), episodes=2)
    report = EvalReport("ckpt", {**cfg.__dict__, "cells": [list(c) for c in cfg.cells]})
    flags = {("seen", "seen"): [True, True], ("seen", "unseen"): [True, False],
             ("unseen", "seen"): [False, False], ("unseen", "unseen"): [True, False]}  # fmt: skip
    for (o, p), fs in flags.items():
        for k, f in enumerate(fs):
            report.episodes.append(
                EpisodeResult(
                    "tabletop_pick",
                    o,
                    p,
                    k,
                    "pick x",
                    f,
                    5,
                    0.5 if o == "seen" else 0.1,
                    1.0,
                    centre_error=0.1 * (k + 1) if o == "seen" else None,  # None: a report from before it
                    object=("red cube" if k == 0 else "green cube") if o == "seen" else "pink cube",
                )  # fmt: skip
            )
    return report


def test_report_splits_and_files(tmp_path):
    report = _report()
    s = report.summary()
    assert s["objects"]["seen"]["successes"] == 3 and s["objects"]["seen"]["n"] == 4
    assert s["objects"]["unseen"]["successes"] == 1
    assert s["paraphrase"]["unseen"]["successes"] == 2
    assert s["tasks"]["tabletop_pick"]["seen/seen"]["rate"] == 1.0
    assert s["grounding"]["seen"]["box_iou"] == pytest.approx(0.5)
    assert s["grounding"]["seen"]["centre_error"] == pytest.approx(np.sqrt((0.01 + 0.04) / 2))  # RMS
    assert np.isnan(s["grounding"]["unseen"]["centre_error"])
    md = markdown(report)
    assert "| seen objects | 0.500 | 1.000 | 0.158 | 4 |" in md
    assert "| tabletop_pick | 100% [" in md and "unseen objects | 25% [" in md
    assert "each on its own scene" in md and "seed 10000 + 4k + c" in md
    # per object to move, seen split first: green cube 1/2, red cube 2/2 (seen), pink cube 1/4 (unseen)
    assert [(r["object"], r["successes"], r["n"]) for r in s["by_object"]] == [
        ("green cube", 1, 2), ("red cube", 2, 2), ("pink cube", 1, 4),
    ]  # fmt: skip
    assert "| object | split | success | box IoU |" in md
    assert "| pink cube | unseen | 25% [" in md and "| red cube | seen | 100% [" in md
    paths = write_report(report, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert len(data["episodes"]) == 8 and data["summary"]["overall"]["successes"] == 4
    html = paths["html"].read_text()
    assert "plotly" in html.lower() and "tabletop_pick" in html


def test_report_counts_triage_reasons_per_split(tmp_path):
    report = _report()
    reasons = iter(["success", "success", "success", "grasp", "reach", "reach", "success", "time"])
    for e in report.episodes:  # in the order of _report: seen/seen, seen/unseen, unseen/seen, unseen/unseen
        e.triage = next(reasons)
    report.episodes.append(replace(report.episodes[-1], seed=9, triage=None))  # an older report's episode
    counts = report.summary()["triage"]
    assert counts["objects seen"] == {**dict.fromkeys(counts["all"], 0), "success": 3, "grasp": 1}
    assert counts["objects unseen"]["reach"] == 2 and counts["objects unseen"]["time"] == 1
    assert counts["paraphrase unseen"]["grasp"] == 1 and counts["paraphrase unseen"]["time"] == 1
    assert sum(counts["all"].values()) == 8  # the untriaged episode is left out
    md = markdown(report)
    assert "| outcome (workbench/triage.py) | objects seen | objects unseen |" in md
    assert "| reach | 0 | 2 | 2 | 0 | 2 |" in md
    data = json.loads(write_report(report, tmp_path)["json"].read_text())
    assert [e["triage"] for e in data["episodes"]][:4] == ["success", "success", "success", "grasp"]
    assert data["summary"]["triage"]["all"]["success"] == 4
    assert "| outcome" not in markdown(_report())  # nothing triaged: no table


@pytest.mark.slow
def test_evaluation_on_a_handful_of_seeds_writes_the_report(tmp_path):
    from workbench.policy.policy import ST4VLAPolicy
    from workbench.train.common import model_size

    policy = ST4VLAPolicy.from_config(model_size("test").config(), seed=0)
    cfg = EvalConfig(
        checkpoint="random-test", out=str(tmp_path), tasks=("tabletop_pick",), episodes=1, max_steps=3
    )
    report = evaluate(cfg, policy=policy)
    assert len(report.episodes) == 4 and len({e.seed for e in report.episodes}) == 4
    assert {(e.objects, e.paraphrase) for e in report.episodes} == {tuple(c) for c in cfg.cells}
    assert all(e.steps == 3 and e.box_iou is not None for e in report.episodes)
    assert all(e.centre_error >= 0.0 for e in report.episodes)  # an untrained model's answer, scored
    # every episode triaged from the sim's ground truth (3 steps: never a success)
    assert all(e.triage in ("grounding", "reach", "grasp", "time") for e in report.episodes)
    assert all(e.triage_evidence["min_tcp_to_object"] > 0 for e in report.episodes)
    assert all(e.triage_evidence["steps"] == 4 for e in report.episodes)  # the reset and 3 steps
    from workbench.sim.catalog import CATALOG

    assert all(CATALOG[e.object].split == e.objects for e in report.episodes)  # the object moved, named
    # unseen paraphrases are drawn from the unseen bank
    from workbench.sim.instructions import BANK

    unseen = [e for e in report.episodes if e.paraphrase == "unseen"]
    templates = [t.split("{")[0] for t in BANK["tabletop_pick"]["unseen"]]
    assert all(any(e.instruction.startswith(t) for t in templates) for e in unseen)
    paths = write_report(report, tmp_path)
    assert all(p.exists() and p.stat().st_size > 0 for p in paths.values())


def _rollouts(policy, episodes: int) -> tuple[float, float]:
    """Success rate and mean closest approach on the first `episodes` pick scenes of the cards' seeds."""
    cfg = EvalConfig(checkpoint="x", tasks=("tabletop_pick",), episodes=episodes, seed=10_000,
                     cells=(("seen", "seen"),), grounding=False, max_steps=40)  # fmt: skip
    episodes = evaluate(cfg, policy=policy).episodes
    return float(np.mean([e.success for e in episodes])), float(np.mean([e.reach_distance for e in episodes]))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["st4vla-tiny", "vanilla-tiny"])
def test_bundled_checkpoints_load_and_beat_a_random_policy(name):
    """Same seeds, same architecture: the trained weights against freshly initialised ones.

    "Beat" is a higher success rate, or (success being rare for these CPU-trained demo models, see
    their cards) the same success rate with the gripper getting closer to the object to pick.
    """
    from workbench.policy.policy import ST4VLAPolicy

    path = ASSETS / name
    if not (path / "model.safetensors").exists():
        pytest.fail(f"bundled checkpoint {path} is missing")
    trained = ST4VLAPolicy.load(path)
    random = ST4VLAPolicy.from_config(
        trained.config, tokenizer_dir=path, statistics=trained.statistics, seed=1
    )
    random.unnorm_key = trained.unnorm_key
    (s_trained, d_trained), (s_random, d_random) = _rollouts(trained, 6), _rollouts(random, 6)
    assert s_trained > s_random or (s_trained == s_random and d_trained < d_random), (
        f"trained success {s_trained:.2f} reach {d_trained:.3f} m vs random {s_random:.2f} reach {d_random:.3f} m"
    )


def test_the_state_the_policy_reads_can_be_supplied(tmp_path):
    """evaluate(transform=...) feeds the action expert what the input transform returns: a model reading
    11 values is refused on the 9 joints alone and runs on joints + 2 extra values."""
    from dataclasses import replace

    from workbench.policy.normalization import compute_statistics
    from workbench.policy.policy import ST4VLAPolicy
    from workbench.train.common import model_size

    rng = np.random.default_rng(0)
    stats = {"sim": compute_statistics(rng.normal(size=(50, 7)), rng.normal(size=(50, 11)))}
    config = model_size("test").config()
    config.action.state_dim = 11
    policy = ST4VLAPolicy.from_config(config, statistics=stats, seed=0)
    cfg = EvalConfig(checkpoint="x", tasks=("tabletop_pick",), episodes=1, cells=(("seen", "seen"),),
                     grounding=False, max_steps=2)  # fmt: skip
    with pytest.raises(ValueError, match="reads 11 joint values"):
        evaluate(cfg, policy=policy)
    seen = []

    def joints_and_two(inputs, step):
        seen.append(step)
        return replace(inputs, state=np.concatenate([inputs.observation.state, [0.5, -0.5]]))

    report = evaluate(cfg, policy=policy, transform=joints_and_two, state_mapping="neutral")
    assert report.episodes[0].steps == 2 and seen == [0, 1, 2]  # the final observation is asked too


def test_novel_cells_are_asked_for_seeded_apart_and_skip_stack():
    """Objects in no data at all: cells novel/seen and novel/unseen, only on request; their seeds never
    meet the four default cells' (whose seeds stay what they were), and stack, with no novel object to
    move, has no episode in them."""
    import tyro

    from workbench.eval_report import NOVEL_CELLS
    from workbench.evaluate import episode_specs

    assert EvalConfig(checkpoint="x").cells == CELLS
    cfg = tyro.cli(EvalConfig, args=["--checkpoint", "x", "--cells", "novel/seen", "novel/unseen"])
    assert cfg.cells == NOVEL_CELLS
    everything = EvalConfig(checkpoint="x", episodes=50, seed=100, cells=CELLS + NOVEL_CELLS)
    seeds = [episode_seed(everything, *c, k) for c in CELLS + NOVEL_CELLS for k in range(50)]
    assert len(set(seeds)) == len(seeds)
    assert sorted(episode_seed(everything, *c, k) for c in CELLS for k in range(50)) == list(range(100, 300))
    specs = episode_specs(replace(cfg, episodes=2))
    assert {s.task for s in specs} == {
        "tabletop_put_on",
        "tabletop_put_in",
        "tabletop_pick",
        "tabletop_move_near",
    }
    assert len(specs) == 4 * 2 * 2 and {s.objects for s in specs} == {"novel"}


def test_report_names_the_novel_split_by_what_it_holds():
    report = _report()
    assert "| objects in no data at all |" not in markdown(report)  # a run without novel cells: as before
    report.config["cells"] = [*report.config["cells"], ["novel", "seen"]]
    for k, ok in enumerate([True, False, False]):
        report.episodes.append(
            EpisodeResult(
                "tabletop_pick",
                "novel",
                "seen",
                500_000 + k,
                "pick gadget",
                ok,
                5,
                0.2,
                0.0,
                reach_distance=0.05,
                object="gadget 530",
                triage="success" if ok else "grounding",
            )  # fmt: skip
        )
    s = report.summary()
    assert s["objects"]["novel"]["successes"] == 1 and s["objects"]["novel"]["n"] == 3
    assert s["grounding"]["novel"]["box_iou"] == pytest.approx(0.2)
    assert s["tasks"]["tabletop_pick"]["novel/seen"]["n"] == 3
    md = markdown(report)
    assert "objects in no data at all (cells novel/...) in no demonstration, grounding scene or corpus" in md
    assert "| objects in no data at all | 33% [" in md  # the split table
    assert "| objects in no data at all | 0.200 | 0.000 |" in md  # grounding
    assert "| seen objects | unseen objects | objects in no data at all |" in md  # closest approach
    assert "| objects seen | objects unseen | objects in no data at all | paraphrase seen |" in md  # triage
    assert "| gadget 530 | novel (in no data at all) | 33% [" in md
    assert s["by_object"][-1]["object"] == "gadget 530"  # after the seen and unseen objects
    assert "of the novel cells (novel/seen 0, novel/unseen 1), seed 10000 + 500000 + 2k + c" in md


@pytest.mark.slow
def test_evaluation_of_objects_in_no_data_at_all(tmp_path):
    """A closed-loop run of the novel cells: each episode moves a novel mesh, called "gadget"."""
    from workbench.policy.policy import ST4VLAPolicy
    from workbench.sim.catalog import CATALOG
    from workbench.train.common import model_size

    policy = ST4VLAPolicy.from_config(model_size("test").config(), seed=0)
    cfg = EvalConfig(checkpoint="random-test", tasks=("tabletop_pick", "tabletop_stack"), episodes=1,
                     max_steps=2, cells=(("novel", "seen"), ("novel", "unseen")))  # fmt: skip
    report = evaluate(cfg, policy=policy)
    assert [(e.task, e.objects, e.paraphrase) for e in report.episodes] == [
        ("tabletop_pick", "novel", "seen"), ("tabletop_pick", "novel", "unseen"),
    ]  # fmt: skip
    assert all(e.status == "ok" and CATALOG[e.object].split == "novel" for e in report.episodes)
    assert all(
        "gadget" in e.instruction and not any(c.isdigit() for c in e.instruction) for e in report.episodes
    )
    md = markdown(report)
    assert "| tabletop_pick | 0% [" in md and "| objects in no data at all | 0% [" in md


def test_compare_gives_the_gap_on_objects_in_no_data_at_all():
    from workbench.compare import gaps

    def novel_report(flags):
        r = EvalReport("x", {"cells": [["novel", "seen"]]})
        r.episodes = [
            EpisodeResult("tabletop_pick", "novel", "seen", k, "pick gadget", f, 5)
            for k, f in enumerate(flags)
        ]
        return r

    rows = {g.split: g for g in gaps(novel_report([True, True, False]), novel_report([False, True, False]))}
    assert rows["objects in no data at all"].n == 3 and rows["objects in no data at all"].a_successes == 2
    assert "objects in no data at all" not in {g.split for g in gaps(_report(), _report())}


def test_a_stopped_evaluation_resumes_only_when_the_same_evaluation_wrote_it(tmp_path, capsys):
    """`workbench evaluate --resume` keeps the finished episodes of --out's report and runs the rest;
    other flags or other weights in the same --out are refused, naming the field."""
    from workbench.cli import main
    from workbench.policy.policy import ST4VLAPolicy
    from workbench.train.common import model_size

    ckpt, out = tmp_path / "ckpt", tmp_path / "eval"
    ST4VLAPolicy.from_config(model_size("test").config(), seed=0).save(ckpt)
    argv = ["evaluate", "--checkpoint", str(ckpt), "--tasks", "tabletop_pick", "--episodes", "1",
            "--max-steps", "2", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    full = json.loads((out / "report.json").read_text())
    assert len(full["episodes"]) == 4 and len(full["config"]["weights_sha256"]) == 64
    # stopped after two episodes; the second marked, so that a rerun of it would show
    stopped = {**full, "episodes": full["episodes"][:2]}
    stopped["episodes"][1] = {**stopped["episodes"][1], "steps": 99}
    (out / "report.json").write_text(json.dumps(stopped))
    assert main([*argv, "--resume"]) == 0
    resumed = json.loads((out / "report.json").read_text())["episodes"]
    assert [e["seed"] for e in resumed] == [e["seed"] for e in full["episodes"]]
    assert resumed[1]["steps"] == 99  # kept, not run again
    assert [e["success"] for e in resumed[2:]] == [e["success"] for e in full["episodes"][2:]]
    assert [e["instruction"] for e in resumed[2:]] == [e["instruction"] for e in full["episodes"][2:]]

    capsys.readouterr()
    assert main([*argv[:-2], "--max-steps", "3", "--out", str(out), "--resume"]) == 2
    assert "max_steps: 2 there, 3 now" in capsys.readouterr().err
    ST4VLAPolicy.from_config(model_size("test").config(), seed=1).save(ckpt)  # other weights, same path
    assert main([*argv, "--resume"]) == 2
    assert "weights_sha256" in capsys.readouterr().err
    assert len(json.loads((out / "report.json").read_text())["episodes"]) == 4  # nothing lost
