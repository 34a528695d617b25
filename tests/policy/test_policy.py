"""ST4VLAPolicy on tiny random models: shapes, determinism, CFG, prompts, processors, the spatial answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import dataset_statistics, randomize_head

from workbench.policy import ST4VLAPolicy, tiny_config
from workbench.policy.diffusion import GaussianDiffusion, ddim_timesteps
from workbench.policy.policy import answer_from_text
from workbench.policy.prompts import SPATIAL_PROMPT, grounding_question
from workbench.policy.tokenizer import build_tokenizer, default_corpus
from workbench.policy.vlm import IMAGE_PAD
from workbench.spatial import Box, Frame, Point

STATS = dataset_statistics("bridge_dataset")


@pytest.fixture(scope="module")
def policy() -> ST4VLAPolicy:
    torch.set_num_threads(1)
    p = ST4VLAPolicy.from_config(tiny_config(dino=True), statistics=STATS, seed=0)
    randomize_head(p)
    return p


@pytest.fixture()
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (180, 240, 3), dtype=np.uint8)


# --- prompts and processors ----------------------------------------------------------------------


def test_prompt_is_upstream_literal_with_lowercased_instruction(policy):
    assert SPATIAL_PROMPT == (
        "Your task is {instruction}. To identify the key objects for your task. "
        "Locate their bounding boxes in [x1,y1,x2,y2] format."
    )
    assert policy.prompt("Put The Carrot on the Plate") == (
        "Your task is put the carrot on the plate. To identify the key objects for your task. "
        "Locate their bounding boxes in [x1,y1,x2,y2] format."
    )
    text = policy.model.qwen_vl_interface.chat_texts([2], [policy.prompt("Go")])[0]
    # Images first, then the prompt, then the generation prompt (Qwen2.5-VL chat template).
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|image_pad|><|vision_end|>"
        f"{policy.prompt('go')}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert grounding_question("box", "Pick THE can") == policy.prompt("pick the can")
    with pytest.raises(ValueError, match="one of"):
        grounding_question("polygon", "x")


def _visual_states(policy: ST4VLAPolicy, question: str) -> torch.Tensor:
    vlm = policy.model.qwen_vl_interface
    inputs = vlm.build_inputs([[np.full((56, 56, 3), 90, np.uint8)]], [question])
    with torch.no_grad():
        states = vlm.forward(inputs).hidden_states[-1][0]  # [L, hidden]
    return states[inputs["input_ids"][0] == vlm.image_token_id]


def test_text_first_puts_the_question_before_the_image_and_lets_visual_tokens_read_it(tmp_path):
    torch.set_num_threads(1)
    cfg = tiny_config(image_size=56)
    cfg.vlm.text_first = True
    first = ST4VLAPolicy.from_config(cfg, statistics=STATS, seed=0)
    text = first.model.qwen_vl_interface.chat_texts([1], ["Locate the cube."])[0]
    assert text.endswith("user\nLocate the cube.<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n"
                         "<|im_start|>assistant\n")  # fmt: skip
    # Under the causal mask the visual tokens see the question only when it comes first.
    assert not torch.allclose(
        _visual_states(first, "Locate the cube."), _visual_states(first, "Locate the can.")
    )
    last = ST4VLAPolicy.from_config(tiny_config(image_size=56), statistics=STATS, seed=0)
    assert torch.equal(_visual_states(last, "Locate the cube."), _visual_states(last, "Locate the can."))
    # The choice is part of the checkpoint; an older config without the key reads as image first.
    first.save(tmp_path / "tf")
    assert ST4VLAPolicy.load(tmp_path / "tf").config.vlm.text_first
    old = cfg.to_dict()
    del old["vlm"]["text_first"]
    assert not type(cfg).from_dict(old).vlm.text_first


def test_fallback_inputs_expand_image_pads_and_left_pad(policy):
    vlm = policy.model.qwen_vl_interface
    views = [np.zeros((112, 112, 3), np.uint8)]
    batch = vlm.build_inputs([views, views * 2], ["short", "a much longer prompt with more words"])
    grid = batch["image_grid_thw"]
    assert grid.tolist() == [[1, 8, 8]] * 3  # 112 / 14 = 8 patches a side
    n_image_tokens = (batch["input_ids"] == vlm.image_token_id).sum(1).tolist()
    assert n_image_tokens == [16, 32]  # 8*8 // merge 2**2 per image
    assert torch.equal(batch["mm_token_type_ids"].bool(), batch["input_ids"] == vlm.image_token_id)
    assert batch["pixel_values"].shape == (3 * 64, 3 * 2 * 14 * 14)
    # Left padding: row 0 is shorter, so its padding is on the left and its last token is real.
    mask = batch["attention_mask"]
    assert mask[0, 0] == 0 and mask[:, -1].tolist() == [1, 1]
    assert batch["input_ids"][0, 0] == vlm.tokenizer.pad_token_id


def test_full_processor_matches_fallback(policy):
    vlm = policy.model.qwen_vl_interface
    if vlm.processor is None:
        pytest.skip("Qwen2_5_VLProcessor cannot be constructed here (its video processor needs torchvision)")
    views = [np.random.default_rng(1).integers(0, 255, (112, 112, 3), dtype=np.uint8)]
    full = vlm.build_inputs([views, views], ["hi", "hello there"], use_full_processor=True)
    fallback = vlm.build_inputs([views, views], ["hi", "hello there"], use_full_processor=False)
    for key in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw"):
        assert torch.equal(full[key], fallback[key]), key


def test_tokenizer_coordinates_are_single_tokens(tmp_path):
    tok = build_tokenizer(default_corpus(), tmp_path, vocab_size=600)
    for n in (0, 7, 99, 304, 1023):
        assert len(tok(str(n), add_special_tokens=False)["input_ids"]) == 1
    text = '[{"label": "carrot", "bbox_2d": [304, 226, 345, 267]}]'
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert tok.convert_ids_to_tokens(tok(IMAGE_PAD)["input_ids"]) == [IMAGE_PAD]
    assert (tmp_path / "tokenizer.json").is_file()


# --- actions -------------------------------------------------------------------------------------


def test_act_shapes_and_determinism(policy, image):
    a = policy.act([image], "put the carrot on the plate", seed=3)
    b = policy.act([image], "put the carrot on the plate", seed=3)
    c = policy.act([image], "put the carrot on the plate", seed=4)
    assert a.normalized.shape == (policy.chunk_length, 7) == a.actions.shape
    np.testing.assert_array_equal(a.normalized, b.normalized)
    assert not np.allclose(a.normalized, c.normalized)
    # Unnormalised with the statistics: gripper binary, other dims inside [q01, q99].
    assert set(np.unique(a.actions[:, 6])) <= {0.0, 1.0}
    q01, q99 = (
        np.array(STATS["bridge_dataset"]["action"]["q01"]),
        np.array(STATS["bridge_dataset"]["action"]["q99"]),
    )
    assert np.all(a.actions[:, :6] >= q01[:6] - 1e-9) and np.all(a.actions[:, :6] <= q99[:6] + 1e-9)


def test_actions_depend_on_instruction_and_ddim_steps(policy, image):
    a = policy.act([image], "open the drawer", seed=0)
    b = policy.act([image], "close the drawer", seed=0)
    c = policy.act([image], "open the drawer", seed=0, num_ddim_steps=5)
    assert not np.allclose(a.normalized, b.normalized)
    assert not np.allclose(a.normalized, c.normalized)  # step count is per call (upstream froze it)


def test_cfg_scale_one_is_the_conditional_prediction(policy, image):
    model = policy.model
    views, _ = policy.prepare_images([image])
    inputs = model.qwen_vl_interface.build_inputs([views], [policy.prompt("stack the block")])
    with torch.no_grad():
        cond, _ = model.condition(inputs, [views])
        noise = torch.randn((1, policy.chunk_length, 7), generator=torch.Generator().manual_seed(5))
        net = model.action_model.net
        expected = model.action_model.diffusion.ddim_sample(lambda x, t: net(x, t, cond), noise, 10)
    got = policy.act([image], "stack the block", seed=5, cfg_scale=1.0)
    np.testing.assert_allclose(got.normalized, expected[0].numpy(), atol=1e-6)
    guided = policy.act([image], "stack the block", seed=5, cfg_scale=3.0)
    assert not np.allclose(guided.normalized, got.normalized)


def test_internals_attention_heatmap_and_timings(policy, image):
    chunk = policy.act(
        [image, image[:, ::-1].copy()], "pick up the can", seed=0, num_ddim_steps=4, return_internals=True
    )
    assert set(chunk.attention) == {"view_0", "view_1"}
    for heat in chunk.attention.values():
        assert heat.shape == (4, 4)  # 112 px / 14 / merge 2
        assert np.all(heat >= 0) and heat.sum() > 0
    for stage in ("vlm_forward", "dino_forward", "query_former", "diffusion", "unnormalize"):
        assert chunk.timings[stage] > 0, stage
    assert [k for k in chunk.timings if k.startswith("ddim_step_")] == [f"ddim_step_{i}" for i in range(4)]


def test_answer_conditioned_actions_follow_the_answer_they_read(image):
    """Not upstream (config.condition_on_answer): the query former reads the prompt and an answer."""
    from workbench.policy.configuration import ST4VLAConfig
    from workbench.policy.extras import ANSWER_TOKENS
    from workbench.record_json import _chunk, _unchunk

    cfg = tiny_config()
    cfg.condition_on_answer = True
    p = ST4VLAPolicy.from_config(cfg, statistics=STATS, seed=0)
    randomize_head(p)
    left, right = '[{"bbox_2d": [2, 3, 20, 25]}]', '[{"bbox_2d": [70, 60, 100, 90]}]'
    a = p.act([image], "pick up the cube", seed=0, answer=left)
    b = p.act([image], "pick up the cube", seed=0, answer=right)
    assert (a.answer, b.answer) == (left, right)
    assert not np.allclose(a.normalized, b.normalized)  # an edited answer moves the action

    # Without an answer it writes its own (greedy, the spatial prompt's) and acts on that.
    own = p.act([image], "pick up the cube", seed=0)
    views, _ = p.prepare_images([image])
    vlm = p.model.qwen_vl_interface
    expected = vlm.generate(vlm.build_inputs([views], [p.prompt("pick up the cube")]), ANSWER_TOKENS)[0]
    assert own.answer == expected
    given = p.act([image], "pick up the cube", seed=0, answer=expected)
    np.testing.assert_allclose(own.normalized, given.normalized, atol=1e-6)
    assert _unchunk(_chunk(a)).answer == left  # saved sessions keep what the action read

    with pytest.raises(ValueError, match="spatial prompt"):
        ST4VLAConfig(use_spatial_prompt=False, condition_on_answer=True)
    old = tiny_config().to_dict()
    del old["condition_on_answer"]  # configs written before the option load as upstream
    assert ST4VLAConfig.from_dict(old).condition_on_answer is False


def test_answer_points_reach_the_action_expert_as_numbers(image):
    """Not upstream (config.answer_points): the centres of the answer's boxes join the state the DiT reads."""
    from workbench.policy.configuration import ANSWER_POINTS, ST4VLAConfig
    from workbench.policy.extras import ANSWER_TOKENS, points_from_answer

    two = '[{"bbox_2d": [0, 0, 56, 112]}, {"bbox_2d": [56, 56, 112, 112]}]'
    np.testing.assert_allclose(points_from_answer(two, 112, 112), [-0.5, 0.0, 0.5, 0.5])
    one = '[{"label": "cube", "bbox_2d": [28, 28, 84, 84]}]'  # no target: it reads as the corner
    np.testing.assert_allclose(points_from_answer(one, 112, 112), [0.0, 0.0, -1.0, -1.0])
    np.testing.assert_allclose(points_from_answer("I cannot see it", 112, 112), [-1.0] * 4)

    cfg = tiny_config()
    cfg.answer_points = True
    cfg.action.state_dim = 2 + ANSWER_POINTS  # a two-joint robot, then the points
    stats = {k: {**v, "state": {"q01": [0.0, -1.0], "q99": [2.0, 1.0]}} for k, v in STATS.items()}
    p = ST4VLAPolicy.from_config(cfg, statistics=stats, seed=0)
    randomize_head(p)
    joints = np.array([1.5, 0.5])
    views, _ = p.prepare_images([image])
    size = views[0].shape[:2]
    x = p.state_tensor(joints, two, size)[0].numpy()
    np.testing.assert_allclose(x[:2], [0.5, 0.5])  # the joints normalised by the state statistics
    np.testing.assert_allclose(x[2:], points_from_answer(two, size[1], size[0]))
    with pytest.raises(ValueError, match="answer"):
        p.state_tensor(joints)

    a = p.act([image], "pick up the cube", seed=0, state=joints, answer=two)
    b = p.act([image], "pick up the cube", seed=0, state=joints, answer=one)
    assert (a.answer, b.answer) == (two, one)
    assert not np.allclose(a.normalized, b.normalized)  # other points, another action
    own = p.act([image], "pick up the cube", seed=0, state=joints)  # writes its own answer first
    vlm = p.model.qwen_vl_interface
    assert (
        own.answer
        == vlm.generate(vlm.build_inputs([views], [p.prompt("pick up the cube")]), ANSWER_TOKENS)[0]
    )

    with pytest.raises(ValueError, match="spatial prompt"):
        ST4VLAConfig(use_spatial_prompt=False, answer_points=True)
    with pytest.raises(ValueError, match="state_dim"):
        ST4VLAConfig(answer_points=True)


