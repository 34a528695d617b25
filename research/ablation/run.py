"""The five-arm ablation (the paper's Table 3 at small scale): data, training, evaluation, paired gaps.

Every arm gets the same datasets and the same number of samples through each module (docs/ablation.md
has the table); the arms differ only in what the VLM is taught and what the action head reads:

    vanilla           stage 1 on non-spatial text (--content nonspatial), plain instruction, non-spatial
                      co-training in stage 2
    vanilla_cotrain   the same stage 1, plain instruction, spatial grounding co-training in stage 2
    st4vla_upstream   stage 1 on spatial grounding, spatial prompt, grounding co-training; the DiT reads
                      the VLM's hidden states only (upstream's mechanism)
    st4vla_points     the same, and the DiT also reads the centres of the VLM's own answer's boxes
                      (--answer-points --head-answers true: today's st4vla-tiny recipe, without its later
                      answer phases and head continuations)
    control           the vanilla arm's VLM and co-training; the DiT's state also holds the centres of the
                      TRUE boxes, in training and at evaluation (--true-points; workbench/train/control.py):
                      an oracle localiser (the simulator's ground truth)
    control_learned   the control's checkpoint evaluated on the points of a plain localisation head
                      (`workbench train locator`, workbench/train/locator.py) trained on the same true
                      boxes with stage 1's number of samples: explicit coordinates without a spatially
                      guided VLM (evaluated, not trained, as an arm: it adds the locator only)

Each phase is one `workbench ...` command line, run in this process (torch is imported once) and
appended to <out>/commands.sh; the control's evaluation is the one Python call (the same EvalConfig, plus
an input transform that appends the true points to the state). A phase whose output is complete is skipped,
and training phases resume from their states, so an interrupted run continues where it stopped.
<out>/timings.json records every phase's wall seconds and step counts.

    python research/ablation/run.py --scale 1.0 --out runs/ablation --threads 2 --workers 2
    python research/ablation/run.py --scale 0.001 --size test --eval-tasks tabletop_pick --max-steps 3 \\
        --out /tmp/ablation   # the smoke run (tests/test_research_scripts.py)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

ARMS = ("vanilla", "vanilla_cotrain", "st4vla_upstream", "st4vla_points", "control")
SEED_SETS = (10_000, 20_000, 50_000)
# Objects in no data at all (the catalog's novel split): one seed set, apart from the three, as the cards'.
NOVEL_SEED = 60_000
NOVEL_CELLS = ("novel/seen", "novel/unseen")
TASKS = ("tabletop_put_on", "tabletop_put_in", "tabletop_stack", "tabletop_pick", "tabletop_move_near")
# Paired gaps reported, (A, B): each arm over vanilla, then the steps between neighbouring arms.
COMPARISONS = (
    ("vanilla_cotrain", "vanilla"),
    ("st4vla_upstream", "vanilla"),
    ("st4vla_points", "vanilla"),
    ("control", "vanilla"),
    ("st4vla_upstream", "vanilla_cotrain"),
    ("st4vla_points", "st4vla_upstream"),
    ("st4vla_points", "control"),
    ("control_learned", "vanilla"),
    ("st4vla_points", "control_learned"),
    ("control", "control_learned"),
)
# Evaluated with an input transform, in this process: the control's true points, or a learned locator's
# points given to the control's checkpoint (control_learned, evaluated whenever the control is trained).
TRANSFORMED = {"control": "true points", "control_learned": "the locator's points"}


@dataclass(frozen=True)
class Budget:
    """The full budget of every arm (scale 1.0). Batch sizes never scale: --scale shortens runs and
    shrinks data, so that per-step costs measured small extrapolate to the full run."""

    demos_per_task: int = 100  # expert demonstrations per task (500 in all)
    scenes_per_task: int = 300  # seen-object grounding scenes per task
    unseen_scenes_per_task: int = 200  # unseen-object scenes per task (named in the corpus only)
    one_object_scenes: int = 1500  # one-object pick scenes (stage 1's curriculum), seen objects
    one_object_unseen_scenes: int = 300  # the same, unseen objects
    stage1_steps: int = 7000  # stage-1 steps (questions: steps x 16)
    curriculum_steps: int = 1200  # of which on the one-object scenes alone, first
    stage1_warmup: int = 200
    stage1_eval_every: int = 500
    heldout_episodes: int = 20  # stage 1's held-out scenes (grounding / answer measurements)
    eval_frames: int = 32  # held-out frames per stage-1 measurement
    stage2_steps: int = 2000  # joint-phase steps (frames: steps x 12, questions: steps x 4)
    stage2_warmup: int = 100
    head_steps: int = 8000  # head-phase steps (cached frames: steps x 32)
    head_warmup: int = 100
    episodes_per_cell: int = 10  # evaluation episodes per task and cell, per seed set
    novel_episodes_per_cell: int = 30  # per task and novel cell (stack has none), seed NOVEL_SEED
    stage1_batch: int = 16  # not scaled
    stage2_batch: int = 12  # not scaled
    grounding_batch: int = 4  # not scaled
    head_batch: int = 32  # not scaled

    def scaled(self, scale: float) -> Budget:
        """Every count times `scale` (at least 1), batch sizes unchanged."""
        if scale <= 0:
            raise ValueError(f"--scale must be positive, got {scale}")
        fixed = {"stage1_batch", "stage2_batch", "grounding_batch", "head_batch"}
        return replace(
            self,
            **{
                f.name: max(1, round(getattr(self, f.name) * scale))
                for f in fields(self)
                if f.name not in fixed
            },
        )


@dataclass(frozen=True)
class Layout:
    """Where everything goes under --out."""

    out: Path

    def data(self, name: str) -> Path:
        return self.out / "data" / name

    def stage1(self, content: str) -> Path:
        return self.out / f"stage1_{content}"

    def arm(self, arm: str) -> Path:
        return self.out / "arms" / arm

    def report(self, arm: str, seed: int) -> Path:
        return self.out / "eval" / arm / str(seed)


# --- the command lines --------------------------------------------------------------------------


def data_commands(b: Budget, lay: Layout) -> list[tuple[Path, list[str]]]:
    """(dataset root, `workbench train data` argv) for every dataset; seeds stay below 10,000."""
    scenes = ["train", "data", "--no-demos", "--scenes-out"]
    one = ["--scenes-tasks", "tabletop_pick", "--scenes-distractors", "0"]
    return [
        (lay.data("demos"), ["train", "data", "--out", str(lay.data("demos")), "--episodes-per-task", str(b.demos_per_task), "--seed", "0"]),
        (lay.data("scenes"), [*scenes, str(lay.data("scenes")), "--scenes-per-task", str(b.scenes_per_task), "--scenes-seed", "5000"]),
        (lay.data("scenes_unseen"), [*scenes, str(lay.data("scenes_unseen")), "--scenes-per-task", str(b.unseen_scenes_per_task), "--scenes-seed", "8600", "--scenes-split", "unseen"]),
        (lay.data("scenes_one"), [*scenes, str(lay.data("scenes_one")), *one, "--scenes-per-task", str(b.one_object_scenes), "--scenes-seed", "3000"]),
        (lay.data("scenes_one_unseen"), [*scenes, str(lay.data("scenes_one_unseen")), *one, "--scenes-per-task", str(b.one_object_unseen_scenes), "--scenes-seed", "9600", "--scenes-split", "unseen"]),
    ]  # fmt: skip


def corpus(lay: Layout) -> list[str]:
    """The grounding corpus (stage 1's main pool and stage 2's co-training): every arm's."""
    return [str(lay.data(n)) for n in ("demos", "scenes", "scenes_unseen")]


