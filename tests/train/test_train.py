"""Training: data from the simulator, both stages end to end at a tiny size, resumable state."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from workbench import spatial, spatial_metrics
from workbench.train.data import (
    DataConfig,
    SceneConfig,
    action_chunk,
    generate,
    generate_scenes,
    gripper_to_env,
    gripper_to_model,
    grounding_pairs,
    load_frames,
)
from workbench.train.head import HeadPhaseConfig
from workbench.train.optim import OptimConfig, build_optimizer, build_scheduler, warmup_cosine
from workbench.train.state import load_train_state, save_train_state

TASKS = ("tabletop_pick", "tabletop_move_near")  # the two shortest expert episodes


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    demos = generate(DataConfig(out=str(root / "demos"), tasks=TASKS, episodes_per_task=1, seed=0))
    scenes = generate_scenes(SceneConfig(out=str(root / "scenes"), tasks=TASKS, scenes_per_task=3))
    one = SceneConfig(out=str(root / "one"), tasks=("tabletop_pick",), scenes_per_task=3, distractors=0)
    return demos, scenes, generate_scenes(one)


def test_curriculum_scenes_hold_exactly_one_object(data):
    frames = load_frames(data[2], 112, 4)
    assert len(frames) == 3
    assert all(len(f.ground_truth.objects) == 1 for f in frames)
    assert all(len(f.ground_truth.objects) > 1 for f in load_frames(data[1], 112, 4))


def test_unseen_scenes_show_unseen_objects_under_seen_phrasings(tmp_path):
    """--scenes-split unseen widens the grounding corpus to the unseen objects; the instructions stay
    seen paraphrases, so the unseen paraphrase split never reaches training."""
    from workbench.sim import catalog, instructions

    with pytest.raises(ValueError, match="split"):
        SceneConfig(split="novel")
    root = generate_scenes(
        SceneConfig(out=str(tmp_path / "u"), tasks=("tabletop_put_on",), scenes_per_task=3, split="unseen")
    )
    frames = load_frames(root, 112, 4)
    assert len(frames) == 3
    for f in frames:
        gt = f.ground_truth
        assert all(catalog.get(b.label).split == "unseen" for b in gt.objects)
        seen = instructions.paraphrases("tabletop_put_on", gt.object_label, gt.target_label, "seen")
        assert f.instruction in seen
        unseen = instructions.paraphrases("tabletop_put_on", gt.object_label, gt.target_label, "unseen")
        assert f.instruction not in unseen


def test_demonstrations_are_lerobot_datasets_of_successful_seen_episodes(data):
    from workbench.episodes.lerobot import LeRobotDataset
    from workbench.sim import catalog

    ds = LeRobotDataset(data[0])
    assert ds.num_episodes == 2 and ds.version == "v3.0"
    assert all(m["success"] for m in ds.episodes.values())
    for ep in ds:
        assert ep.actions.shape[1] == 7
        assert set(np.unique(ep.actions[:, 6])) <= {-1.0, 1.0}
        gt = ep.frames[0].ground_truth
        assert catalog.get(gt.object_label).split == "seen"  # never the unseen split


def test_grounding_answers_parse_back_to_the_ground_truth(data):
    from workbench.sim.catalog import objects

    frames = load_frames(data[1], 112, 4)
    item = frames[0]
    assert item.image.shape == (112, 112, 3)
    pairs = grounding_pairs(item.ground_truth, item.instruction, item.frame)
    kinds = {p.kind for p in pairs}
    assert {"object_box", "object_point", "task_box", "task_point", "trace"} <= kinds
    for p in pairs:
        if p.kind != "object_box":
            continue
        answer = spatial.parse(p.answer, item.frame)
        assert answer.ok
        (box,) = answer.geometry
        truth = next(b for b in item.ground_truth.objects if b.label == box.label)
        # one model-frame pixel is 2 original pixels wide at 112 px from 224 px: within rounding
        assert spatial_metrics.box_iou(box, truth) > 0.7
    # "Detect every object": all of them, left to right, each with its label.
    scene = spatial.parse(next(p for p in pairs if p.kind == "all_boxes").answer, item.frame)
    assert sorted(g.label for g in scene.geometry) == sorted(b.label for b in item.ground_truth.objects)
    xs = [g.center[0] for g in scene.geometry]
    assert xs == sorted(xs)
    task = next(p for p in pairs if p.kind == "task_box")
    assert "Locate their bounding boxes" in task.question  # the spatial prompt itself
    labels = [g.label for g in spatial.parse(task.answer, item.frame).geometry]
    assert labels[0] == item.ground_truth.object_label
    # "Is there a <name>?": yes for each object on the table, no for every absent seen object.
    present = {b.label for b in item.ground_truth.objects}
    yes = {p.question for p in pairs if p.kind == "exists_yes" and p.answer == "Yes"}
    no = {p.question for p in pairs if p.kind == "exists_no" and p.answer == "No"}
    asked = "Is there a {} in the image? Answer yes or no."
    assert yes == {asked.format(n) for n in present}
    absent = {spec.name for spec in objects("seen")} - present
    assert absent and no == {asked.format(n) for n in absent}


def test_contrast_pairs_ask_about_two_objects_of_the_same_image(data):
    from workbench.train.common import sample_pairs

    frames = load_frames(data[1], 112, 4)  # scenes of 2-4 objects
    kinds = {"object_box": 1.0}
    drawn = sample_pairs(frames, 16, np.random.default_rng(0), kinds, contrast=True)
    assert len(drawn) == 16
    for (img_a, qa_a), (img_b, qa_b) in zip(drawn[::2], drawn[1::2], strict=True):
        assert img_a is img_b  # the same image...
        assert qa_a.question != qa_b.question and qa_a.answer != qa_b.answer  # ...two of its objects
    plain = sample_pairs(frames, 16, np.random.default_rng(0), kinds)
    assert sum(a is b for (a, _), (b, _) in zip(plain[::2], plain[1::2], strict=True)) < 8


def test_added_kinds_take_their_share_and_keep_the_other_kinds_ratios():
    from workbench.train.stage1 import DEFAULT_KINDS, with_shares

    assert with_shares(DEFAULT_KINDS, {"all_boxes": 0.0}) == DEFAULT_KINDS
    mix = with_shares(DEFAULT_KINDS, {"all_boxes": 0.2, "exists_yes": 0.1, "exists_no": 0.1})
    assert mix["all_boxes"] == 0.2 and mix["exists_no"] == 0.1
    assert sum(mix.values()) == pytest.approx(1.0)
    assert mix["object_box"] / mix["task_box"] == pytest.approx(
        DEFAULT_KINDS["object_box"] / DEFAULT_KINDS["task_box"]
    )
    with pytest.raises(ValueError, match="share"):
        with_shares(DEFAULT_KINDS, {"all_boxes": 1.0})
    with pytest.raises(ValueError, match="all of the mix"):
        with_shares(DEFAULT_KINDS, {"all_boxes": 0.6, "exists_yes": 0.4})


def test_action_chunks_pad_with_stay_and_keep_the_gripper():
    actions = np.arange(21, dtype=np.float32).reshape(3, 7)
    actions[:, 6] = [1, 1, -1]
    chunk = action_chunk(actions, 2, 4)
    assert chunk.shape == (4, 7)
    np.testing.assert_array_equal(chunk[0], actions[2])
    assert np.all(chunk[1:, :6] == 0) and np.all(chunk[1:, 6] == -1)
    model = gripper_to_model(actions)
    assert list(model[:, 6]) == [1, 1, 0]
    assert list(gripper_to_env(model)[:, 6]) == [1, 1, -1]


def test_warmup_then_cosine():
    assert warmup_cosine(0, 10, 100, 0.0) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100, 0.0) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100, 0.0) == pytest.approx(0.5)
    assert warmup_cosine(100, 10, 100, 0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown parameter group"):
        build_optimizer({"decoder": torch.nn.Linear(2, 2).parameters()}, OptimConfig())


def test_train_state_round_trip_restores_model_optimiser_schedule_and_rng(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    cfg = OptimConfig(lr=1e-2, warmup_steps=2)
    opt = build_optimizer({"base": model.parameters()}, cfg)
    sched = build_scheduler(opt, cfg, 10)
    for _ in range(3):
        model(torch.randn(5, 4)).pow(2).mean().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    save_train_state(tmp_path / "state", model, opt, sched, 3, {"note": "x"})
    expected_next = torch.randn(3)
    weights = [p.detach().clone() for p in model.parameters()]
    exp_avg = opt.state[opt.param_groups[0]["params"][0]]["exp_avg"].clone()

    model2 = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    opt2 = build_optimizer({"base": model2.parameters()}, cfg)
    sched2 = build_scheduler(opt2, cfg, 10)
    state = load_train_state(tmp_path / "state", model2, opt2, sched2)
    assert state.step == 3 and state.extra == {"note": "x"}
    for a, b in zip(weights, model2.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(opt2.state[opt2.param_groups[0]["params"][0]]["exp_avg"], exp_avg)
    assert sched2.last_epoch == 3
    torch.testing.assert_close(torch.randn(3), expected_next)  # the RNG continues where it stopped
    with pytest.raises(FileNotFoundError, match="no training state"):
        load_train_state(tmp_path / "missing", model2, opt2, sched2)


@pytest.mark.slow
def test_tiny_two_stage_run_lowers_losses_and_resumes(data, tmp_path, capsys):
    from workbench.policy.policy import ST4VLAPolicy
    from workbench.train.common import model_size
    from workbench.train.stage1 import Stage1Config, train_stage1
    from workbench.train.stage2 import Stage2Config, train_stage2

    size = model_size("test")
    s1 = Stage1Config(
        data=(str(data[0]), str(data[1])), out=str(tmp_path / "s1"), model=size, steps=40, batch_size=8,
        optim=OptimConfig(lr=2e-3, warmup_steps=5), eval_every=10, save_every=20, heldout_episodes=1,
        eval_frames=2, curriculum_data=(str(data[2]),), curriculum_steps=10,
    )  # fmt: skip
    ckpt = train_stage1(s1)
    log1 = json.loads((tmp_path / "s1" / "log.json").read_text())
    assert log1[-1]["loss"] < 0.7 * log1[0]["loss"], log1
    assert "object_box_iou" in log1[-1] and "one_object_box_iou" in log1[-1]
    for key in ("object_centre_rms", "task_centre_rms", "one_object_centre_rms"):
        assert np.isfinite(log1[-1][key]) and log1[-1][key] >= 0.0, (key, log1[-1])
    assert "task centre error" in (ckpt / "README.md").read_text()

    # --init: a stage 1 that starts from a checkpoint's weights and tokenizer, not from random ones
    # (here also switching the prompts to the question first, which changes no weight).
    again = Stage1Config(
        data=s1.data, out=str(tmp_path / "s1_init"), model=replace(size, text_first=True), steps=1, batch_size=2, heldout_episodes=1,
        eval_frames=2, optim=OptimConfig(lr=1e-12, warmup_steps=1), init=str(ckpt),
    )  # fmt: skip
    started_policy = ST4VLAPolicy.load(train_stage1(again))
    assert started_policy.config.vlm.text_first and not ST4VLAPolicy.load(ckpt).config.vlm.text_first
    started = started_policy.model.state_dict()
    assert all(
        torch.allclose(started[k], v, atol=1e-6)
        for k, v in ST4VLAPolicy.load(ckpt).model.state_dict().items()
    )
    assert (tmp_path / "s1_init" / "tokenizer" / "tokenizer.json").read_text() == (
        ckpt / "tokenizer.json"
    ).read_text()

    # --vision-lr 0: from the same start, only the language model moves (here with the per-answer loss
    # and the pointing loss, whose running value is logged).
    frozen = Stage1Config(
        data=s1.data, out=str(tmp_path / "s1_frozen"), model=size, steps=3, batch_size=2, heldout_episodes=1,
        eval_frames=2, optim=OptimConfig(lr=2e-3, warmup_steps=1, lr_vision=0.0), init=str(ckpt),
        per_answer_loss=True, pointing=0.5, pointing_layer=0, pointing_head=1,
    )  # fmt: skip
    after = ST4VLAPolicy.load(train_stage1(frozen)).model.state_dict()
    assert json.loads((tmp_path / "s1_frozen" / "config.json").read_text())["per_answer_loss"] is True
    assert json.loads((tmp_path / "s1_frozen" / "log.json").read_text())[-1]["pointing_loss"] > 0.0
    with pytest.raises(ValueError, match="pointing-layer"):
        train_stage1(replace(frozen, out=str(tmp_path / "bad"), pointing_layer=size.layers))
    before = ST4VLAPolicy.load(ckpt).model.state_dict()
    vision = [k for k in before if ".visual." in k]
    language = [k for k in before if ".language_model." in k]
    assert vision and language
    assert all(torch.equal(after[k], before[k]) for k in vision)
    assert not all(torch.equal(after[k], before[k]) for k in language)

    s2 = Stage2Config(
        data=(str(data[0]),), out=str(tmp_path / "s2"), init=str(ckpt), steps=30, batch_size=4,
        grounding_batch_size=2, optim=OptimConfig(lr=2e-3, lr_vlm=5e-4, lr_action=3e-3, warmup_steps=3),
        save_every=15, log_every=5, repeated_diffusion_steps=2,
    )  # fmt: skip
    final = train_stage2(s2)
    log2 = json.loads((tmp_path / "s2" / "log.json").read_text())
    assert log2[-1]["action_loss"] < log2[0]["action_loss"], log2
    assert log2[-1]["grounding_loss"] < log2[0]["grounding_loss"], log2
    policy = ST4VLAPolicy.load(final)
    assert policy.config.use_spatial_prompt
    assert policy.prompt("Pick Up The Cube").startswith("Your task is pick up the cube.")
    assert policy.unnorm_key == "tabletop_panda"

    # Interrupted run: the state at step 30 resumes to 36 without starting over.
    s2.steps = 36
    train_stage2(s2)
    assert "resumed stage 2 at step 30" in capsys.readouterr().out
    assert json.loads((tmp_path / "s2" / "state" / "state.json").read_text())["step"] == 36

    vanilla = Stage2Config(
        data=(str(data[0]),), out=str(tmp_path / "v"), vanilla=True, model=size,
        tokenizer=str(tmp_path / "s1" / "tokenizer"), steps=4, batch_size=4,
    )  # fmt: skip
    assert vanilla.init is None and vanilla.grounding_loss_weight == 0.0
    base = ST4VLAPolicy.load(train_stage2(vanilla))
    assert not base.config.use_spatial_prompt
    assert base.prompt("Pick Up The Cube") == "pick up the cube"

    # --base: the vanilla baseline starts from a VLM never trained on grounding (a vision
    # pre-training), with the plain instruction; ST4VLA refuses it (it starts from --init).
    start = ST4VLAPolicy.from_config(size.config(), tokenizer_dir=tmp_path / "s1" / "tokenizer", seed=7)
    start.save(tmp_path / "base")
    from_base = Stage2Config(
        data=(str(data[0]),), out=str(tmp_path / "vb"), vanilla=True, base=str(tmp_path / "base"), steps=1,
        batch_size=2, optim=OptimConfig(lr=1e-12, lr_vlm=1e-12, lr_action=1e-12, warmup_steps=1),
    )  # fmt: skip
    assert from_base.init == str(tmp_path / "base") and from_base.grounding_loss_weight == 0.0
    trained_vlm = ST4VLAPolicy.load(train_stage2(from_base))
    assert trained_vlm.prompt("Pick Up The Cube") == "pick up the cube"
    vlm_after = trained_vlm.model.qwen_vl_interface.state_dict()
    assert all(
        torch.allclose(vlm_after[k], v, atol=1e-6)
        for k, v in start.model.qwen_vl_interface.state_dict().items()
    )
    with pytest.raises(ValueError, match="--base"):
        Stage2Config(base=str(tmp_path / "base"))

    # --state: the stage-1 checkpoint gets an action expert that reads the joint positions.
    # Then the head phase: only the DiT moves, on conditions cached once; it resumes like the rest.
    with_state = Stage2Config(
        data=(str(data[0]),), out=str(tmp_path / "s2_state"), init=str(ckpt), steps=3, batch_size=2,
        grounding_batch_size=2, state=True, head=HeadPhaseConfig(steps=4, batch_size=4, save_every=2, log_every=2),
    )  # fmt: skip
    reader = ST4VLAPolicy.load(train_stage2(with_state))
    joint = ST4VLAPolicy.load(tmp_path / "s2_state" / "latest")  # saved when the joint phase ended
    after, before = reader.model.state_dict(), joint.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items() if not k.startswith("action_model."))
    assert not torch.equal(
        after["action_model.net.final_layer.linear.weight"],
        before["action_model.net.final_layer.linear.weight"],
    )
    log = json.loads((tmp_path / "s2_state" / "log.json").read_text())
    assert [e["head_step"] for e in log if "head_step" in e] == [2, 4]
    with_state.head.steps = 6
    train_stage2(with_state)
    assert "resumed the head phase at step 4" in capsys.readouterr().out
    log = json.loads((tmp_path / "s2_state" / "log.json").read_text())
    assert [e["head_step"] for e in log if "head_step" in e] == [2, 4, 6]
    frame = load_frames(data[0], reader.config.image_size, reader.chunk_length)[0]
    assert reader.config.action.state_dim == len(frame.state) == 9  # the Panda's 7 joints and 2 fingers
    assert len(reader.statistics["tabletop_panda"]["state"]["q01"]) == 9
    chunk = reader.act([frame.image], frame.instruction, seed=0, state=frame.state)
    assert chunk.actions.shape == (reader.chunk_length, 7)


def tiny_stage2_with_state(data, out, **option):
    """Three joint and two head steps of the test-size model reading the state, with one answer option."""
    from workbench.policy.policy import ST4VLAPolicy
    from workbench.train.common import model_size
    from workbench.train.stage2 import Stage2Config, train_stage2

    cfg = Stage2Config(
        data=(str(data[0]),), out=str(out), init=None, model=model_size("test"), tokenizer=None, steps=3,
        batch_size=2, grounding_batch_size=2, state=True, head=HeadPhaseConfig(steps=2, batch_size=4), **option,
    )  # fmt: skip
    return ST4VLAPolicy.load(train_stage2(cfg))


def test_stage2_co_trains_grounding_on_its_grounding_corpus(data, tmp_path, monkeypatch):
    """--grounding-data: the co-training's questions come from that corpus, actions from the demos."""
    from workbench.train import stage2

    asked = []
    real = stage2.sample_pairs

    def recording(frames, n, rng, kinds, contrast=False):
        pairs = real(frames, n, rng, kinds, contrast)
        asked.extend(f.instruction for f in frames)
        return pairs

    with pytest.raises(ValueError, match="vanilla"):
        stage2.Stage2Config(vanilla=True, grounding_data=(str(data[2]),))
    monkeypatch.setattr(stage2, "sample_pairs", recording)
    tiny_stage2_with_state(data, tmp_path / "g", grounding_data=(str(data[2]),))
    one_object = {f.instruction for f in load_frames(data[2], 112, 4)}
    assert asked and set(asked) == one_object  # every question's image was a one-object scene