def test_upstream_policy_reads_no_answer(policy, image):
    assert policy.act([image], "pick up the cube", seed=0).answer is None
    with pytest.raises(ValueError, match="does not act on a spatial answer"):
        policy.act([image], "pick up the cube", seed=0, answer='[{"bbox_2d": [1, 1, 5, 5]}]')


def test_non_upstream_options_are_transforms_composed_at_load(policy, bundled, image):
    """An upstream config acts through no transforms; each non-upstream option adds its step
    (workbench.policy.extras), and loading a checkpoint composes what its config asks for."""
    from workbench.policy.configuration import ANSWER_POINTS
    from workbench.policy.extras import (
        AnswerPoints,
        ReadAnswer,
        RobotState,
        Transforms,
        WriteAnswer,
        transforms_for,
    )

    assert policy.transforms == Transforms() and not policy.transforms.reads_answer
    policy.config.condition_on_answer = True  # a config changed after loading (as stage 2 does) is followed
    try:
        assert policy.transforms == transforms_for(policy.config) and policy.transforms.reads_answer
    finally:
        policy.config.condition_on_answer = False
    cfg = tiny_config()
    cfg.condition_on_answer = cfg.answer_points = cfg.state_tcp = True
    cfg.action.state_dim = 4 + ANSWER_POINTS  # one joint and the TCP's x, y, z, then the points
    steps = (WriteAnswer(), ReadAnswer(), RobotState(tcp=True), AnswerPoints())
    assert transforms_for(cfg) == Transforms(steps)
    assert bundled.config.answer_points and bundled.config.robot_state_dim
    assert bundled.transforms == Transforms((WriteAnswer(), RobotState(tcp=False), AnswerPoints()))

    # The bundled checkpoint acts through them: without its points the DiT has no input to read.
    state = np.zeros(bundled.config.robot_state_dim)
    want = bundled.act([image], "pick up the cube", seed=0, num_ddim_steps=2, state=state)
    bundled.transforms = Transforms((WriteAnswer(), RobotState()))
    try:
        with pytest.raises(RuntimeError, match="shapes"):  # 9 numbers for an input of 13
            bundled.act([image], "pick up the cube", seed=0, num_ddim_steps=2, state=state)
    finally:
        bundled.transforms = transforms_for(bundled.config)
    again = bundled.act([image], "pick up the cube", seed=0, num_ddim_steps=2, state=state)
    assert np.array_equal(again.normalized, want.normalized) and again.answer == want.answer