def stage1_command(b: Budget, lay: Layout, content: str, size: str, threads: int) -> list[str]:
    """Stage 1 on the corpus with the one-object curriculum; spatial adds the recipe's pointing loss."""
    argv = ["train", "stage1", "--data", *corpus(lay),
            "--curriculum-data", str(lay.data("scenes_one")), str(lay.data("scenes_one_unseen")),
            "--curriculum-steps", str(b.curriculum_steps), "--steps", str(b.stage1_steps),
            "--batch-size", str(b.stage1_batch), "--warmup", str(b.stage1_warmup), "--lr", "3e-4",
            "--eval-every", str(b.stage1_eval_every), "--heldout-episodes", str(b.heldout_episodes),
            "--eval-frames", str(b.eval_frames), "--text-first", "--size", size, "--threads", str(threads),
            "--seed", "1", "--out", str(lay.stage1(content))]  # fmt: skip
    if content == "nonspatial":
        return [*argv, "--content", "nonspatial"]
    return [*argv, "--pointing", "0.5", "--pointing-layer", "2" if size == "demo" else "0"]  # test: 1 layer


ARM_OPTIONS: dict[str, tuple[str, list[str]]] = {
    # arm -> (its stage 1, its stage-2 options)
    "vanilla": ("nonspatial", ["--no-spatial-prompt", "--grounding-content", "nonspatial"]),
    "vanilla_cotrain": ("nonspatial", ["--no-spatial-prompt"]),
    "st4vla_upstream": ("spatial", []),
    "st4vla_points": ("spatial", ["--answer-points", "--head-answers", "true"]),
    "control": ("nonspatial", ["--no-spatial-prompt", "--grounding-content", "nonspatial", "--true-points"]),
}  # fmt: skip