def test_answer_conditioned_stage2_reads_the_true_answer_then_its_own(data, tmp_path):
    """--condition-on-answer: the joint phase teacher-forces the true answer, the head phase caches the
    model's own answers (decoded in batches, the same as one frame at a time)."""
    from workbench.policy.normalization import ActionNormalizer
    from workbench.train.head import own_answers, true_answer
    from workbench.train.stage2 import UNNORM_KEY, Stage2Config, action_batch

    with pytest.raises(ValueError, match="vanilla"):
        Stage2Config(vanilla=True, condition_on_answer=True)
    policy = tiny_stage2_with_state(data, tmp_path / "ans", condition_on_answer=True)
    assert policy.config.condition_on_answer
    frames = load_frames(data[0], policy.config.image_size, policy.chunk_length)

    normalizer = ActionNormalizer(policy.statistics, UNNORM_KEY)
    inputs, *_ = action_batch(policy, frames, [0, 5], normalizer)
    assert "labels" not in inputs
    tok = policy.tokenizer
    for row, i in zip(inputs["input_ids"], [0, 5], strict=True):
        assert true_answer(frames[i]) in tok.decode(row, skip_special_tokens=True)

    picked = frames[:3]
    single = [policy.condition_inputs([f.image], f.instruction)[1] for f in picked]
    assert own_answers(policy, picked, batch=2) == single
    chunk = policy.act([frames[0].image], frames[0].instruction, seed=0, state=frames[0].state)
    assert chunk.answer == single[0]


