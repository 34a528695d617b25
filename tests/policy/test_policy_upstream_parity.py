"""Parity with upstream InternVLA-M1: a run written by upstream's own code, compared stage by stage.

tests/fixtures/upstream_tiny/ was made with upstream's code (InternRobotics/InternVLA-M1 with the
torch.hub DINOv2 of facebookresearch/dinov2, transformers 4.52.3; README there says exactly how): a
tiny random model in upstream's run layout, and golden.npz with what upstream computed at every
stage for two 640x480 frames and two instructions, CFG 1.5, 5 DDIM steps, fixed noise. Here the run
is loaded through the public ST4VLAPolicy.load and each stage is recomputed by the project.

Tolerances: 1e-4 (float32) for every stage before the sampler, 5e-4 after it; the last hidden state
also at 1e-5, so that a wrong RMSNorm epsilon (5e-5 there) cannot pass. docs/parity.md lists the
measured differences.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import FIXTURES

from workbench.policy import ST4VLAPolicy

FIXTURE = FIXTURES / "upstream_tiny"
STAGE_TOL = 1e-4
SAMPLER_TOL = 5e-4
MEASURED: dict[str, float] = {}  # stage -> max |ours - upstream|, printed at the end (pytest -s)


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if MEASURED:
        width = max(map(len, MEASURED))
        print("\nmax |ours - upstream| per stage:")
        for name, diff in MEASURED.items():
            print(f"  {name:{width}s}  {diff:.3e}")


@pytest.fixture(scope="module")
def gold() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "golden.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((FIXTURE / "golden_meta.json").read_text())


@pytest.fixture(scope="module")
def policy(meta) -> ST4VLAPolicy:
    torch.set_num_threads(1)
    return ST4VLAPolicy.load(
        FIXTURE / "run", unnorm_key=meta["unnorm_key"], base_model_dir=FIXTURE / "Qwen2.5-VL-tiny"
    )


@pytest.fixture(scope="module")
def views(policy, gold) -> list[list[np.ndarray]]:
    return [policy.prepare_images([img])[0] for img in gold["images_640x480"]]


@pytest.fixture(scope="module")
def inputs(policy, views, meta) -> dict[str, torch.Tensor]:
    prompts = [policy.prompt(i) for i in meta["instructions"]]
    return policy.model.qwen_vl_interface.build_inputs(views, prompts)


def close(name: str, ours, theirs, tol: float) -> float:
    ours = np.asarray(ours.detach() if isinstance(ours, torch.Tensor) else ours, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape, f"{name}: shape {ours.shape} vs upstream {theirs.shape}"
    diff = float(np.abs(ours - theirs).max())
    MEASURED[name] = diff
    assert diff <= tol, f"{name}: max |ours - upstream| = {diff:.3e} > {tol:.0e}"
    return diff


def act(policy: ST4VLAPolicy, gold, meta, b: int, steps: int):
    image, instruction = gold["images_640x480"][b], meta["instructions"][b]
    return policy.act([image], instruction, seed=meta["seeds"][b], num_ddim_steps=steps, cfg_scale=1.5)


# --- the run itself -------------------------------------------------------------------------------


def test_the_run_is_rebuilt_from_upstreams_fields(policy):
    c = policy.config
    v = c.vlm
    assert (v.hidden_size, v.num_layers, v.vocab_size, v.tie_word_embeddings) == (64, 2, 1664, True)
    assert (v.rms_norm_eps, v.mrope_section, v.window_size, v.fullatt_block_indexes) == (
        1e-6,
        [2, 3, 3],
        112,
        (1, 3),
    )
    assert c.qformer_layers == (2, 3) and c.qformer.width == 64 and c.qformer.num_queries == 64
    # DiT-T is not an upstream preset: width and depth from the weights, heads from num_heads.
    assert (c.action.width, c.action.depth, c.action.num_heads, c.chunk_length) == (64, 2, 4, 16)
    assert c.action.repeated_diffusion_steps == 4  # trainer's, not framework.action_model's 8
    assert (c.dino.hidden_size, c.dino.num_heads, c.dino.pos_embed_size, c.dino.interpolate_offset) == (
        384,
        6,
        518,
        0.1,
    )
    assert c.image_size == 224 and c.use_spatial_prompt


# --- stage by stage on the batch of two ---------------------------------------------------------


def test_resize_and_tokens_are_upstreams(views, inputs, gold):
    np.testing.assert_array_equal(np.stack([v[0] for v in views]), gold["images_224"])
    np.testing.assert_array_equal(inputs["input_ids"].numpy(), gold["input_ids"])
    np.testing.assert_array_equal(inputs["attention_mask"].numpy(), gold["attention_mask"])
    np.testing.assert_array_equal(inputs["image_grid_thw"].numpy(), gold["image_grid_thw"])
    close("pixel_values", inputs["pixel_values"], gold["pixel_values"], 1e-6)
    assert gold["attention_mask"][0].min() == 0, "the fixture's first prompt is left-padded"


def test_vision_tower(policy, gold):
    visual = policy.model.qwen_vl_interface.model.model.visual
    with torch.no_grad():
        out = visual(
            torch.from_numpy(gold["pixel_values"]), grid_thw=torch.from_numpy(gold["image_grid_thw"])
        )
    close("vision tower", getattr(out, "pooler_output", out), gold["vision_out"], STAGE_TOL)


def test_vlm_hidden_states_and_logits(policy, inputs, gold):
    with torch.no_grad():
        out = policy.model.qwen_vl_interface(inputs)
    tokens = gold["attention_mask"].astype(bool)  # pad positions: see test_padding_is_where_batches_differ
    hidden = out.hidden_states[-1].numpy()
    close("last hidden state", hidden[tokens], gold["last_hidden_state"][tokens], 1e-5)
    close("logits (last 4 positions)", out.logits[:, -4:], gold["logits_last"], STAGE_TOL)


def test_dino_branch(policy, views, gold):
    enc = policy.model.dino_encoder
    close("DINO pixels", enc.prepare(views), gold["dino_pixels"], 1e-6)
    with torch.no_grad():
        close("DINO patch tokens", enc(torch.from_numpy(gold["dino_pixels"])), gold["dino_tokens"], STAGE_TOL)


def test_query_former(policy, inputs, views, gold):
    m = policy.model
    with torch.no_grad():
        # On upstream's own inputs (VLM hidden states at every position, DINO tokens): both rows.
        dino = m.dino_pro(torch.from_numpy(gold["dino_tokens"]).reshape(2, -1, m.dino_encoder.num_channels))
        layer = torch.cat([torch.from_numpy(gold["qformer_layer_input"]), dino], dim=1)
        queries, _ = m.layer_qformer([layer])
        close("query former on upstream's inputs", queries, gold["qformer_out"], STAGE_TOL)
        # End to end from the frames: the unpadded row.
        cond, _ = m.condition(inputs, views)
    close("query former, unpadded row", cond[1], gold["qformer_out"][1], STAGE_TOL)


def test_padding_is_where_batches_differ(policy, inputs, views, gold):
    """Upstream's query former reads every position, pads included (no mask), so a padded row of a
    batch depends on the VLM's hidden states at pad positions, which the attention kernel decides
    (transformers 4.52 and 5.x differ there; flash-attention on a GPU differs again). Real tokens
    agree; the difference is only at pad positions, and the project acts one sample at a time."""
    with torch.no_grad():
        out = policy.model.qwen_vl_interface(inputs)
    pads = ~gold["attention_mask"].astype(bool)
    diff = np.abs(out.hidden_states[-1].numpy() - gold["last_hidden_state"])
    assert diff[~pads].max() <= 1e-5 and pads.any()


def test_dit_noise_predictions_with_and_without_cfg(policy, gold):
    net = policy.model.action_model.net
    x, t, z = (torch.from_numpy(gold[k]) for k in ("noise", "eps_t", "qformer_out"))
    with torch.no_grad():
        close("DiT eps", net(x, t, z), gold["eps_cond"], STAGE_TOL)
        close("DiT eps with CFG 1.5", net.forward_with_cfg(x, t, z, 1.5), gold["eps_cfg"], STAGE_TOL)


def test_ddim_trajectory_and_unnormalisation(policy, gold):
    steps: list[torch.Tensor] = []
    z, noise = torch.from_numpy(gold["qformer_out"]), torch.from_numpy(gold["noise"])
    out = policy.model.sample_actions(z, noise, 5, 1.5, on_step=lambda i, x: steps.append(x.clone()))
    np.testing.assert_array_equal(gold["ddim_timesteps"], [80, 60, 40, 20, 0])
    close(
        "DDIM x_t before each step", torch.stack(steps[:-1], dim=1), gold["ddim_inputs"][:, 1:], SAMPLER_TOL
    )
    close("DDIM normalised actions", out, gold["normalized_actions"], SAMPLER_TOL)
    for b in range(2):
        ours = policy._normalizer.unnormalize(gold["normalized_actions"][b])
        close(f"unnormalised actions [{b}]", ours, gold["unnormalized_actions"][b], SAMPLER_TOL)


# --- act(), end to end --------------------------------------------------------------------------


@pytest.mark.parametrize("b", [0, 1])
def test_act_matches_upstreams_predict_action(policy, gold, meta, b):
    chunk = act(policy, gold, meta, b, steps=5)
    close(f"act() normalised [{b}]", chunk.normalized, gold["normalized_actions_single"][b], SAMPLER_TOL)
    close(f"act() actions [{b}]", chunk.actions, gold["unnormalized_actions_single"][b], SAMPLER_TOL)


def test_ddim_steps_are_taken_per_call(policy, gold, meta):
    """Upstream builds its DDIM sampler at the first call and keeps that step count: asked for 10
    steps after a 5-step call it returns the 5-step result. The project takes the count per call and
    matches upstream's fresh 10-step sampler."""
    np.testing.assert_array_equal(gold["frozen_ddim10_single0"], gold["normalized_actions_single"][0])
    close(
        "act() with 10 DDIM steps",
        act(policy, gold, meta, 0, steps=10).normalized,
        gold["ddim10_single0"],
        SAMPLER_TOL,
    )