def stage2_command(b: Budget, lay: Layout, arm: str, threads: int) -> list[str]:
    """Stage 2 (joint phase, then the head phase) of one arm: same data, steps and batches for all."""
    content, options = ARM_OPTIONS[arm]
    return ["train", "stage2", "--data", str(lay.data("demos")), "--init", str(lay.stage1(content) / "final"),
            "--grounding-data", *corpus(lay), "--steps", str(b.stage2_steps), "--batch-size", str(b.stage2_batch),
            "--grounding-batch-size", str(b.grounding_batch), "--warmup", str(b.stage2_warmup), "--state",
            "--head-steps", str(b.head_steps), "--head-batch-size", str(b.head_batch),
            "--head.warmup-steps", str(b.head_warmup), "--threads", str(threads), "--seed", "0",
            "--out", str(lay.arm(arm)), *options]  # fmt: skip


SIZES = {"demo": 112, "test": 56}  # the model's input size per preset (workbench.train.common.SIZES)


def locator_command(b: Budget, lay: Layout, size: str, threads: int) -> list[str]:
    """The learned control's localisation head: on the same frames and true boxes as stage 1, as many
    samples (steps x batch)."""
    names = ("demos", "scenes", "scenes_unseen", "scenes_one", "scenes_one_unseen")
    return ["train", "locator", "--data", *(str(lay.data(n)) for n in names), "--steps", str(b.stage1_steps),
            "--batch-size", str(b.stage1_batch), "--warmup-steps", str(b.stage1_warmup),
            "--log-every", str(b.stage1_eval_every), "--heldout-episodes", str(b.heldout_episodes),
            "--image-size", str(SIZES[size]), "--threads", str(threads), "--seed", "1",
            "--out", str(lay.out / "locator")]  # fmt: skip


def evaluate_command(b: Budget, lay: Layout, arm: str, seed: int, args: argparse.Namespace) -> list[str]:
    """The four default cells at a seed set's seed; at NOVEL_SEED, the two cells of objects in no data."""
    checkpoint = lay.arm("control" if arm == "control_learned" else arm) / "final"
    episodes = b.novel_episodes_per_cell if seed == NOVEL_SEED else b.episodes_per_cell
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--episodes", str(episodes),
            "--seed", str(seed), "--max-steps", str(args.max_steps), "--tasks", *args.eval_tasks,
            "--out", str(lay.report(arm, seed)), "--resume"]  # fmt: skip
    if seed == NOVEL_SEED:
        argv += ["--cells", *NOVEL_CELLS]
    if args.workers > 1 and arm not in TRANSFORMED:  # a transform runs in this process
        argv += ["--ray", "--workers", str(args.workers)]
    return argv


# --- running --------------------------------------------------------------------------------------