def test_answer_points_stage2_reads_the_true_points_then_its_own(data, tmp_path):
    """--answer-points: the DiT's state ends with the true answer's box centres in the joint phase, and
    with the model's own answer's in the head phase and at control time."""
    from workbench.policy.configuration import ANSWER_POINTS
    from workbench.policy.extras import points_from_answer
    from workbench.policy.normalization import ActionNormalizer
    from workbench.train.head import cache_conditions, own_answers, true_answer
    from workbench.train.stage2 import UNNORM_KEY, Stage2Config, action_batch

    with pytest.raises(ValueError, match="vanilla"):
        Stage2Config(vanilla=True, answer_points=True)
    policy = tiny_stage2_with_state(data, tmp_path / "pts", answer_points=True)
    frames = load_frames(data[0], policy.config.image_size, policy.chunk_length)
    joints = len(frames[0].state)
    assert policy.config.answer_points and policy.config.action.state_dim == joints + ANSWER_POINTS
    assert not policy.config.condition_on_answer  # the query former reads the prompt alone, as upstream

    normalizer = ActionNormalizer(policy.statistics, UNNORM_KEY)
    inputs, _, _, states = action_batch(policy, frames, [0, 5], normalizer)
    assert "labels" not in inputs
    size = frames[0].image.shape[:2]
    for row, i in zip(states, [0, 5], strict=True):
        truth = points_from_answer(true_answer(frames[i]), size[1], size[0])
        np.testing.assert_allclose(row[joints:].numpy(), truth, atol=1e-6)
        assert (truth > -1).any()  # the true answer has a box

    picked = frames[:3]
    own = own_answers(policy, picked, batch=2)
    cached = cache_conditions(policy, picked, normalizer)
    for row, answer in zip(cached.states, own, strict=True):
        np.testing.assert_allclose(
            row[joints:].numpy(), points_from_answer(answer, size[1], size[0]), atol=1e-6
        )
    chunk = policy.act([picked[0].image], picked[0].instruction, seed=0, state=picked[0].state)
    assert chunk.answer == own[0]

    # the head phase may read the true answers instead (HeadPhaseConfig.answers = "true")
    true = cache_conditions(policy, picked, normalizer, answers="true")
    for row, f in zip(true.states, picked, strict=True):
        truth = points_from_answer(true_answer(f), size[1], size[0])
        np.testing.assert_allclose(row[joints:].numpy(), truth, atol=1e-6)
    torch.testing.assert_close(true.cond, cached.cond)  # the query tokens do not read the answer
    with pytest.raises(ValueError, match="'own' or 'true'"):
        HeadPhaseConfig(answers="mine")


