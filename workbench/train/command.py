"""`workbench train <phase>`, `workbench evaluate`, `workbench compare`: typed configs as the command line.

Each phase's config dataclass IS its command line (tyro): a field is a flag named after it
(`batch_size` -> --batch-size, a bool `resume = True` -> --resume/--no-resume), its comment is the
help, a nested config takes its field's name as a prefix (Stage2Config.head -> --head.steps) unless
the field is marked OmitArgPrefixes (the optimiser, the model size, `train head`'s head phase), and
the dataclass's __post_init__ validates. Nothing is copied by hand from arguments into a config.

Before it runs, a phase prints its resolved config as one JSON line; after it, the command line and
that config are saved as <out>/command.json and appended to the final checkpoint's card
(workbench.train.card.record_command).

    workbench train data | stage1 | stage2 | head | answers | locator [--help]
    workbench evaluate --checkpoint C [--episodes 4 --seed 10000 --cells seen/seen seen/unseen ...]
    workbench compare A B | A1 A2 --vs B1 B2

Flag names of earlier versions stay accepted (LEGACY_FLAGS): e.g. --head-steps for --head.steps.
"""

from __future__ import annotations

import inspect
import json
import shlex
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import tyro

from workbench.eval_report import markdown, write_report
from workbench.train.data import DataConfig, SceneConfig

# Old flag -> the field's flag, per command. Applied to the command line before it is parsed.
LEGACY_FLAGS: dict[str, dict[str, str]] = {
    "data": {
        "--scenes-out": "--scenes.out",
        "--scenes-per-task": "--scenes.scenes-per-task",
        "--scenes-tasks": "--scenes.tasks",
        "--scenes-distractors": "--scenes.distractors",
        "--scenes-seed": "--scenes.seed",
        "--scenes-split": "--scenes.split",
    },
    "stage1": {"--warmup": "--warmup-steps", "--vision-lr": "--lr-vision"},
    "stage2": {
        "--warmup": "--warmup-steps",
        "--vision-lr": "--lr-vision",
        "--grounding-weight": "--grounding-loss-weight",
        "--head-steps": "--head.steps",
        "--head-batch-size": "--head.batch-size",
        "--head-lr": "--head.lr",
        "--head-answers": "--head.answers",
    },
    "head": {"--warmup": "--warmup-steps"},
}


@dataclass
class DataCommand:
    """`workbench train data`: expert demonstrations (seen split) and, with --scenes.out, single-frame
    grounding scenes from the built-in sim."""

    demonstrations: Annotated[DataConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=DataConfig)
    # Grounding scenes, written only when --scenes.out names a folder; --scenes.tasks defaults to --tasks.
    scenes: SceneConfig = field(default_factory=lambda: SceneConfig(out="", tasks=()))
    demos: bool = True  # write the demonstrations (--no-demos: only the scenes)

    def resolved(self) -> tuple[DataConfig | None, SceneConfig | None]:
        """The demonstrations and scenes to write (None: not asked for)."""
        scenes = None
        if self.scenes.out:
            scenes = replace(self.scenes, tasks=self.scenes.tasks or self.demonstrations.tasks)
        return (self.demonstrations if self.demos else None), scenes


@dataclass
class CompareCommand:
    """`workbench compare`: the success gap of A over B on the episodes two reports share."""

    # A then B: each a report.json or the --out folder of an evaluation; with --vs, A's reports to pool
    reports: tyro.conf.Positional[tuple[str, ...]]
    vs: tuple[str, ...] = ()  # B's reports to pool (several seed sets of one checkpoint)


def with_current_names(argv: list[str], legacy: dict[str, str]) -> list[str]:
    """The command line with each old flag (also as --flag=value) replaced by its field's flag."""
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        out.append(legacy[name] + eq + value if arg.startswith("--") and name in legacy else arg)
    return out


def parse(config_type: type, argv: list[str], prog: str, legacy: dict[str, str] | None = None) -> Any:
    """argv parsed into config_type (tyro prints help or a clear error and exits 2 on bad input)."""
    description = None
    if legacy:
        aliases = ", ".join(f"{old} = {new}" for old, new in legacy.items())
        description = f"{inspect.cleandoc(config_type.__doc__ or '')}\n\nAlso accepted: {aliases}."
    return tyro.cli(
        config_type, args=with_current_names(argv, legacy or {}), prog=prog, description=description
    )


def finish(command_line: str, cfg: Any, final: Path, label: str) -> int:
    """Save the command line and resolved config into the run folder and the final checkpoint's card."""
    from workbench.train.card import record_command

    record_command(Path(cfg.out), final, command_line, asdict(cfg))
    print(f"{label}:", final)
    return 0


def run_data(cfg: DataCommand, command_line: str) -> int:
    from workbench.train.data import generate, generate_scenes

    demos, scenes = cfg.resolved()
    print(json.dumps({"demonstrations": demos and asdict(demos), "scenes": scenes and asdict(scenes)}))
    if demos is not None:
        print(f"demonstrations: {generate(demos)}")
    if scenes is not None:
        print("scenes:", generate_scenes(scenes))
    return 0