class Run:
    """Runs the phases in order, prints progress, logs command lines and timings."""

    def __init__(self, out: Path, total: int, dry_run: bool = False):
        self.out, self.total, self.done, self.t0, self.dry_run = out, total, 0, time.time(), dry_run
        self.timings_path = out / "timings.json"
        self.timings = json.loads(self.timings_path.read_text()) if self.timings_path.exists() else {}

    def phase(self, name: str, command: list[str] | None, complete: bool, fn, units: dict | None = None,
              note: str = "") -> None:  # fmt: skip
        """Run fn() unless `complete`; log `command` (a `workbench` argv) with its note to commands.sh."""
        self.done += 1
        head = f"[ablation {self.done}/{self.total}, {(time.time() - self.t0) / 60:.1f} min] {name}"
        line = shlex.join(["workbench", *command]) + note if command is not None else ""
        if line and not self.dry_run:
            with (self.out / "commands.sh").open("a") as f:
                f.write(line + "\n")
        if self.dry_run:
            print(line or f"# {name}", flush=True)
            return
        if complete:
            print(f"{head}: done before, skipped", flush=True)
            return
        print(f"{head}: {line}", flush=True)
        start = time.time()
        fn()
        self.timings[name] = {"seconds": round(time.time() - start, 2), **(units or {})}
        self.timings_path.write_text(json.dumps(self.timings, indent=1))


def workbench(argv: list[str]) -> None:
    """`workbench <argv>` (train, evaluate or compare) in this process; a failure stops the run."""
    from workbench.train.command import main

    code = main(argv[0], argv[1:])
    if code != 0:
        raise SystemExit(f"workbench {shlex.join(argv)} exited with {code}")


def evaluate_control(argv: list[str], arm: str, lay: Layout) -> None:
    """The controls' evaluation: the EvalConfig of the same command line, plus the transform that appends
    the points to the robot state (true ones, or the locator's)."""
    from workbench.eval_report import markdown, write_report
    from workbench.evaluate import evaluate
    from workbench.train.command import parse_evaluate
    from workbench.train.control import true_points_input
    from workbench.train.locator import located_points_input

    cfg = parse_evaluate(argv[1:])
    size = json.loads((Path(cfg.checkpoint) / "config.json").read_text())["image_size"]
    # the state the control reads (joints + 4 points) is no sim state: "neutral" lets the runner start,
    # the transform then gives the joints and the points
    if arm == "control":
        transform = true_points_input(size)
    else:
        transform = located_points_input(lay.out / "locator" / "final")
    report = evaluate(cfg, transform=transform, state_mapping="neutral", out=cfg.out)
    write_report(report, cfg.out)
    print(markdown(report))
    if report.errors():
        raise SystemExit(f"{len(report.errors())} control episodes could not run (summary.errors)")


def check_heldout(roots: list[Path], out: Path) -> None:
    """What evaluation holds out must be where its split says: no instruction that is a held-out
    paraphrase (workbench.sim.instructions.heldout) and no object of the catalog's novel split in any
    frame's ground truth of any training dataset, and no unseen object in the demonstrations. Written to
    <out>/heldout_check.json; anything found stops the run."""
    from workbench.episodes.lerobot import LeRobotDataset
    from workbench.sim import catalog
    from workbench.sim.instructions import heldout

    novel = {spec.name for spec in catalog.objects(catalog.NOVEL)}
    unseen = {spec.name for spec in catalog.objects("unseen")}
    instructions = {root.name: {task for _, task, _ in LeRobotDataset(root).listing()} for root in roots}
    objects = {root.name: _ground_truth_labels(root) for root in roots}
    check = {
        "instructions": {name: len(texts) for name, texts in instructions.items()},
        "held_out_paraphrases_found": {name: heldout(texts) for name, texts in instructions.items()},
        "objects": {name: sorted(labels) for name, labels in objects.items()},
        "novel_objects_found": {name: sorted(labels & novel) for name, labels in objects.items()},
        "unseen_objects_in_demonstrations": sorted(objects.get("demos", set()) & unseen),
    }
    (out / "heldout_check.json").write_text(json.dumps(check, indent=1))
    found = [*check["held_out_paraphrases_found"].values(), *check["novel_objects_found"].values(),
             check["unseen_objects_in_demonstrations"]]  # fmt: skip
    print(f"[ablation] in the training data ({sum(check['instructions'].values())} distinct instructions, "
          f"{len(set().union(*objects.values()))} objects): {sum(map(len, found))} held-out paraphrases, "
          "novel objects or unseen objects in a demonstration", flush=True)  # fmt: skip
    if any(found):
        raise SystemExit(f"held-out text or objects where their split says they are not: {check}")