def test_demonstrations_record_the_tcp_and_forward_kinematics_recovers_it(data):
    """Demonstrations store observation.tcp_pose; for older datasets (joints only) the built-in Panda's
    forward kinematics fills it in, and must agree with what the simulator reported."""
    from workbench.sim.robot import tcp_poses
    from workbench.train.data import fill_tcp_poses

    frames = load_frames(data[0], 56, 4)
    recorded = np.stack([f.tcp_pose for f in frames])
    assert recorded.shape == (len(frames), 7)
    assert np.ptp(recorded[:, :3], axis=0).max() > 0.05  # the arm moved: a real check, not a constant
    np.testing.assert_allclose(
        tcp_poses(np.stack([f.state for f in frames]))[:, :3], recorded[:, :3], atol=1e-5
    )

    for f in frames:  # as read from a dataset recorded before the TCP was stored
        f.tcp_pose = None
    fill_tcp_poses(frames)
    np.testing.assert_allclose(np.stack([f.tcp_pose for f in frames])[:, :3], recorded[:, :3], atol=1e-5)
    frames[0].tcp_pose, frames[0].state = None, frames[0].state[:7]
    with pytest.raises(ValueError, match="9 joint positions"):
        fill_tcp_poses(frames[:1])
    with pytest.raises(ValueError, match=r"\[N, 9\]"):
        tcp_poses(np.zeros((2, 7)))


