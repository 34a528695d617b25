"""The ablation's options: non-spatial scene text (no coordinate, answerable from the ground truth),
stage 1 on it (`--content nonspatial`) and stage 2 without the spatial prompt (`--no-spatial-prompt`)."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest

from workbench import spatial
from workbench.records import GroundTruth
from workbench.spatial import Box, Point
from workbench.train.data import SceneConfig, generate_scenes, grounding_pairs, load_frames, seen_object_names
from workbench.train.nonspatial import NONSPATIAL_KINDS, category, nonspatial_pairs

TASKS = ("tabletop_pick", "tabletop_put_on", "tabletop_put_in", "tabletop_stack", "tabletop_move_near")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Frames of every task, seen and unseen objects (the unseen split holds meshes named with digits)."""
    root = tmp_path_factory.mktemp("ns")
    seen = generate_scenes(SceneConfig(out=str(root / "seen"), tasks=TASKS, scenes_per_task=3, seed=100))
    unseen = SceneConfig(out=str(root / "unseen"), tasks=TASKS, scenes_per_task=6, seed=200, split="unseen")
    frames = load_frames((seen, generate_scenes(unseen)), 56, 4)
    return frames, (str(seen),)


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+(?:\.\d+)?", text)]


def test_nonspatial_text_holds_no_coordinate(scenes):
    frames, _ = scenes
    assert any(re.search(r"\d", b.label) for f in frames for b in f.ground_truth.objects), (
        "the fixture should hold a mesh whose name has digits"
    )
    kinds = set()
    for f in frames:
        gt = f.ground_truth
        pairs = nonspatial_pairs(gt, f.instruction, seen_object_names())
        kinds |= {p.kind for p in pairs}
        coords = set()  # every coordinate the grounding answers of this frame write
        for qa in grounding_pairs(gt, f.instruction, f.frame):
            if qa.kind in ("object_box", "object_point", "task_box", "task_point", "trace"):
                coords |= set(numbers(qa.answer))
        assert coords
        names = " ".join(b.label for b in gt.objects)
        for qa in pairs:
            for text in (qa.question, qa.answer):
                assert not spatial.parse(text, f.frame).geometry, text
                # no relation between objects, but in the task's own instruction (every arm reads it)
                own = text.replace(f.instruction.lower(), "")
                assert not re.search(r"bbox|point_2d|\[|\]|left|right|above|below|near|beside", own), text
                # every digit is part of an object's name, or (answers of count questions) the count
                rest = text
                for b in gt.objects:
                    rest = rest.replace(b.label, "")
                if qa.kind == "ns_count" and text is qa.answer:
                    assert re.fullmatch(r"\d+", rest) and int(rest) <= len(gt.objects), (qa, rest)
                else:
                    assert not re.search(r"\d", rest), (qa, names)
    assert kinds == set(NONSPATIAL_KINDS)


def test_nonspatial_answers_follow_from_the_ground_truth_and_not_from_positions(scenes):
    frames, _ = scenes
    for f in frames:
        gt = f.ground_truth
        labels = [b.label for b in gt.objects]
        pairs = nonspatial_pairs(gt, f.instruction, seen_object_names())
        by_kind: dict[str, list] = {}
        for qa in pairs:
            by_kind.setdefault(qa.kind, []).append(qa)
        (objects,) = by_kind["ns_objects"]
        assert all(label in objects.answer for label in labels)
        assert [objects.answer.index(label) for label in sorted(labels)] == sorted(
            objects.answer.index(label) for label in labels
        )  # alphabetical, whatever the boxes' order
        for qa in by_kind["ns_count"]:
            if qa.question == "How many objects are on the table?":
                assert qa.answer == str(len(labels))
            else:
                word = qa.question.split()[2]
                assert int(qa.answer) == sum(
                    category(label) is not None and word.startswith(category(label)) for label in labels
                )
        assert {
            q.question.split("Is there a ")[1].split(" in the")[0] for q in by_kind["ns_exists_yes"]
        } == set(labels)
        assert all(q.answer == "No" for q in by_kind["ns_exists_no"])
        assert not {
            q.question.split("Is there a ")[1].split(" in the")[0] for q in by_kind["ns_exists_no"]
        } & set(labels)
        (task,) = by_kind["ns_task_object"]
        assert task.answer == gt.object_label and f.instruction.lower() in task.question
        assert all(label in by_kind["ns_caption"][0].answer for label in labels)

        # moved and reordered objects: the same text (nothing in it depends on where things are)
        rng = np.random.default_rng(0)
        moved = GroundTruth(
            objects=[Box(*(rng.uniform(0, 200, 4)), label=b.label) for b in reversed(gt.objects)],
            key_points=[Point(*rng.uniform(0, 200, 2), p.label) for p in gt.key_points],
            object_label=gt.object_label,
            target_label=gt.target_label,
        )
        assert nonspatial_pairs(moved, f.instruction, seen_object_names()) == pairs