def run_stage1(cfg, command_line: str) -> int:
    from workbench.train.stage1 import train_stage1

    print(json.dumps(asdict(cfg)))
    return finish(command_line, cfg, train_stage1(cfg), "stage-1 checkpoint")


def run_stage2(cfg, command_line: str) -> int:
    from workbench.train.stage2 import train_stage2

    print(json.dumps(asdict(cfg)))
    return finish(command_line, cfg, train_stage2(cfg), "stage-2 checkpoint")


def run_head(cfg, command_line: str) -> int:
    from workbench.train.common import seed_everything
    from workbench.train.head import continue_head

    seed_everything(cfg.seed, cfg.threads)
    print(json.dumps(asdict(cfg)))
    return finish(command_line, cfg, continue_head(cfg), "checkpoint")


def run_answers(cfg, command_line: str) -> int:
    from workbench.train.answers import tune_answers
    from workbench.train.common import seed_everything

    seed_everything(cfg.seed, cfg.threads)
    print(json.dumps(asdict(cfg)))
    return finish(command_line, cfg, tune_answers(cfg), "checkpoint")


def run_locator(cfg, command_line: str) -> int:
    from workbench.train.locator import train_locator

    print(json.dumps(asdict(cfg)))
    return finish(command_line, cfg, train_locator(cfg), "locator")


def _phase_config(phase: str) -> type:
    """The phase's config class, imported only when that phase is asked for (stage 1 loads torch)."""
    if phase == "data":
        return DataCommand
    if phase == "stage1":
        from workbench.train.stage1 import Stage1Config

        return Stage1Config
    if phase == "stage2":
        from workbench.train.stage2 import Stage2Config

        return Stage2Config
    if phase == "head":
        from workbench.train.head import HeadContinueConfig

        return HeadContinueConfig
    if phase == "locator":
        from workbench.train.locator import LocatorConfig

        return LocatorConfig
    from workbench.train.answers import AnswerPhaseConfig

    return AnswerPhaseConfig


PHASES: dict[str, tuple[str, Callable[[Any, str], int]]] = {
    "data": ("expert demonstrations (seen split) and grounding scenes (--scenes.out) from the built-in sim", run_data),
    "stage1": ("spatial grounding pre-training of the VLM", run_stage1),
    "stage2": ("spatially guided action post-training (or --vanilla baseline)", run_stage2),
    "head": ("more head-phase steps for a finished checkpoint's action expert, on (new) demonstrations", run_head),
    "answers": ("the answer phase: a finished checkpoint's VLM taught its spatial prompt's true answer", run_answers),
    "locator": ("a plain localisation head on the true boxes (the ablation's learned control)", run_locator),
}  # fmt: skip


def parse_train(argv: list[str]) -> tuple[str, Any]:
    """`workbench train <phase> ...` -> (phase, its resolved config). Exits 0 on --help, 2 on bad input."""
    phase = argv[0] if argv else ""
    if phase not in PHASES:
        listing = "\n".join(f"  {name:<8} {help_}" for name, (help_, _) in PHASES.items())
        print(f"usage: workbench train {{{','.join(PHASES)}}} [--help]\n\n{listing}")
        raise SystemExit(0 if phase in ("-h", "--help") else 2)
    prog = f"workbench train {phase}"
    return phase, parse(_phase_config(phase), argv[1:], prog, LEGACY_FLAGS.get(phase))


def parse_evaluate(argv: list[str]):
    from workbench.evaluate import EvalConfig

    return parse(EvalConfig, argv, "workbench evaluate")


def main(command: str, argv: list[str]) -> int:
    """Run `workbench <command> argv...` for command in train, evaluate, compare."""
    command_line = shlex.join(["workbench", command, *argv])
    if command == "train":
        phase, cfg = parse_train(argv)
        return PHASES[phase][1](cfg, command_line)
    if command == "evaluate":
        return run_evaluate(parse_evaluate(argv))
    return run_compare(parse(CompareCommand, argv, "workbench compare"))


def run_evaluate(cfg) -> int:
    from workbench.eval_resume import ResumeError
    from workbench.evaluate import evaluate

    print(json.dumps(asdict(cfg)))
    try:
        report = evaluate(cfg, out=cfg.out)  # report.json and report.md rewritten as episodes finish
    except ResumeError as e:
        print(f"workbench evaluate: {e}", file=sys.stderr)
        return 2
    paths = write_report(report, cfg.out)
    print(markdown(report))
    print("report:", ", ".join(str(p) for p in paths.values()))
    if report.errors():  # kept in the report, in no rate; the exit status says so
        print(
            f"workbench evaluate: {len(report.errors())} episodes could not run (summary.errors)",
            file=sys.stderr,
        )
        return 1
    return 0


def run_compare(cfg: CompareCommand) -> int:
    from workbench.compare import compare

    if not cfg.vs and len(cfg.reports) != 2:
        print("workbench compare: give A and B, or A's reports then --vs and B's", file=sys.stderr)
        return 2
    a, b = (list(cfg.reports), list(cfg.vs)) if cfg.vs else ([cfg.reports[0]], [cfg.reports[1]])
    try:
        print(compare(a, b))
    except (OSError, ValueError) as e:
        print(f"workbench compare: {e}", file=sys.stderr)
        return 2
    return 0