def _ground_truth_labels(root: Path) -> set[str]:
    """Every object named in a workbench dataset's ground truth (its observation.ground_truth column)."""
    import pyarrow.parquet as pq

    labels: set[str] = set()
    for path in sorted((root / "data").rglob("*.parquet")):
        for text in pq.read_table(path, columns=["observation.ground_truth"]).column(0).to_pylist():
            labels.update(o["label"] for o in json.loads(text or "{}").get("objects", []))
    return labels


def planned_episodes(argv: list[str]) -> int:
    """How many episodes an evaluate command line runs (workbench.evaluate.episode_specs)."""
    from workbench.evaluate import episode_specs
    from workbench.train.command import parse_evaluate

    return len(episode_specs(parse_evaluate(argv[1:])))


def report_complete(path: Path, expected: int) -> bool:
    """Whether an evaluation wrote all its episodes, none of them an error."""
    report = path / "report.json"
    if not report.exists():
        return False
    episodes = json.loads(report.read_text()).get("episodes", [])
    return len(episodes) == expected and all(e.get("status", "ok") != "error" for e in episodes)


def compare(lay: Layout, a: str, b: str, seeds: tuple[int, ...]) -> str:
    """`workbench compare` of arm a over arm b, pooled over the seed sets, as markdown."""
    argv = [
        "compare",
        *(str(lay.report(a, s)) for s in seeds),
        "--vs",
        *(str(lay.report(b, s)) for s in seeds),
    ]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        workbench(argv)
    return f"## {a} over {b}\n\n    workbench {shlex.join(argv)}\n\n{buffer.getvalue()}\n"


