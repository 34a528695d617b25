"""`workbench train ...` and `workbench evaluate ...`: argument parsing around the typed configs."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict


def add_parsers(sub) -> None:
    train = sub.add_parser("train", help="generate data, stage-1 grounding, stage-2 action training")
    tsub = train.add_subparsers(dest="train_command", required=True)

    d = tsub.add_parser(
        "data",
        help="expert demonstrations (seen split) and grounding scenes (--scenes-split) from the built-in sim",
    )
    d.add_argument("--out", default="runs/data/demos")
    d.add_argument("--episodes-per-task", type=int, default=30)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--tasks", nargs="+", default=None)
    d.add_argument(
        "--action-noise",
        type=float,
        default=0.0,
        help="DART: execute the expert's motion plus this much Gaussian noise (m/step), record the expert's",
    )
    d.add_argument(
        "--noise-phases",
        nargs="+",
        default=(),
        help="add the --action-noise only in these expert phases (e.g. approach descend); default: all",
    )
    d.add_argument(
        "--noise-probability", type=float, default=1.0, help="the share of those steps that get the noise"
    )
    d.add_argument(
        "--miss-offset", type=float, default=0.0,
        help="recovery demonstrations: aim the first grasp this many metres off, record only the retry",
    )  # fmt: skip
    d.add_argument("--scenes-out", default=None, help="also write single-frame grounding scenes here")
    d.add_argument("--scenes-per-task", type=int, default=80)
    d.add_argument("--scenes-tasks", nargs="+", default=None, help="tasks of the scenes (default: --tasks)")
    d.add_argument("--scenes-distractors", type=int, default=None, help="0 with tabletop_pick: one object")
    d.add_argument("--scenes-seed", type=int, default=5_000)
    d.add_argument(
        "--scenes-split",
        choices=("seen", "unseen"),
        default="seen",
        help="objects of the scenes; unseen widens the grounding corpus (instructions stay seen paraphrases)",
    )
    d.add_argument("--no-demos", action="store_true", help="write only the scenes")

    s1 = tsub.add_parser("stage1", help="spatial grounding pre-training of the VLM")
    s1.add_argument("--data", nargs="+", default=["runs/data/demos", "runs/data/scenes"])
    s1.add_argument("--out", default="runs/stage1")
    s1.add_argument("--size", default="demo", help="model size preset: demo | test")
    s1.add_argument(
        "--merge",
        type=int,
        default=None,
        help="visual-token merge (2 as Qwen2.5-VL; 1: 4x the visual tokens)",
    )
    s1.add_argument("--layers", type=int, default=None, help="language-model depth (default: the preset's)")
    s1.add_argument(
        "--text-first", action="store_true",
        help="the question before the image in every prompt (upstream: image first)",
    )  # fmt: skip
    s1.add_argument("--steps", type=int, default=1200)
    s1.add_argument("--batch-size", type=int, default=16)
    s1.add_argument("--lr", type=float, default=3e-4)
    s1.add_argument("--warmup", type=int, default=150)
    s1.add_argument("--eval-every", type=int, default=200)
    s1.add_argument("--heldout-episodes", type=int, default=20)
    s1.add_argument("--curriculum-data", nargs="*", default=[], help="one-object scenes, trained on first")
    s1.add_argument("--curriculum-steps", type=int, default=0)
    s1.add_argument("--curriculum-mix", type=float, default=0.25, help="their share of batches afterwards")
    s1.add_argument(
        "--detect-all", type=float, default=0.0, help="share of 'Detect every object' questions (0..1)"
    )
    s1.add_argument(
        "--exists", type=float, default=0.0,
        help="share of 'Is there a <name>?' questions, half yes and half an absent seen object (0..1)",
    )  # fmt: skip
    s1.add_argument(
        "--contrast", action="store_true", help="ask object questions in pairs: two objects of one image"
    )
    s1.add_argument("--init", default=None, help="start from this checkpoint's weights and tokenizer")
    s1.add_argument(
        "--per-answer-loss", action="store_true",
        help="average the loss within each answer first (a 'Yes' weighs as much as a box)",
    )  # fmt: skip
    s1.add_argument(
        "--pointing", type=float, default=0.0,
        help="weight of the pointing loss: one head attends to the object whose coordinates are written",
    )  # fmt: skip
    s1.add_argument("--pointing-layer", type=int, default=2, help="the pointing head's layer")
    s1.add_argument("--pointing-head", type=int, default=0, help="the pointing head within that layer")
    s1.add_argument(
        "--vision-lr",
        type=float,
        default=None,
        help="the vision tower's own peak rate (0 freezes it; default: --lr)",
    )
    s1.add_argument("--seed", type=int, default=0)
    s1.add_argument("--no-resume", action="store_true", help="start over even if a training state exists")
    s1.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: two runs side by side)")

    s2 = tsub.add_parser("stage2", help="spatially guided action post-training (or --vanilla baseline)")
    s2.add_argument("--data", nargs="+", default=["runs/data/demos"])
    s2.add_argument("--out", default="runs/st4vla")
    s2.add_argument("--init", default="runs/stage1/final", help="stage-1 checkpoint")
    s2.add_argument(
        "--vanilla", action="store_true", help="baseline: no stage 1, plain instruction, no co-training"
    )
    s2.add_argument(
        "--base",
        default=None,
        help="vanilla only: start from this checkpoint never trained on grounding (default: random)",
    )
    s2.add_argument("--size", default="demo", help="model size preset when starting from scratch")
    s2.add_argument(
        "--layers", type=int, default=None, help="language-model depth when starting from scratch"
    )
    s2.add_argument(
        "--text-first", action="store_true", help="the question before the image, when starting from scratch"
    )
    s2.add_argument("--tokenizer", default="runs/stage1/tokenizer")
    s2.add_argument("--steps", type=int, default=600)
    s2.add_argument("--batch-size", type=int, default=12)
    s2.add_argument("--grounding-batch-size", type=int, default=4)
    s2.add_argument("--grounding-weight", type=float, default=0.1)
    s2.add_argument(
        "--grounding-data",
        nargs="*",
        default=[],
        help="the co-training's grounding corpus (default: the demonstrations); list the demonstrations too to keep them",
    )
    s2.add_argument("--head-steps", type=int, default=0, help="then train the DiT alone on cached conditions")
    s2.add_argument("--head-batch-size", type=int, default=32)
    s2.add_argument("--head-lr", type=float, default=1e-3)
    s2.add_argument(
        "--head-answers",
        choices=("own", "true"),
        default="own",
        help="the spatial answers the head phase's DiT reads (answer-reading models): the model's own, or the ground truth's",
    )
    s2.add_argument(
        "--state", action="store_true", help="the action expert also reads the robot state (not upstream)"
    )
    s2.add_argument(
        "--tcp",
        action="store_true",
        help="with --state: the robot state ends with the TCP position (x, y, z), not the joints alone (not upstream)",
    )
    s2.add_argument(
        "--condition-on-answer",
        action="store_true",
        help="the query former also reads the spatial answer: true in training, generated at control time "
        "(not upstream)",
    )
    s2.add_argument(
        "--answer-points",
        action="store_true",
        help="the action expert also reads the centres of the spatial answer's boxes: true in the joint "
        "phase, the model's own in the head phase and at control time (not upstream)",
    )
    s2.add_argument("--seed", type=int, default=0)
    s2.add_argument("--no-resume", action="store_true")
    s2.add_argument("--threads", type=int, default=1, help="torch CPU threads")

    hd = tsub.add_parser(
        "head",
        help="more head-phase steps for a finished checkpoint's action expert, on (new) demonstrations",
    )
    hd.add_argument("--checkpoint", required=True, help="a stage-2 checkpoint (workbench format)")
    hd.add_argument("--data", nargs="+", required=True, help="demonstrations (LeRobot layout)")
    hd.add_argument("--out", required=True)
    hd.add_argument("--steps", type=int, required=True)
    hd.add_argument("--batch-size", type=int, default=32)
    hd.add_argument("--lr", type=float, default=1e-3)
    hd.add_argument("--warmup", type=int, default=100)
    hd.add_argument("--answers", choices=("own", "true"), default="own", help="as stage2 --head-answers")
    hd.add_argument("--seed", type=int, default=0)
    hd.add_argument("--no-resume", action="store_true")
    hd.add_argument("--threads", type=int, default=1, help="torch CPU threads")

    an = tsub.add_parser(
        "answers",
        help="the answer phase: a finished checkpoint's VLM taught its spatial prompt's true answer on "
        "fresh demonstrations (follow with `train head`)",
    )
    an.add_argument("--checkpoint", required=True, help="a stage-2 checkpoint with the spatial prompt")
    an.add_argument("--data", nargs="+", required=True, help="demonstrations with ground truth")
    an.add_argument("--out", required=True)
    an.add_argument("--steps", type=int, default=1500)
    an.add_argument("--batch-size", type=int, default=16)
    an.add_argument("--lr", type=float, default=1e-4)
    an.add_argument("--seed", type=int, default=0)
    an.add_argument("--no-resume", action="store_true")
    an.add_argument("--threads", type=int, default=1, help="torch CPU threads")

    ev = sub.add_parser("evaluate", help="closed-loop success in the built-in sim; md + json + html report")
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--episodes", type=int, default=4, help="episodes per task and cell")
    ev.add_argument("--seed", type=int, default=10_000)
    ev.add_argument("--out", default="runs/eval")
    ev.add_argument("--tasks", nargs="+", default=None)
    ev.add_argument("--max-steps", type=int, default=None)
    ev.add_argument("--ddim-steps", type=int, default=5)
    ev.add_argument("--cfg-scale", type=float, default=1.5, help="classifier-free guidance (1: none)")
    ev.add_argument(
        "--ensemble-horizon", type=int, default=2, help="chunks averaged per executed action (1: the latest)"
    )
    ev.add_argument(
        "--refine-radius", type=int, default=0,
        help="write the spatial answer's coordinates as their local expectation over this many pixels (0: greedy)",
    )  # fmt: skip
    ev.add_argument(
        "--answer-votes", type=int, default=1,
        help="answer the spatial prompt on this many shifted copies of the frame and act on the median (1: the frame alone)",
    )  # fmt: skip
    ev.add_argument("--no-grounding", action="store_true")
    ev.add_argument(
        "--cells", nargs="+", default=None, choices=["seen/seen", "seen/unseen", "unseen/seen", "unseen/unseen"],
        help="cells to roll out, e.g. seen/seen seen/unseen for a validation that never touches unseen objects",
    )  # fmt: skip
    ev.add_argument(
        "--workers", type=int, default=1, help="processes, one thread each (cells run in parallel)"
    )
    ev.add_argument(
        "--paired-scenes", action="store_true",
        help="the older protocol: every cell of a task replays the seeds seed..seed+n-1",
    )  # fmt: skip

    cmp = sub.add_parser("compare", help="success gap of A over B on the episodes two reports share")
    cmp.add_argument(
        "reports",
        nargs="+",
        help="A then B: each a report.json or the --out folder of an evaluation; with --vs, A's reports to pool",
    )
    cmp.add_argument("--vs", nargs="+", help="B's reports to pool (several seed sets of one checkpoint)")


def run_train(args: argparse.Namespace) -> int:
    from workbench.train.common import model_size
    from workbench.train.optim import OptimConfig

    if args.train_command == "data":
        from workbench.train.data import TASKS, DataConfig, SceneConfig, generate, generate_scenes

        tasks = tuple(args.tasks or TASKS)
        if not args.no_demos:
            root = generate(
                DataConfig(
                    out=args.out,
                    tasks=tasks,
                    episodes_per_task=args.episodes_per_task,
                    seed=args.seed,
                    action_noise=args.action_noise,
                    noise_phases=tuple(args.noise_phases),
                    noise_probability=args.noise_probability,
                    miss_offset=args.miss_offset,
                )  # fmt: skip
            )
            print(f"demonstrations: {root}")
        if args.scenes_out:
            scenes = SceneConfig(
                out=args.scenes_out, tasks=tuple(args.scenes_tasks or tasks), scenes_per_task=args.scenes_per_task,
                seed=args.scenes_seed, distractors=args.scenes_distractors,
                split=args.scenes_split,
            )  # fmt: skip
            print("scenes:", generate_scenes(scenes))
        return 0
    if args.train_command == "stage1":
        from workbench.train.stage1 import Stage1Config, train_stage1

        cfg = Stage1Config(
            data=tuple(args.data), out=args.out, model=model_size(args.size, merge=args.merge, layers=args.layers, text_first=args.text_first),
            steps=args.steps, batch_size=args.batch_size, optim=OptimConfig(lr=args.lr, warmup_steps=args.warmup, lr_vision=args.vision_lr),
            eval_every=args.eval_every, heldout_episodes=args.heldout_episodes, seed=args.seed,
            curriculum_data=tuple(args.curriculum_data), curriculum_steps=args.curriculum_steps,
            curriculum_mix=args.curriculum_mix, detect_all=args.detect_all, exists=args.exists, contrast=args.contrast,
            init=args.init, per_answer_loss=args.per_answer_loss, pointing=args.pointing,
            pointing_layer=args.pointing_layer, pointing_head=args.pointing_head, threads=args.threads,
        )  # fmt: skip
        print(json.dumps(asdict(cfg)))
        print("stage-1 checkpoint:", train_stage1(cfg, resume=not args.no_resume))
        return 0
    from workbench.train.head import HeadContinueConfig, HeadPhaseConfig, continue_head

    if args.train_command == "answers":
        from workbench.train.answers import AnswerPhaseConfig, tune_answers
        from workbench.train.common import seed_everything

        seed_everything(args.seed, args.threads)
        cfg = AnswerPhaseConfig(
            args.checkpoint, tuple(args.data), args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
            seed=args.seed,
        )  # fmt: skip
        print(json.dumps(asdict(cfg)))
        print("checkpoint:", tune_answers(cfg, resume=not args.no_resume))
        return 0
    if args.train_command == "head":
        from workbench.train.common import seed_everything

        seed_everything(args.seed, args.threads)
        head = HeadPhaseConfig(
            steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup, answers=args.answers
        )  # fmt: skip
        cfg = HeadContinueConfig(args.checkpoint, tuple(args.data), args.out, head, seed=args.seed)
        print(json.dumps(asdict(cfg)))
        print("checkpoint:", continue_head(cfg, resume=not args.no_resume))
        return 0
    from workbench.train.stage2 import Stage2Config, train_stage2

    cfg = Stage2Config(
        data=tuple(args.data), out=args.out, init=args.init, vanilla=args.vanilla, base=args.base,
        model=model_size(args.size, layers=args.layers, text_first=args.text_first),
        tokenizer=args.tokenizer, steps=args.steps, batch_size=args.batch_size,
        grounding_batch_size=args.grounding_batch_size, grounding_loss_weight=args.grounding_weight, seed=args.seed,
        grounding_data=tuple(args.grounding_data),
        state=args.state, tcp=args.tcp, condition_on_answer=args.condition_on_answer, answer_points=args.answer_points, threads=args.threads,
        head=HeadPhaseConfig(
            steps=args.head_steps, batch_size=args.head_batch_size, lr=args.head_lr, answers=args.head_answers
        ),
    )  # fmt: skip
    print(json.dumps(asdict(cfg)))
    print("stage-2 checkpoint:", train_stage2(cfg, resume=not args.no_resume))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from workbench.evaluate import CELLS, TASKS, EvalConfig, evaluate, markdown, write_report

    cells = tuple(tuple(c.split("/")) for c in args.cells) if args.cells else CELLS
    cfg = EvalConfig(
        checkpoint=args.checkpoint, out=args.out, tasks=tuple(args.tasks or TASKS), episodes=args.episodes,
        seed=args.seed, max_steps=args.max_steps, ddim_steps=args.ddim_steps, cfg_scale=args.cfg_scale,
        ensemble_horizon=args.ensemble_horizon, refine_radius=args.refine_radius,
        answer_votes=args.answer_votes, grounding=not args.no_grounding,
        cells=cells, paired_scenes=args.paired_scenes, workers=args.workers,
    )  # fmt: skip
    report = evaluate(cfg)
    paths = write_report(report, cfg.out)
    print(markdown(report))
    print("report:", ", ".join(str(p) for p in paths.values()))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from workbench.compare import compare

    if args.vs is None and len(args.reports) != 2:
        print("workbench compare: give A and B, or A's reports then --vs and B's", file=sys.stderr)
        return 2
    a, b = (args.reports, args.vs) if args.vs else ([args.reports[0]], [args.reports[1]])
    try:
        print(compare(a, b))
    except (OSError, ValueError) as e:
        print(f"workbench compare: {e}", file=sys.stderr)
        return 2
    return 0