def test_tcp_stage2_reads_the_joints_then_the_tcp_position(data, tmp_path):
    from workbench.policy.configuration import ANSWER_POINTS
    from workbench.policy.normalization import ActionNormalizer
    from workbench.policy.policy import ST4VLAPolicy
    from workbench.train.stage2 import UNNORM_KEY, Stage2Config, action_batch, robot_states

    with pytest.raises(ValueError, match="needs --state"):
        Stage2Config(tcp=True)
    policy = tiny_stage2_with_state(data, tmp_path / "tcp", tcp=True, answer_points=True)
    frames = load_frames(data[0], policy.config.image_size, policy.chunk_length)
    joints = len(frames[0].state)
    assert policy.config.state_tcp and policy.config.robot_state_dim == joints + 3
    assert policy.config.action.state_dim == joints + 3 + ANSWER_POINTS
    stats = policy.statistics[UNNORM_KEY]["state"]
    assert len(stats["q01"]) == joints + 3  # normalised like the joints, from the demonstrations' TCP

    # the DiT's input is the normalised [joints, tcp xyz], then the points
    normalizer = ActionNormalizer(policy.statistics, UNNORM_KEY)
    _, _, _, states = action_batch(policy, frames, [0, 3], normalizer)
    robot = robot_states(frames, tcp=True)[[0, 3]]
    np.testing.assert_allclose(robot[:, joints:], np.stack([frames[i].tcp_pose[:3] for i in (0, 3)]))
    expected = policy._state_normalizer.normalize(robot)
    np.testing.assert_allclose(states[:, : joints + 3].numpy(), expected, atol=1e-5)

    # acting: the TCP is required, and it matters
    reloaded = ST4VLAPolicy.load(tmp_path / "tcp" / "final")
    assert reloaded.config.state_tcp
    f = frames[0]
    with pytest.raises(ValueError, match="tcp_pose="):
        reloaded.act([f.image], f.instruction, seed=0, state=f.state)
    a = reloaded.act([f.image], f.instruction, seed=0, state=f.state, tcp_pose=f.tcp_pose).normalized
    moved = f.tcp_pose.copy()
    moved[:3] += 0.1
    b = reloaded.act([f.image], f.instruction, seed=0, state=f.state, tcp_pose=moved).normalized
    assert not np.allclose(a, b)


