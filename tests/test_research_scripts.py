"""The diagnostics kept under research/experiments/ still start against today's library.

They are not part of the product (nothing in workbench/ imports them), but docs/results.md rests on
their figures, so each must at least import the library pieces it uses and parse its options.
One interpreter runs them all (`runpy` with `--help`), so torch is imported once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("oracle_points.py", "grounding_breakdown.py", "linear_probe.py")

RUNNER = """
import runpy, sys
for path in sys.argv[1:]:
    sys.argv = [path, "--help"]
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exit:
        if exit.code not in (0, None):
            raise
    print("SMOKE-OK", path, flush=True)
"""


def test_research_scripts_parse_help() -> None:
    paths = [str(ROOT / "research" / "experiments" / name) for name in SCRIPTS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, *paths], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for path in paths:
        assert f"SMOKE-OK {path}" in done.stdout, done.stdout[-3000:]
    assert done.stdout.count("usage:") == len(paths)


def test_product_does_not_import_research() -> None:
    for folder in ("workbench", "panels"):
        for source in (ROOT / folder).rglob("*.py"):
            text = source.read_text()
            assert "import research" not in text and "from research" not in text, source


def test_ablation_dry_run_prints_the_full_budget_and_writes_nothing(tmp_path) -> None:
    out = tmp_path / "never"
    done = subprocess.run(
        [sys.executable, str(ROOT / "research" / "ablation" / "run.py"), "--out", str(out), "--dry-run"],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("workbench ")]
    stage1 = [line for line in lines if line.startswith("workbench train stage1")]
    stage2 = [line for line in lines if line.startswith("workbench train stage2")]
    assert len(stage1) == 2 and all("--steps 7000 --batch-size 16" in line for line in stage1)
    assert len(stage2) == 5 and all("--steps 2000 --batch-size 12" in line for line in stage2)
    assert all("--head-steps 8000 --head-batch-size 32" in line for line in stage2)
    evaluations = [line for line in lines if line.startswith("workbench evaluate")]
    assert len(evaluations) == 24
    novel = [line for line in evaluations if "--cells novel/seen novel/unseen" in line]
    assert len(novel) == 6 and all("--episodes 30 --seed 60000" in line for line in novel)
    assert all("--episodes 10" in line for line in evaluations if line not in novel)
    assert sum(line.startswith("workbench compare") for line in lines) == 20
    (locator,) = [line for line in lines if line.startswith("workbench train locator")]
    assert "--steps 7000 --batch-size 16" in locator and "--image-size 112" in locator
    assert not out.exists()


@pytest.mark.slow
def test_ablation_runs_every_arm_end_to_end_at_the_smoke_scale(tmp_path) -> None:
    """research/ablation/run.py at its smallest budget: five loadable arms, each what docs/ablation.md says,
    and the learned control, evaluated on the same episodes of three seed sets; the paired comparisons."""
    from workbench.policy.policy import ST4VLAPolicy

    out = tmp_path / "ablation"
    argv = ["--scale", "0.001", "--size", "test", "--eval-tasks", "tabletop_pick", "--max-steps", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "research" / "ablation" / "run.py"), *argv, "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[ablation 39/39" in done.stdout and "finished" in done.stdout
    # every dataset's instructions and objects were read; nothing held out was where its split says not
    check = json.loads((out / "heldout_check.json").read_text())
    assert len(check["instructions"]) == 5 and all(n > 0 for n in check["instructions"].values())
    assert all(check["objects"].values()) and check["unseen_objects_in_demonstrations"] == []
    assert not any(check["held_out_paraphrases_found"].values())
    assert not any(check["novel_objects_found"].values())

    # one tokenizer for every arm; the vanilla arms' stage 1 asked no spatial question
    tokenizer = (out / "stage1_spatial" / "tokenizer" / "tokenizer.json").read_text()
    assert (out / "stage1_nonspatial" / "tokenizer" / "tokenizer.json").read_text() == tokenizer
    assert json.loads((out / "stage1_nonspatial" / "config.json").read_text())["content"] == "nonspatial"
    assert json.loads((out / "stage1_spatial" / "config.json").read_text())["pointing"] == 0.5

    arms = {}
    for arm in ("vanilla", "vanilla_cotrain", "st4vla_upstream", "st4vla_points", "control"):
        policy = ST4VLAPolicy.load(out / "arms" / arm / "final")
        run = json.loads((out / "arms" / arm / "config.json").read_text())
        arms[arm] = (policy.config, run)
        # the same budget: steps, batches and demonstrations
        assert (run["steps"], run["batch_size"], run["grounding_batch_size"], run["head"]["steps"]) == (
            2,
            12,
            4,
            8,
        )
        assert run["data"] == [str(out / "data" / "demos")]
        assert policy.config.grounding_loss_weight == 0.1 and policy.reads_state
        for seed in (10000, 20000, 50000):
            report = json.loads((out / "eval" / arm / str(seed) / "report.json").read_text())
            episodes = report["episodes"]
            assert len(episodes) == 4 and all(e["status"] == "ok" for e in episodes)  # 1 task x 4 cells x 1
            assert sorted(e["seed"] for e in episodes) == [seed, seed + 1, seed + 2, seed + 3]
    spatial = {arm: cfg.use_spatial_prompt for arm, (cfg, _) in arms.items()}
    assert spatial == {"vanilla": False, "vanilla_cotrain": False, "st4vla_upstream": True,
                       "st4vla_points": True, "control": False}  # fmt: skip
    assert [arm for arm, (cfg, _) in arms.items() if cfg.answer_points] == ["st4vla_points"]
    # taught spatial answers: by the spatial stage 1 or by spatial co-training; the app asks only those
    taught = {arm: cfg.spatial_answers for arm, (cfg, _) in arms.items()}
    assert taught == {"vanilla": False, "vanilla_cotrain": True, "st4vla_upstream": True,
                      "st4vla_points": True, "control": False}  # fmt: skip
    assert [arm for arm, (_, run) in arms.items() if run["true_points"]] == ["control"]
    stage1 = {arm: run["init"].split("/")[-2] for arm, (_, run) in arms.items()}
    assert stage1 == {"vanilla": "stage1_nonspatial", "vanilla_cotrain": "stage1_nonspatial",
                      "st4vla_upstream": "stage1_spatial", "st4vla_points": "stage1_spatial",
                      "control": "stage1_nonspatial"}  # fmt: skip
    content = {arm: run["grounding_content"] for arm, (_, run) in arms.items()}
    assert content == {"vanilla": "nonspatial", "vanilla_cotrain": "spatial", "st4vla_upstream": "spatial",
                       "st4vla_points": "spatial", "control": "nonspatial"}  # fmt: skip
    assert arms["control"][0].action.state_dim == arms["vanilla"][0].action.state_dim + 4

    # the learned control: the control's checkpoint on the locator's points (trained on stage 1's budget)
    from workbench.train.locator import load_locator

    assert load_locator(out / "locator" / "final")[1] == 56  # the test size's images
    assert json.loads((out / "locator" / "config.json").read_text())["steps"] == 7
    for seed in (10000, 20000, 50000):
        report = json.loads((out / "eval" / "control_learned" / str(seed) / "report.json").read_text())
        assert len(report["episodes"]) == 4 and report["checkpoint"] == str(
            out / "arms" / "control" / "final"
        )

    comparisons = (out / "comparisons.md").read_text()
    assert comparisons.count("## ") == 20 and "## st4vla_points over control_learned" in comparisons
    assert "# Objects in no data at all (the novel split, seed 60000)" in comparisons
    # the success table: a row per evaluated arm, its 12 seed-set episodes apart from its 2 novel ones
    rows = [line for line in comparisons.splitlines() if line.startswith("| ") and "(" in line]
    table = {
        row.split(" | ")[0][2:]: row for row in rows if row.split(" | ")[0][2:] in (*arms, "control_learned")
    }
    assert len(table) == 6 and all(row.count("/12)") == 1 and row.endswith("/2) |") for row in table.values())
    commands = (out / "commands.sh").read_text().splitlines()
    assert sum(line.startswith("workbench train stage2") for line in commands) == 5
    assert sum(line.startswith("workbench evaluate") for line in commands) == 24
    timings = json.loads((out / "timings.json").read_text())
    assert {"stage1 spatial", "stage2 control", "evaluate control 50000", "evaluate control 60000"} <= set(
        timings
    )
    # every arm on objects in no data at all: the pick task's two novel cells, one episode each at this scale
    for arm in (*arms, "control_learned"):
        episodes = json.loads((out / "eval" / arm / "60000" / "report.json").read_text())["episodes"]
        assert sorted((e["objects"], e["paraphrase"]) for e in episodes) == [
            ("novel", "seen"),
            ("novel", "unseen"),
        ]