def test_diffusion_schedule_and_ddim_respacing():
    assert ddim_timesteps(100, 10) == list(range(0, 100, 10))
    assert ddim_timesteps(100, 5) == list(range(0, 100, 20))
    assert len(ddim_timesteps(100, 30)) == 30  # no exact stride: evenly spaced
    with pytest.raises(ValueError, match="num_ddim_steps"):
        ddim_timesteps(100, 0)
    d = GaussianDiffusion(100)
    abar = d.alphas_cumprod
    assert abar[0] > 0.999 and abar[-1] < 1e-3 and torch.all(abar[1:] < abar[:-1])
    # With the true noise as the eps prediction, DDIM (eta 0) walks x_t back to x0 exactly.
    x0 = torch.randn(2, 4, 7, dtype=torch.float64)
    noise = torch.randn_like(x0)
    xt = d.q_sample(x0, torch.tensor([90, 90]), noise).double()  # 90 = the first of "ddim10"
    seen = []
    out = d.ddim_sample(lambda x, t: seen.append(int(t[0])) or noise, xt, 10)
    assert seen == list(range(90, -1, -10))
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)


def test_training_losses_backpropagate(policy):
    model = policy.model
    vlm = model.qwen_vl_interface
    views = [np.zeros((112, 112, 3), np.uint8)]
    batch = vlm.build_inputs([views, views], ["find the cube", "find the can"],
                             answers=['[{"label": "cube", "bbox_2d": [1, 2, 30, 40]}]', "none"])  # fmt: skip
    labels = batch["labels"]
    n_supervised = (labels != -100).sum(1).tolist()
    answer_len = len(
        vlm.tokenizer('[{"label": "cube", "bbox_2d": [1, 2, 30, 40]}]', add_special_tokens=False)["input_ids"]
    )
    assert n_supervised[0] == answer_len + 1  # the answer and the closing <|im_end|>, nothing of the prompt
    model.train()
    try:
        g_loss = model.grounding_loss(batch)
        cond, _ = model.condition(vlm.build_inputs([views], ["go"]), [views])
        a_loss = model.action_loss(torch.rand(1, policy.chunk_length, 7) * 2 - 1, cond)
        (a_loss + 0.1 * g_loss).backward()
    finally:
        model.eval()
    assert torch.isfinite(g_loss) and torch.isfinite(a_loss)
    assert model.layer_qformer.query_tokens.grad is not None
    assert model.qwen_vl_interface.model.model.visual.patch_embed.proj.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_per_answer_loss_weighs_each_answer_equally(policy):
    vlm = policy.model.qwen_vl_interface
    views = [np.random.default_rng(3).integers(0, 255, (112, 112, 3), dtype=np.uint8)]
    questions = ["find the cube", "is there a cube?"]
    answers = ['[{"label": "cube", "bbox_2d": [1, 2, 30, 40]}]', "Yes"]
    with torch.no_grad():
        # transformers' own loss on each answer alone: the mean over that answer's tokens
        alone = [
            policy.model.grounding_loss(vlm.build_inputs([views], [q], answers=[a])).item()
            for q, a in zip(questions, answers, strict=True)
        ]
        batch = vlm.build_inputs([views, views], questions, answers=answers)
        per_answer = policy.model.grounding_loss(batch, per_answer=True).item()
        per_token = policy.model.grounding_loss(batch).item()
    n = (batch["labels"] != -100).sum(1).tolist()
    assert n[0] > 3 * n[1]  # a box answer has many more tokens than "Yes"
    assert per_answer == pytest.approx(sum(alone) / 2, rel=1e-4)
    assert per_token == pytest.approx((alone[0] * n[0] + alone[1] * n[1]) / sum(n), rel=1e-4)
    assert per_answer != pytest.approx(per_token, rel=1e-3)