def test_evaluation_feeds_the_tcp_to_a_policy_that_reads_it(data, tmp_path):
    from workbench.evaluate import EvalConfig, evaluate

    policy = tiny_stage2_with_state(data, tmp_path / "tcp_eval", tcp=True)
    seen = []
    act = policy.act

    def spy(*args, **kw):
        seen.append(kw.get("tcp_pose"))
        return act(*args, **kw)

    policy.act = spy
    cfg = EvalConfig(
        checkpoint="in-memory", tasks=("tabletop_pick",), episodes=1, max_steps=2, cells=(("seen", "seen"),)
    )
    report = evaluate(cfg, policy=policy)
    # the one loop asks the policy at every observation: the reset's, each step's, and the last one
    assert report.episodes[0].steps == 2 and len(seen) == 3
    assert all(t is not None and t.shape == (7,) for t in seen)
    assert not np.allclose(seen[0], seen[1]) and not np.allclose(seen[1], seen[2])  # each step's pose


def test_merge_one_gives_every_patch_its_own_visual_token():
    from workbench.policy.policy import ST4VLAPolicy
    from workbench.train.common import model_size

    image = np.random.default_rng(0).integers(0, 255, (56, 56, 3), dtype=np.uint8)
    counts = {}
    for merge in (2, 1):
        policy = ST4VLAPolicy.from_config(model_size("test", merge=merge).config(), seed=0)
        vlm = policy.model.qwen_vl_interface
        batch = vlm.build_inputs([[image]], ["Locate the red cube."], ['{"point_2d": [1, 2]}'])
        counts[merge] = int((batch["input_ids"] == vlm.image_token_id).sum())
        assert torch.isfinite(policy.model.grounding_loss(batch))
    assert counts == {2: 4, 1: 16}  # 56 px = 4x4 patches of 14 px, merged 2x2 or kept
    with pytest.raises(ValueError, match="merge must be 1 or 2"):
        model_size("test", merge=3)
    # --layers changes the language model's depth and nothing else
    deeper = ST4VLAPolicy.from_config(model_size("test", layers=3).config(), seed=0)
    assert deeper.config.vlm.num_layers == 3
    assert model_size("test", layers=3).vision_depth == model_size("test").vision_depth
    with pytest.raises(ValueError, match="layers must be at least 1"):
        model_size("test", layers=0)