def test_question_mixes_refuse_unknown_kinds():
    from workbench.train.common import sample_pairs

    with pytest.raises(ValueError, match="unknown question kinds"):
        sample_pairs([], 1, np.random.default_rng(0), {"ns_colour": 1.0})
    with pytest.raises(ValueError, match="positive sum"):
        sample_pairs([], 1, np.random.default_rng(0), {"ns_count": 0.0})


def test_nonspatial_stage1_config_asks_only_nonspatial_questions():
    from workbench.train.stage1 import DEFAULT_KINDS, Stage1Config, question_mixes

    cfg = Stage1Config(content="nonspatial")
    assert cfg.kinds == NONSPATIAL_KINDS
    main, curriculum = question_mixes(cfg)
    assert set(main) == set(curriculum) == set(NONSPATIAL_KINDS)
    assert question_mixes(Stage1Config())[0] == DEFAULT_KINDS  # the recipe's mix, unchanged
    for bad in ({"pointing": 0.5}, {"detect_all": 0.2}, {"exists": 0.2}, {"contrast": True}):
        with pytest.raises(ValueError, match="--content nonspatial"):
            Stage1Config(content="nonspatial", **bad)
    with pytest.raises(ValueError, match="object_box"):
        Stage1Config(content="nonspatial", kinds={"object_box": 1.0, "ns_count": 1.0})
    with pytest.raises(ValueError, match="--content"):
        Stage1Config(content="maps")


def test_nonspatial_stage1_trains_on_nonspatial_questions_only(scenes, tmp_path, monkeypatch):
    import workbench.train.stage1 as stage1
    from workbench.train.common import model_size
    from workbench.train.optim import OptimConfig

    asked = []
    real = stage1.sample_pairs

    def spy(*args, **kwargs):
        pairs = real(*args, **kwargs)
        asked.extend(qa.kind for _, qa in pairs)
        return pairs

    monkeypatch.setattr(stage1, "sample_pairs", spy)
    _, data = scenes
    cfg = stage1.Stage1Config(
        data=data, out=str(tmp_path / "s1"), model=model_size("test"), steps=3, batch_size=6,
        optim=OptimConfig(lr=1e-3, warmup_steps=1), eval_every=3, eval_frames=4, heldout_episodes=2,
        curriculum_data=data, curriculum_steps=1, content="nonspatial",
    )  # fmt: skip
    stage1.train_stage1(cfg)
    assert len(asked) == 18 and set(asked) <= set(NONSPATIAL_KINDS)
    row = json.loads((tmp_path / "s1" / "log.json").read_text())[-1]
    assert 0.0 <= row["nonspatial_exact"] <= 1.0
    assert json.loads((tmp_path / "s1" / "config.json").read_text())["content"] == "nonspatial"


def test_stage2_without_the_spatial_prompt_refuses_what_needs_it():
    from workbench.train.stage2 import Stage2Config, training_note

    with pytest.raises(ValueError, match="condition-on-answer"):
        Stage2Config(spatial_prompt=False, condition_on_answer=True)
    with pytest.raises(ValueError, match="answer-points"):
        Stage2Config(spatial_prompt=False, answer_points=True)
    for bad in ({}, {"state": True, "answer_points": True}, {"state": True, "tcp": True}):
        with pytest.raises(ValueError, match="true-points"):
            Stage2Config(true_points=True, **bad)
    control = Stage2Config(spatial_prompt=False, state=True, true_points=True)
    assert "true box centres" in training_note(control)
    assert (
        training_note(Stage2Config(spatial_prompt=False))
        == "plain instruction, co-trained on spatial questions"
    )
    nonspatial = Stage2Config(spatial_prompt=False, grounding_content="nonspatial")
    assert training_note(nonspatial) == "plain instruction, co-trained on nonspatial questions"

    co = Stage2Config(grounding_content="nonspatial", spatial_prompt=False)
    assert co.grounding_kinds == NONSPATIAL_KINDS
    assert Stage2Config().grounding_kinds == {"task_box": 0.6, "object_box": 0.4}  # the recipe's, unchanged
    with pytest.raises(ValueError, match="task_box"):
        Stage2Config(grounding_content="nonspatial", grounding_kinds={"task_box": 1.0})