# --- the spatial answer ---------------------------------------------------------------------------


def test_answer_from_text_maps_to_original_pixels():
    frame = Frame(width=112, height=112, orig_width=224, orig_height=448)
    ans = answer_from_text(
        '[{"label": "carrot", "bbox_2d": [10, 20, 50, 60]}, {"label": "x", "point_2d": [56, 56]}]', frame
    )
    assert ans.geometry == [Box(20, 80, 100, 240, "carrot"), Point(112, 224, "x")]
    assert ans.frame == frame and not ans.problems


def test_spatial_maps_model_text_to_original_image(policy, image, monkeypatch):
    vlm = policy.model.qwen_vl_interface
    asked = {}

    def fake_generate(inputs, max_new_tokens=128, refine_radius=0):
        asked["ids"] = inputs["input_ids"]
        return ['```json\n[{"label": "carrot", "bbox_2d": [28, 28, 56, 84]}]\n```']

    monkeypatch.setattr(vlm, "generate", fake_generate)
    ans = policy.spatial([image], "Put the carrot on the plate")
    assert ans.frame == Frame(112, 112, 240, 180)
    assert ans.geometry == [Box(60.0, 45.0, 120.0, 135.0, "carrot")]  # x * 240/112, y * 180/112
    prompt = vlm.tokenizer.decode(asked["ids"][0])
    assert grounding_question("box", "put the carrot on the plate") in prompt


def test_spatial_on_random_model_never_raises(policy, image):
    for query in ("box", "point", "trace"):
        ans = policy.spatial([image], "put the spoon on the towel", query=query, max_new_tokens=12)
        assert isinstance(ans.text, str)
        assert ans.frame == Frame(112, 112, 240, 180)
        assert ans.geometry or ans.problems  # garbage is reported, not raised


def test_bad_inputs_give_clear_errors(policy, image):
    with pytest.raises(ValueError, match="uint8"):
        policy.act([image.astype(np.float32)], "go")
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        policy.act([image[:, :, 0]], "go")
    with pytest.raises(ValueError, match="at least one image"):
        policy.act([], "go")
    with pytest.raises(ValueError, match="non-empty"):
        policy.act([image], "  ")
    with pytest.raises(ValueError, match="multiple of"):
        tiny_config(image_size=100)