def test_dart_noise_moves_the_arm_off_the_expert_path_and_keeps_the_experts_labels(data, tmp_path):
    from workbench.episodes.lerobot import LeRobotDataset
    from workbench.train.data import CAMERA

    with pytest.raises(ValueError, match="action noise"):
        DataConfig(action_noise=0.2)
    clean, noisy = (
        LeRobotDataset(
            generate(
                DataConfig(
                    out=str(tmp_path / n),
                    tasks=("tabletop_pick",),
                    episodes_per_task=1,
                    seed=0,
                    action_noise=s,
                )
            )
        )  # fmt: skip
        for n, s in (("clean", 0.0), ("noisy", 0.01))
    )
    a, b = clean.episode(0), noisy.episode(0)
    assert a.meta["seed"] == b.meta["seed"]  # the same scene
    np.testing.assert_array_equal(a.frames[0].images[CAMERA], b.frames[0].images[CAMERA])
    np.testing.assert_allclose(a.actions[0], b.actions[0])  # same state, same expert action
    tcp_a = np.stack([f.tcp_pose[:3] for f in a.frames])
    tcp_b = np.stack([f.tcp_pose[:3] for f in b.frames])
    n = min(len(tcp_a), len(tcp_b))
    assert np.abs(tcp_a[1:n] - tcp_b[1:n]).max() > 0.005  # the noise moved the arm
    # the labels are the expert's own commands (within its step limit), not the executed noisy ones
    assert np.abs(b.actions[:, :3]).max() <= 0.045 + 1e-6
    assert set(np.unique(b.actions[:, 6])) <= {-1.0, 1.0}


def test_dart_noise_can_be_limited_to_phases_and_to_a_share_of_their_steps():
    from workbench.train.data import perturbed

    with pytest.raises(ValueError, match="unknown expert phases"):
        DataConfig(action_noise=0.01, noise_phases=("aproach",))
    with pytest.raises(ValueError, match="noise probability"):
        DataConfig(action_noise=0.01, noise_probability=0.0)
    rng = np.random.default_rng(0)
    assert not perturbed(DataConfig(), "approach", rng)  # no noise configured
    cfg = DataConfig(action_noise=0.01, noise_phases=("approach", "descend"), noise_probability=0.25)
    assert not any(perturbed(cfg, "lift", rng) for _ in range(200))  # never outside the listed phases
    share = np.mean([perturbed(cfg, "descend", rng) for _ in range(4000)])
    assert 0.22 < share < 0.28
    assert all(perturbed(DataConfig(action_noise=0.01), p, rng) for p in ("approach", "carry", "release"))


def test_phase_limited_dart_leaves_the_placing_to_the_expert(tmp_path):
    """Noise at every step of every phase defeats the expert on placing tasks (it never comes within
    1 mm of a goal); occasional pushes while approaching and descending leave it successful, and the
    arm moves as the clean expert's once the grasp begins."""
    from workbench.episodes.lerobot import LeRobotDataset

    kw = dict(tasks=("tabletop_put_on",), episodes_per_task=1, seed=0, max_attempts_factor=1)
    clean = LeRobotDataset(generate(DataConfig(out=str(tmp_path / "clean"), **kw))).episode(0)
    noisy_cfg = DataConfig(
        out=str(tmp_path / "noisy"), action_noise=0.02, noise_phases=("approach", "descend"),
        noise_probability=0.25, **kw,
    )  # fmt: skip
    noisy = LeRobotDataset(generate(noisy_cfg)).episode(0)
    assert noisy.meta["seed"] == clean.meta["seed"] == 0 and noisy.meta["success"]
    tcp_a = np.stack([f.tcp_pose[:3] for f in clean.frames])
    tcp_b = np.stack([f.tcp_pose[:3] for f in noisy.frames])
    n = min(len(tcp_a), len(tcp_b))
    assert np.abs(tcp_a[:n] - tcp_b[:n]).max() > 0.005  # the pushes moved the arm off the clean path
    with pytest.raises(RuntimeError, match="no successful demonstration"):
        generate(DataConfig(out=str(tmp_path / "every_step"), action_noise=0.02, **kw))


def test_recovery_demonstrations_start_closed_on_nothing_and_grasp_again(tmp_path):
    """--miss-offset: the expert's first grasp is aimed beside the source; only its retry is recorded,
    so the episode opens with the gripper shut on nothing and ends in a successful second grasp."""
    from workbench.episodes.lerobot import LeRobotDataset

    with pytest.raises(ValueError, match="miss offset"):
        DataConfig(miss_offset=0.5)
    kw = dict(tasks=("tabletop_pick",), episodes_per_task=1, seed=0)
    clean = LeRobotDataset(generate(DataConfig(out=str(tmp_path / "clean"), **kw))).episode(0)
    rec = LeRobotDataset(generate(DataConfig(out=str(tmp_path / "rec"), miss_offset=0.03, **kw))).episode(0)
    assert rec.meta["success"]
    assert np.abs(rec.frames[0].state[-2:]).max() < 1e-3  # the fingers shut on nothing
    assert np.abs(clean.frames[0].state[-2:]).min() > 0.01  # a clean episode starts open
    assert rec.actions[0, 6] == 1.0  # the first recorded label opens the gripper again
    closes = np.flatnonzero(rec.actions[:, 6] == -1.0)
    assert len(closes) and closes[0] > 3  # re-aimed, then the second grasp