def success_per_arm(lay: Layout, arms: list[str], seeds: tuple[int, ...]) -> str:
    """Each arm's success on every split, its seed sets and the novel split pooled, as markdown."""
    from workbench.compare import load_report, pool, success_table
    from workbench.eval_report import SPLIT_LEGEND

    rows = []
    for arm in arms:
        found = [
            lay.report(arm, s) for s in (*seeds, NOVEL_SEED) if (lay.report(arm, s) / "report.json").exists()
        ]
        rows.append((arm, pool([load_report(p) for p in found]) if found else None))
    return (
        f"# Success per arm (seed sets {', '.join(map(str, seeds))}; objects in no data at all: seed "
        f"{NOVEL_SEED})\n\n{success_table(rows)}\n\nSuccess [95% Wilson interval] (successes/episodes). "
        f"{SPLIT_LEGEND}\n\n"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--scale", type=float, default=1.0, help="budget scale: 1.0 the full budget, 0.001 a smoke run"
    )
    ap.add_argument(
        "--out", required=True, help="output folder (data, stage-1 runs, arms, reports, comparisons)"
    )
    ap.add_argument(
        "--size", default="demo", choices=("demo", "test"), help="model size preset (test: smoke runs)"
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads of every training phase")
    ap.add_argument("--workers", type=int, default=1, help="evaluation episodes at once on Ray (arms 1-4)")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEED_SETS), help="evaluation seed sets")
    ap.add_argument(
        "--eval-tasks", nargs="+", default=list(TASKS), help="tasks evaluated (all five for the table)"
    )
    ap.add_argument("--max-steps", type=int, default=50, help="episode step cap (the cards' 50)")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS, help="arms to train and evaluate")
    ap.add_argument(
        "--dry-run", action="store_true", help="print the command lines (commands.sh), run nothing"
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    budget = Budget().scaled(args.scale)
    out = Path(args.out)
    lay, seeds = Layout(out), tuple(args.seeds)
    if not args.dry_run:
        out.mkdir(parents=True, exist_ok=True)
        (out / "budget.json").write_text(json.dumps({**asdict(budget), **vars(args)}, indent=1))
        (out / "commands.sh").write_text(
            "# the ablation's command lines, in order (research/ablation/run.py)\n"
        )
    contents = sorted({ARM_OPTIONS[a][0] for a in args.arms}, reverse=True)  # spatial first: the tokenizer
    evaluated = [*args.arms, *(["control_learned"] if "control" in args.arms else [])]
    learned = "control" in args.arms
    total = len(data_commands(budget, lay)) + 1 + len(contents) + len(args.arms) + learned
    total += len(evaluated) * (len(seeds) + 1) + 1  # the seed sets and the novel split
    run = Run(out, total, args.dry_run)
    if not args.dry_run:
        print(f"[ablation] scale {args.scale}: {json.dumps(asdict(budget))}", flush=True)

    import torch

    torch.set_num_threads(args.threads)
    for root, argv in data_commands(budget, lay):
        done = (root / "meta" / "info.json").exists()
        run.phase(f"data {root.name}", argv, done, lambda a=argv: workbench(a))
    roots = [root for root, _ in data_commands(budget, lay)]
    run.phase(
        "check: nothing held out is in the training data", None, False, lambda: check_heldout(roots, out)
    )
    for content in contents:
        argv, run_dir = stage1_command(budget, lay, content, args.size, args.threads), lay.stage1(content)
        shared = lay.stage1("spatial") / "tokenizer"  # one tokenizer for every arm
        if content == "nonspatial" and shared.exists() and not (run_dir / "tokenizer").exists():
            shutil.copytree(shared, run_dir / "tokenizer")
        units = {"steps": budget.stage1_steps, "batch": budget.stage1_batch}
        done = (run_dir / "final" / "config.json").exists()
        run.phase(f"stage1 {content}", argv, done, lambda a=argv: workbench(a), units)
    for arm in args.arms:
        argv = stage2_command(budget, lay, arm, args.threads)
        units = {"steps": budget.stage2_steps, "head_steps": budget.head_steps}
        done = (lay.arm(arm) / "final" / "config.json").exists()
        run.phase(f"stage2 {arm}", argv, done, lambda a=argv: workbench(a), units)
    if learned:
        argv = locator_command(budget, lay, args.size, args.threads)
        done = (lay.out / "locator" / "final" / "locator.json").exists()
        units = {"steps": budget.stage1_steps, "batch": budget.stage1_batch}
        run.phase("locator", argv, done, lambda a=argv: workbench(a), units)
    for arm in evaluated:
        for seed in (*seeds, NOVEL_SEED):
            argv = evaluate_command(budget, lay, arm, seed, args)
            expected = planned_episodes(argv)
            fn = (
                (lambda a=argv, m=arm: evaluate_control(a, m, lay))
                if arm in TRANSFORMED
                else (lambda a=argv: workbench(a))
            )
            done = report_complete(lay.report(arm, seed), expected)
            note = (
                f"  # plus {TRANSFORMED[arm]}: research/ablation/run.py evaluate_control"
                if arm in TRANSFORMED
                else ""
            )
            run.phase(f"evaluate {arm} {seed}", argv, done, fn, {"episodes": expected}, note)
    pairs = [(a, b) for a, b in COMPARISONS if a in evaluated and b in evaluated]

    def comparisons() -> None:
        text = success_per_arm(lay, evaluated, seeds)
        text += "# Seen and unseen objects (in no demonstration, named in the grounding data)\n\n"
        text += "".join(compare(lay, a, b, seeds) for a, b in pairs)
        text += f"# Objects in no data at all (the novel split, seed {NOVEL_SEED})\n\n"
        text += "".join(compare(lay, a, b, (NOVEL_SEED,)) for a, b in pairs)
        (out / "comparisons.md").write_text(text)
        print(text)

    run.phase("compare (pooled over the seed sets; then the novel split)", None, False, comparisons)
    if args.dry_run:
        for group in (seeds, (NOVEL_SEED,)):
            for a, b in pairs:
                print(shlex.join(["workbench", "compare", *(str(lay.report(a, s)) for s in group), "--vs",
                                  *(str(lay.report(b, s)) for s in group)]))  # fmt: skip
        return 0
    print(f"[ablation] finished in {(time.time() - run.t0) / 60:.1f} min: {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
