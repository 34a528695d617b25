"""`workbench train|evaluate|compare`: each phase's config dataclass is its command line.

Every command line the README, docs/ and scripts/make_cards.py show parses, and the recipe's commands
parse into exactly the configs the earlier hand-written parser built (the expected values below are
that parser's, field by field). Flag names of earlier versions are still accepted.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import sys
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.evaluate import CELLS, TASKS, EvalConfig
from workbench.train import command
from workbench.train.answers import AnswerPhaseConfig
from workbench.train.card import record_command
from workbench.train.common import model_size
from workbench.train.head import HeadContinueConfig
from workbench.train.stage1 import Stage1Config
from workbench.train.stage2 import Stage2Config

ROOT = Path(__file__).resolve().parents[1]


def train(line: str):
    phase, cfg = command.parse_train(shlex.split(line))
    return cfg


def test_stage1_recipe_command_parses_into_the_recipes_config():
    cfg = train(
        "stage1 --data runs/v2/demos runs/v2/scenes --curriculum-data runs/v2/scenes_one --curriculum-steps 1200 "
        "--warmup 200 --lr 3e-4 --eval-every 300 --steps 4500 --pointing 0.5 --text-first --threads 2 --seed 1 "
        "--out runs/v11/pt_tf_s1"
    )
    assert isinstance(cfg, Stage1Config)
    assert cfg.data == ("runs/v2/demos", "runs/v2/scenes") and cfg.curriculum_data == ("runs/v2/scenes_one",)
    assert (cfg.curriculum_steps, cfg.steps, cfg.eval_every, cfg.pointing) == (1200, 4500, 300, 0.5)
    assert (cfg.optim.lr, cfg.optim.warmup_steps, cfg.optim.lr_vision) == (3e-4, 200, None)
    assert cfg.model == model_size("demo", text_first=True) and cfg.model.text_first
    assert (cfg.threads, cfg.seed, cfg.out, cfg.resume) == (2, 1, "runs/v11/pt_tf_s1", True)
    # the command line's defaults are the dataclass's: what a bare `workbench train stage1` runs
    bare = train("stage1")
    assert bare == Stage1Config()
    assert (bare.steps, bare.heldout_episodes, bare.eval_every, bare.optim.warmup_steps) == (
        1200,
        20,
        200,
        150,
    )
    assert bare.model == model_size("demo") and bare.init is None


def test_stage1_model_and_optimiser_flags():
    cfg = train("stage1 --size test --merge 1 --layers 3 --vision-lr 0 --no-resume --init runs/x/final")
    assert cfg.model == model_size("test", merge=1, layers=3)
    assert cfg.optim.lr_vision == 0.0 and not cfg.resume and cfg.init == "runs/x/final"
    assert train("stage1 --lr-vision 0.5 --warmup-steps 9").optim.lr_vision == 0.5
    assert train("stage1 --warmup=7").optim.warmup_steps == 7  # --flag=value form of an old name


def test_stage2_recipe_commands_parse_into_the_recipes_configs():
    wide = "runs/v16/scenes_unseen runs/v16/scenes_unseen runs/v2/demos runs/v2/scenes"
    cfg = train(
        f"stage2 --data runs/v2/demos runs/v2/demos2 --init runs/v16/pt_unseen/final "
        f"--tokenizer runs/v16/pt_unseen/tokenizer --grounding-data {wide} --out runs/v17/st4vla_headtrue "
        "--steps 2000 --batch-size 12 --state --head-steps 8000 --threads 2 --answer-points --head-answers true"
    )
    assert isinstance(cfg, Stage2Config) and cfg.init == "runs/v16/pt_unseen/final" and not cfg.vanilla
    assert cfg.grounding_data == tuple(wide.split()) and cfg.tokenizer == "runs/v16/pt_unseen/tokenizer"
    assert (cfg.steps, cfg.batch_size, cfg.grounding_batch_size, cfg.grounding_loss_weight) == (
        2000,
        12,
        4,
        0.1,
    )
    assert cfg.state and cfg.answer_points and not cfg.tcp and not cfg.condition_on_answer
    assert (cfg.head.steps, cfg.head.batch_size, cfg.head.lr, cfg.head.answers) == (8000, 32, 1e-3, "true")
    assert (cfg.optim.lr, cfg.optim.lr_vlm, cfg.optim.lr_action, cfg.optim.warmup_steps) == (
        5e-4,
        1e-4,
        1e-3,
        100,
    )
    assert cfg.model == model_size("demo") and cfg.threads == 2

    vanilla = train(
        "stage2 --vanilla --text-first --data runs/v2/demos runs/v2/demos2 --tokenizer runs/v11/pt_tf_s1/tokenizer "
        "--out runs/v11/vanilla_tf --steps 2000 --batch-size 12 --state --head-steps 8000"
    )
    assert vanilla.vanilla and vanilla.init is None and vanilla.grounding_loss_weight == 0.0
    assert vanilla.model == model_size("demo", text_first=True) and vanilla.head.steps == 8000
    old = train("stage2 --grounding-weight 0.3 --head-batch-size 8 --head-lr 5e-4 --state --tcp")
    assert (old.grounding_loss_weight, old.head.batch_size, old.head.lr, old.tcp) == (0.3, 8, 5e-4, True)
    assert train("stage2 --head.steps 5 --head.answers true").head.answers == "true"


def test_head_answers_data_and_evaluate_commands():
    head = train(
        "head --checkpoint assets/checkpoints/st4vla-tiny --steps 4000 --lr 5e-4 --answers true --threads 1 "
        "--data runs/v2/demos runs/v2/demos2 runs/v18/demos_dart --out runs/v18/head_dart --warmup 50"
    )
    assert isinstance(head, HeadContinueConfig) and head.checkpoint == "assets/checkpoints/st4vla-tiny"
    assert (head.head.steps, head.head.lr, head.head.answers, head.head.warmup_steps) == (
        4000,
        5e-4,
        "true",
        50,
    )
    assert (
        head.data == ("runs/v2/demos", "runs/v2/demos2", "runs/v18/demos_dart") and head.head.batch_size == 32
    )
    answers = train(
        "answers --checkpoint runs/v20/answers2/final --data a b --out runs/v21/answers3 --steps 4000 "
        "--batch-size 16 --lr 1e-4 --threads 2 --no-resume"
    )
    assert isinstance(answers, AnswerPhaseConfig) and answers.data == ("a", "b") and not answers.resume
    assert (answers.steps, answers.batch_size, answers.lr, answers.threads, answers.warmup_steps) == (
        4000, 16, 1e-4, 2, 50,
    )  # fmt: skip

    demos, scenes = train("data --out runs/v2/demos --episodes-per-task 30 --seed 0").resolved()
    assert scenes is None and (demos.out, demos.episodes_per_task, demos.seed, demos.tasks) == (
        "runs/v2/demos", 30, 0, TASKS,
    )  # fmt: skip
    demos, scenes = train(
        "data --no-demos --scenes-out runs/v16/scenes_one_unseen --scenes-tasks tabletop_pick --scenes-distractors 0 "
        "--scenes-per-task 300 --scenes-seed 9600 --scenes-split unseen"
    ).resolved()
    assert demos is None and (scenes.out, scenes.tasks, scenes.distractors) == (
        "runs/v16/scenes_one_unseen", ("tabletop_pick",), 0,
    )  # fmt: skip
    assert (scenes.scenes_per_task, scenes.seed, scenes.split) == (300, 9600, "unseen")
    _, scenes = train("data --tasks tabletop_pick tabletop_stack --scenes.out s").resolved()
    assert scenes.tasks == ("tabletop_pick", "tabletop_stack") and scenes.scenes_per_task == 80
    dart, _ = train(
        "data --action-noise 0.02 --noise-phases approach descend --noise-probability 0.25"
    ).resolved()
    assert (dart.action_noise, dart.noise_phases, dart.noise_probability) == (
        0.02,
        ("approach", "descend"),
        0.25,
    )

    ev = command.parse_evaluate(
        shlex.split(
            "--checkpoint assets/checkpoints/st4vla-tiny --episodes 20 --seed 40000 --max-steps 50 "
            "--cells seen/seen seen/unseen --workers 2 --out runs/v22/val/x --no-grounding"
        )
    )
    assert isinstance(ev, EvalConfig) and ev.cells == (("seen", "seen"), ("seen", "unseen"))
    assert (ev.episodes, ev.seed, ev.max_steps, ev.workers, ev.grounding) == (20, 40000, 50, 2, False)
    bare = command.parse_evaluate(["--checkpoint", "c"])
    assert bare == EvalConfig(checkpoint="c") and bare.cells == CELLS and bare.tasks == TASKS


def test_bad_flags_are_refused_with_a_message(capsys):
    for argv in (
        ["train", "stage2", "--tcp"],  # __post_init__: --tcp needs --state
        ["train", "head", "--checkpoint", "c", "--data", "d", "--out", "o"],  # no --steps
        ["train", "stage1", "--size", "huge"],
        ["train", "stage2", "--head-answers", "mine"],
        ["evaluate", "--checkpoint", "c", "--cells", "seen/maybe"],
        ["train", "data", "--action-noise", "0.5"],
        ["train", "stage1", "--no-such-flag"],
        ["train", "stage9"],
    ):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2, argv
    err = capsys.readouterr()
    text = err.out + err.err
    for message in ("needs --state", "--steps", "unknown model size", "action noise", "stage1"):
        assert message in text, message


def documented_commands() -> list[str]:
    """Every `workbench train|evaluate|compare` line of the README and docs/ (indented or fenced), and every
    command string of scripts/make_cards.py (placeholders such as <name> or $ARM filled in)."""
    lines = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = re.sub(r"\\\n\s*", " ", path.read_text())
        for name, value in re.findall(r'^[ \t]*([A-Z][A-Z0-9_]*)="([^"]*)"$', text, re.M):
            text = text.replace(f"${name}", value)  # a shell variable the block sets (docs/ablation.md)
        text = re.sub(r"\$[A-Z][A-Z0-9_]*", "1", text)  # one it loops over (an arm, a seed): a placeholder
        lines += re.findall(r"^[ \t]*(workbench (?:train|evaluate|compare) .*)$", text, re.M)
    lines += [c for c in _strings(_load(ROOT / "scripts" / "make_cards.py")) if c.startswith("workbench ")]
    out = []
    for line in lines:
        line = re.sub(r"<[^>]+>|\{[^}]*\}", "x", line.split("  #")[0]).strip()
        if "..." not in line and "[" not in line and "|" not in line and line not in out:
            out.append(line)
    return out


def _load(path: Path):
    spec = importlib.util.spec_from_file_location("make_cards_for_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def _strings(module) -> list[str]:
    found = []

    def walk(value) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)
        elif is_dataclass(value) and not isinstance(value, type):
            for f in fields(value):
                walk(getattr(value, f.name))

    for name, value in vars(module).items():
        if not name.startswith("__"):
            walk(value)
    return found


def test_every_documented_command_parses(monkeypatch):
    documented = documented_commands()
    assert len(documented) >= 10 and any(" stage2 " in c for c in documented)
    seen = []
    monkeypatch.setattr(command, "run_compare", lambda cfg: seen.append(cfg) or 0)
    monkeypatch.setattr(command, "run_evaluate", lambda cfg: seen.append(cfg) or 0)
    for phase in command.PHASES:
        help_, _ = command.PHASES[phase]
        monkeypatch.setitem(command.PHASES, phase, (help_, lambda cfg, line: seen.append(cfg) or 0))
    for line in documented:
        assert main(shlex.split(line)[1:]) == 0, line
    assert len(seen) == len(documented)


def test_resolved_config_goes_into_the_run_folder_and_the_card(tmp_path):
    final = tmp_path / "run" / "final"
    final.mkdir(parents=True)
    (final / "README.md").write_text("# a card\n\nbody\n")
    cfg = train(f"stage2 --vanilla --out {tmp_path / 'run'} --head-steps 3")
    record_command(cfg.out, final, "workbench train stage2 --vanilla --head-steps 3", asdict(cfg))
    saved = json.loads((tmp_path / "run" / "command.json").read_text())
    assert saved["command"].endswith("--head-steps 3") and saved["config"]["head"]["steps"] == 3
    assert saved["config"] == json.loads(json.dumps(asdict(cfg)))
    card = (final / "README.md").read_text()
    assert card.startswith("# a card\n\nbody\n\n## Command") and '"vanilla": true' in card


def test_commands_run_end_to_end_and_record_themselves(tmp_path):
    """A tiny `train data` -> `train stage2 --vanilla` -> `train head` through the command line: each
    run folder holds its command line and resolved config, and so does each final checkpoint's card."""
    demos, run, head = tmp_path / "demos", tmp_path / "vanilla", tmp_path / "head"
    assert (
        main(["train", "data", "--tasks", "tabletop_pick", "--episodes-per-task", "1", "--out", str(demos)])
        == 0
    )
    stage2 = ["train", "stage2", "--vanilla", "--size", "test", "--data", str(demos), "--tokenizer", "None"]
    assert main([*stage2, "--steps", "2", "--batch-size", "2", "--out", str(run)]) == 0
    saved = json.loads((run / "command.json").read_text())
    assert saved["command"].startswith("workbench train stage2 --vanilla --size test")
    assert saved["config"]["model"] == asdict(model_size("test")) and saved["config"]["steps"] == 2
    assert "## Command" in (run / "final" / "README.md").read_text()
    argv = ["train", "head", "--checkpoint", str(run / "final"), "--data", str(demos), "--out", str(head)]
    assert main([*argv, "--steps", "2", "--batch-size", "2", "--warmup", "1"]) == 0
    saved = json.loads((head / "command.json").read_text())
    assert saved["config"]["head"]["steps"] == 2 and saved["config"]["head"]["warmup_steps"] == 1
    assert '"checkpoint": "' + str(run / "final") in (head / "final" / "README.md").read_text()