def test_control_reads_the_true_box_centres_in_training_and_at_evaluation(scenes):
    """--true-points: the four numbers an answer-points model is taught, from the ground truth, after the
    joints; the evaluation's input transform appends the same four to the observation's joints."""
    from workbench.policy.extras import points_from_answer
    from workbench.policy_input import PolicyInput
    from workbench.records import Observation
    from workbench.train.control import true_points_input, with_true_points
    from workbench.train.head import true_answer

    frames, _ = scenes
    picked = [replace(f) for f in frames[:6]]
    joints = [f.state.copy() for f in picked]
    with_true_points(picked)
    for f, before in zip(picked, joints, strict=True):
        truth = points_from_answer(true_answer(f), f.frame.width, f.frame.height)
        np.testing.assert_allclose(f.state[: len(before)], before)
        np.testing.assert_allclose(f.state[len(before) :], truth, atol=1e-6)
        assert (truth[:2] > -1).all()  # the source's box is always there
    with pytest.raises(ValueError, match="true-points"):
        with_true_points([replace(frames[0], ground_truth=None)])

    f = frames[0]
    image = np.zeros((f.frame.orig_height, f.frame.orig_width, 3), np.uint8)
    obs = Observation({"cam": image}, f.instruction, state=np.arange(9.0), ground_truth=f.ground_truth)
    given = true_points_input(f.frame.width)(PolicyInput.from_observation(obs, f.instruction), 0)
    np.testing.assert_allclose(given.state[:9], np.arange(9.0))
    np.testing.assert_allclose(
        given.state[9:], points_from_answer(true_answer(f), f.frame.width, f.frame.height)
    )


def test_locator_learns_the_true_points_and_feeds_them_to_the_control(scenes, tmp_path):
    """`workbench train locator`: a plain localisation head fitted to the true points of the frames it
    trains on; its transform appends its prediction (four numbers in [-1, 1]) to the joints."""
    import torch

    from workbench.policy_input import PolicyInput
    from workbench.records import Observation
    from workbench.train.locator import (
        Locator,
        LocatorConfig,
        load_locator,
        locate,
        located_points_input,
        loss_of,
        train_locator,
        word_ids,
    )  # fmt: skip

    assert word_ids("Pick up the red cube", 2048) == word_ids("pick UP the red cube", 2048)  # stable, cased
    _, data = scenes
    cfg = LocatorConfig(data=data, out=str(tmp_path / "loc"), image_size=56, steps=150, batch_size=8,
                        lr=3e-3, warmup_steps=5, log_every=50, heldout_episodes=0)  # fmt: skip
    torch.manual_seed(0)
    seen = load_frames(data, 56, 1)
    model, size = load_locator(train_locator(cfg))
    assert size == 56
    log = json.loads((tmp_path / "loc" / "log.json").read_text())
    assert log[-1]["loss"] < 0.6 * log[0]["loss"], log
    fresh = Locator(cfg.width, cfg.buckets).eval()
    with torch.no_grad():
        assert loss_of(model, seen)[1] < 0.7 * loss_of(fresh, seen)[1]  # closer to the truth than untrained

    f = seen[0]
    image = np.zeros((f.frame.orig_height, f.frame.orig_width, 3), np.uint8)
    points = locate(model, image, f.instruction, size)  # a camera-size image, resized as the policy does
    assert points.shape == (4,) and points.dtype == np.float32 and (np.abs(points) <= 1).all()
    obs = Observation({"cam": image}, f.instruction, state=np.arange(9.0), ground_truth=None)
    given = located_points_input(tmp_path / "loc" / "final")(
        PolicyInput.from_observation(obs, f.instruction), 0
    )
    np.testing.assert_allclose(given.state[:9], np.arange(9.0))
    np.testing.assert_allclose(given.state[9:], points)  # no ground truth is read
    with pytest.raises(FileNotFoundError, match="locator.json"):
        load_locator(tmp_path)
