"""Comparing two evaluation reports: matched episodes and Newcombe's paired interval."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.compare import compare, gaps, load_report, matched, paired_difference, pool, success_table
from workbench.eval_report import EpisodeResult, EvalReport, wilson, write_report
from workbench.evaluate import EvalConfig


def _pairs(both: int, only_a: int, only_b: int, neither: int) -> list[tuple[bool, bool]]:
    return (
        [(True, True)] * both
        + [(True, False)] * only_a
        + [(False, True)] * only_b
        + [(False, False)] * neither
    )


def test_paired_interval_matches_a_published_value():
    # the paired 2x2 table [[59, 6], [16, 80]] (Fagerland, Lydersen & Laake, ch. 8): -0.0621 [-0.1186, -0.0046]
    d, lo, hi = paired_difference(_pairs(59, 6, 16, 80))
    assert (d, lo, hi) == (pytest.approx(-0.0621, abs=1e-4), pytest.approx(-0.1186, abs=1e-4),
                           pytest.approx(-0.0046, abs=1e-4))  # fmt: skip


def test_pairing_narrows_the_interval_and_stays_in_range():
    # the same margins (30/50 against 20/50), with the outcomes correlated or not
    d_corr, lo_corr, hi_corr = paired_difference(_pairs(20, 10, 0, 20))
    d_ind, lo_ind, hi_ind = paired_difference(_pairs(12, 18, 8, 12))
    assert d_corr == d_ind == pytest.approx(0.2)
    assert hi_corr - lo_corr < hi_ind - lo_ind and lo_corr > 0
    # A always, B never: the two Wilson half-widths add in quadrature (no correlation to use)
    lowest = 1 - math.sqrt(2) * (1 - wilson(50, 50)[0])
    assert paired_difference(_pairs(0, 50, 0, 0)) == (1.0, pytest.approx(lowest), 1.0)
    d, lo, hi = paired_difference(_pairs(0, 0, 0, 40))
    assert d == 0.0 and lo < 0 < hi


def _report(name: str, successes: dict[tuple[str, int], bool]) -> EvalReport:
    cfg = EvalConfig(checkpoint=name, tasks=("tabletop_pick",), episodes=3)
    report = EvalReport(name, {**cfg.__dict__, "cells": [list(c) for c in cfg.cells]})
    for (objects, seed), success in successes.items():
        report.episodes.append(EpisodeResult("tabletop_pick", objects, "seen", seed, "pick x", success, 5))
    return report


def test_episodes_are_matched_by_task_cell_and_seed(tmp_path):
    a = _report("a", {("seen", 1): True, ("seen", 2): True, ("unseen", 3): True, ("unseen", 9): True})
    b = _report("b", {("seen", 1): True, ("seen", 2): False, ("unseen", 3): False, ("seen", 9): True})
    assert matched(a, b) == [(True, True), (True, False), (True, False)]  # seed 9 is in other cells
    rows = {g.split: g for g in gaps(a, b)}
    assert (rows["all"].n, rows["all"].a_successes, rows["all"].b_successes) == (3, 3, 1)
    assert rows["unseen objects"].difference == pytest.approx(1.0) and rows["unseen paraphrases"].n == 0
    for name, report in (("a", a), ("b", b)):
        write_report(report, tmp_path / name)
    assert load_report(tmp_path / "a").episodes == a.episodes
    text = compare(tmp_path / "a", tmp_path / "b" / "report.json")
    assert "| all | 3/3 | 1/3 | +67 [" in text and "1 episodes of a have no match" in text


def test_the_success_table_has_a_row_per_checkpoint_and_keeps_the_novel_split_apart():
    a = _report("a", {("seen", 1): True, ("seen", 2): False, ("unseen", 3): True, ("novel", 4): False})
    b = _report("b", {("seen", 1): True, ("unseen", 3): False})
    lines = success_table([("a", a), ("b", b), ("c", None)]).splitlines()
    assert lines[0] == (
        "| | seen and unseen objects | seen objects | unseen objects | seen paraphrases | unseen paraphrases "
        "| objects in no data at all |"
    )

    def cell(k: int, n: int) -> str:
        low, high = wilson(k, n)
        return f"{100 * k / n:.0f}% [{100 * low:.0f}, {100 * high:.0f}] ({k}/{n})"

    # the novel episode is in its own column only; every episode here has a seen paraphrase
    assert (
        lines[2] == f"| a | {cell(2, 3)} | {cell(1, 2)} | {cell(1, 1)} | {cell(2, 3)} | n/a | {cell(0, 1)} |"
    )
    assert lines[3] == f"| b | {cell(1, 2)} | {cell(1, 1)} | {cell(0, 1)} | {cell(1, 2)} | n/a | n/a |"
    assert lines[4] == "| c |" + " not evaluated |" * 6
    # without a novel episode anywhere, no novel column
    assert "in no data at all" not in success_table([("b", b)])


def test_a_report_written_before_the_rename_reads_its_source_as_the_object(tmp_path):
    report = _report("a", {("seen", 1): True, ("unseen", 2): False})
    report.episodes[0].object = "red cube"
    write_report(report, tmp_path / "a")
    data = json.loads((tmp_path / "a" / "report.json").read_text())
    for e in data["episodes"]:  # the older report.json: the object to move under "source"
        e["source"] = e.pop("object")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "report.json").write_text(json.dumps(data))
    old = load_report(tmp_path / "old")
    assert old.episodes == report.episodes and [e.object for e in old.episodes] == ["red cube", None]
    assert old.summary()["by_object"][0]["object"] == "red cube"
    assert "| all | 1/2 | 1/2 | +0 [" in compare(tmp_path / "old", tmp_path / "a")
    assert EpisodeResult.from_json({**data["episodes"][0], "object": "pink cube"}).object == "pink cube"


def test_bad_reports_get_a_clear_error(tmp_path, capsys):
    write_report(_report("a", {("seen", 1): True}), tmp_path / "a")
    write_report(_report("b", {("seen", 2): True}), tmp_path / "b")
    with pytest.raises(ValueError, match="share no episode"):
        compare(tmp_path / "a", tmp_path / "b")
    (tmp_path / "bad.json").write_text(json.dumps({"episodes": [{"task": "x"}]}))
    with pytest.raises(ValueError, match="not a workbench evaluation report"):
        load_report(tmp_path / "bad.json")
    assert main(["compare", str(tmp_path / "missing"), str(tmp_path / "a")]) == 2
    assert "no evaluation report" in capsys.readouterr().err


BUNDLED = Path(__file__).resolve().parents[1] / "assets" / "checkpoints" / "st4vla-tiny"


def test_evaluate_command_passes_the_inference_settings_on(tmp_path):
    """`workbench evaluate --cfg-scale --ensemble-horizon --ddim-steps`: a real (two-step) run of the
    bundled checkpoint whose report records the settings it ran with."""
    out = tmp_path / "eval"
    argv = [
        "evaluate", "--checkpoint", str(BUNDLED), "--episodes", "1", "--max-steps", "2",
        "--tasks", "tabletop_pick", "--cells", "seen/seen", "--no-grounding", "--out", str(out),
        "--cfg-scale", "1.0", "--ensemble-horizon", "1", "--ddim-steps", "3",
    ]  # fmt: skip
    assert main(argv) == 0
    config = json.loads((out / "report.json").read_text())["config"]
    assert (config["cfg_scale"], config["ensemble_horizon"], config["ddim_steps"]) == (1.0, 1, 3)


def test_seed_sets_pool_into_one_comparison(tmp_path, capsys):
    """Two seed sets per checkpoint: the gap over their union, and a repeated episode refused."""
    sets = {
        "a1": _report("a", {("seen", 1): True, ("seen", 2): True}),
        "a2": _report("a", {("seen", 11): True, ("unseen", 12): False}),
        "b1": _report("b", {("seen", 1): False, ("seen", 2): True}),
        "b2": _report("b", {("seen", 11): False, ("unseen", 12): False}),
    }
    for name, report in sets.items():
        write_report(report, tmp_path / name)
    assert pool([sets["a1"], sets["a2"]]).episodes == sets["a1"].episodes + sets["a2"].episodes
    args = [
        "compare",
        str(tmp_path / "a1"),
        str(tmp_path / "a2"),
        "--vs",
        str(tmp_path / "b1"),
        str(tmp_path / "b2"),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert (
        "4 matched episodes" in out and "| all | 3/4 | 1/4 |" in out and "| seen objects | 3/3 | 1/3 |" in out
    )
    with pytest.raises(ValueError, match="repeat an episode"):
        pool([sets["a1"], sets["a1"]])
    with pytest.raises(ValueError, match="different checkpoints"):
        pool([sets["a1"], sets["b2"]])
    assert main(["compare", str(tmp_path / "a1"), str(tmp_path / "a2"), str(tmp_path / "b1")]) == 2
    assert "--vs" in capsys.readouterr().err