def test_head_continuation_trains_only_the_action_model_and_keeps_the_statistics(data, tmp_path):
    """`workbench train head`: more head steps for a finished checkpoint on new demonstrations; the VLM,
    the query former and the normalisation the checkpoint reads observations with stay as they were."""
    from workbench.policy.policy import ST4VLAPolicy
    from workbench.train.head import HeadContinueConfig, continue_head

    base = tiny_stage2_with_state(data, tmp_path / "base", answer_points=True)
    base.save(tmp_path / "ckpt")
    cfg = HeadContinueConfig(
        str(tmp_path / "ckpt"), (str(data[0]),), str(tmp_path / "more"),
        HeadPhaseConfig(steps=6, batch_size=4, answers="true", log_every=2),
    )  # fmt: skip
    out = continue_head(cfg)
    after = ST4VLAPolicy.load(out)
    assert after.statistics == base.statistics
    before_w, after_w = base.model.state_dict(), after.model.state_dict()
    changed = {k for k in before_w if not torch.equal(before_w[k], after_w[k])}
    assert changed and all(k.startswith("action_model.") for k in changed)
    log = json.loads((tmp_path / "more" / "log.json").read_text())
    assert [r["head_step"] for r in log["log"]] == [2, 4, 6]
    continue_head(cfg)  # finished: resuming does no more steps
    with pytest.raises(ValueError, match="not a workbench checkpoint"):
        continue_head(replace(cfg, checkpoint=str(data[0]), out=str(tmp_path / "bad")))
    with pytest.raises(FileNotFoundError):
        continue_head(replace(cfg, checkpoint=str(tmp_path / "missing"), out=str(tmp_path / "bad")))
    again = ST4VLAPolicy.load(out).model.state_dict()
    assert all(torch.equal(again[k], after_w[k]) for k in after_w)


def test_answer_phase_trains_only_the_vlm_on_the_true_answers_and_resumes(data, tmp_path, monkeypatch):
    """`workbench train answers`: the VLM learns the spatial prompt's true answer on new frames; the
    query former, the DiT and the statistics stay; an interrupted run resumes to the same weights."""
    from workbench.policy.policy import ST4VLAPolicy
    from workbench.train.answers import AnswerPhaseConfig, answer_batch, tune_answers

    base = tiny_stage2_with_state(data, tmp_path / "base", answer_points=True)
    base.save(tmp_path / "ckpt")
    frames = load_frames([str(data[0])], base.config.image_size, base.chunk_length)
    probe = frames[:: max(1, len(frames) // 8)][:8]

    def answer_loss(policy) -> float:
        with torch.no_grad():
            return policy.model.grounding_loss(answer_batch(policy, probe)).item()

    cfg = AnswerPhaseConfig(
        str(tmp_path / "ckpt"), (str(data[0]),), str(tmp_path / "tuned"), steps=12, batch_size=4, lr=1e-3,
        warmup_steps=2, save_every=6, log_every=6,
    )  # fmt: skip
    after = ST4VLAPolicy.load(tune_answers(cfg))
    assert answer_loss(after) < 0.9 * answer_loss(base)
    assert after.statistics == base.statistics
    before_w, after_w = base.model.state_dict(), after.model.state_dict()
    changed = {k for k in before_w if not torch.equal(before_w[k], after_w[k])}
    assert changed and all(k.startswith("qwen_vl_interface.") for k in changed)
    assert [r["step"] for r in json.loads((tmp_path / "tuned" / "log.json").read_text())["log"]] == [6, 12]

    # interrupted at its first save (step 6), then run again: it resumes to the uninterrupted weights
    import workbench.train.answers as answers_module

    def save_then_stop(*args, **kw):
        save_train_state(*args, **kw)
        raise KeyboardInterrupt

    interrupted = replace(cfg, out=str(tmp_path / "interrupted"))
    monkeypatch.setattr(answers_module, "save_train_state", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        tune_answers(interrupted)
    monkeypatch.undo()
    resumed = ST4VLAPolicy.load(tune_answers(interrupted)).model.state_dict()
    assert all(torch.allclose(resumed[k], after_w[k], atol=1e-6) for k in after_w)

    vanilla = tiny_stage2_with_state(data, tmp_path / "vanilla", vanilla=True)
    vanilla.save(tmp_path / "vanilla_ckpt")
    with pytest.raises(ValueError, match="no spatial prompt"):
        tune_answers(replace(cfg, checkpoint=str(tmp_path / "vanilla_ckpt"), out=str(tmp_path / "bad")))
    with pytest.raises(ValueError, match="not a workbench checkpoint"):
        tune_answers(replace(cfg, checkpoint=str(data[0]), out=str(tmp_path / "bad")))