# --- the fixture catches the bugs it was made for -------------------------------------------------


def test_fixture_catches_a_size_resized_dino_grid(policy, gold):
    emb = policy.model.dino_encoder.body.embeddings
    emb.offset = 0.0  # transformers' Dinov2Model: size=(16, 16) instead of the hub's scale factor
    try:
        with torch.no_grad():
            tokens = policy.model.dino_encoder(torch.from_numpy(gold["dino_pixels"]))
    finally:
        emb.offset = 0.1
    assert np.abs(tokens.numpy() - gold["dino_tokens"]).max() > 100 * STAGE_TOL


def test_fixture_catches_a_default_norm_eps(policy, inputs, gold):
    lm = policy.model.qwen_vl_interface.model.model.language_model
    norms = [n for n in lm.modules() if hasattr(n, "variance_epsilon")]
    assert norms and all(n.variance_epsilon == 1e-6 for n in norms)
    try:
        for n in norms:
            n.variance_epsilon = 1e-5  # transformers' default
        with torch.no_grad():
            out = policy.model.qwen_vl_interface(inputs)
    finally:
        for n in norms:
            n.variance_epsilon = 1e-6
    tokens = gold["attention_mask"].astype(bool)
    assert np.abs(out.hidden_states[-1].numpy()[tokens] - gold["last_hidden_state"][tokens]).max() > 1e-5
    assert np.abs(out.logits[:, -4:].numpy() - gold["logits_last"]).max() > STAGE_TOL
