"""Checkpoints: our format round trip, upstream run dirs (old key layout, hub DINOv2 names), errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import randomize_head

from workbench.policy import CheckpointError, ST4VLAPolicy, tiny_config
from workbench.policy.checkpoint import LM_HEAD
from workbench.policy.upstream_run import BASE_MODEL_ENV

STATS = {
    "bridge_dataset": {"action": {"q01": [-0.05] * 6 + [0.0], "q99": [0.05] * 6 + [1.0], "mask": [True] * 6 + [False]}},
    "fractal20220817_data": {"action": {"q01": [-0.1] * 6 + [0.0], "q99": [0.1] * 6 + [1.0], "mask": [True] * 6 + [False]}},
}  # fmt: skip
IMAGE = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def policy() -> ST4VLAPolicy:
    torch.set_num_threads(1)
    p = ST4VLAPolicy.from_config(
        tiny_config(dino=True, chunk_length=4), statistics={"bridge_dataset": STATS["bridge_dataset"]}
    )
    randomize_head(p, seed=2)
    return p


@pytest.fixture(scope="module")
def saved(policy, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    policy.save(path)
    return path


def act(p: ST4VLAPolicy) -> np.ndarray:
    return p.act([IMAGE], "put the eggplant in the basket", seed=11, num_ddim_steps=5).normalized


# --- our format ----------------------------------------------------------------------------------


def test_save_writes_the_format(saved):
    names = {p.name for p in saved.iterdir()}
    expected = {"config.json", "model.safetensors", "dataset_statistics.json", "tokenizer.json", "README.md"}
    assert expected <= names and "preprocessor_config.json" in names
    assert json.loads((saved / "config.json").read_text())["format"] == "st4vla-workbench"


def test_save_load_gives_identical_outputs(policy, saved):
    loaded = ST4VLAPolicy.load(saved)
    assert loaded.name == "tiny" and loaded.unnorm_key == "bridge_dataset"
    np.testing.assert_array_equal(act(policy), act(loaded))
    for k, v in policy.model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k]), k
    text_a = policy.spatial([IMAGE], "pick the can", max_new_tokens=8).text
    assert loaded.spatial([IMAGE], "pick the can", max_new_tokens=8).text == text_a


def test_whether_it_was_taught_spatial_answers_is_read_back_or_inferred(saved, tmp_path):
    """config.spatial_answers, where recorded, decides trained_to_answer; a config written before the
    field infers it from the grounding loss and the spatial prompt."""
    older = copy_dir(saved, tmp_path / "older")
    config = json.loads((older / "config.json").read_text())
    config.pop("spatial_answers", None)
    for weight, prompt, expected in ((0.1, False, True), (0.0, True, True), (0.0, False, False)):
        config.update(grounding_loss_weight=weight, use_spatial_prompt=prompt)
        (older / "config.json").write_text(json.dumps(config))
        loaded = ST4VLAPolicy.load(older)
        assert loaded.config.spatial_answers is None and loaded.trained_to_answer is expected
    config.update(grounding_loss_weight=0.1, use_spatial_prompt=False, spatial_answers=False)
    (older / "config.json").write_text(json.dumps(config))  # e.g. co-trained on non-spatial questions
    assert ST4VLAPolicy.load(older).trained_to_answer is False


def test_wrong_or_ambiguous_unnorm_key_lists_the_keys(saved, tmp_path):
    with pytest.raises(CheckpointError, match=r"Unknown unnorm_key 'oxe_rt1'.*bridge_dataset"):
        ST4VLAPolicy.load(saved, unnorm_key="oxe_rt1")
    two = copy_dir(saved, tmp_path / "two")
    (two / "dataset_statistics.json").write_text(json.dumps(STATS))
    with pytest.raises(CheckpointError, match=r"several datasets.*fractal20220817_data"):
        ST4VLAPolicy.load(two)
    assert ST4VLAPolicy.load(two, unnorm_key="fractal20220817_data").unnorm_key == "fractal20220817_data"


def test_missing_statistics(saved, tmp_path):
    d = copy_dir(saved, tmp_path / "nostats")
    (d / "dataset_statistics.json").unlink()
    with pytest.raises(CheckpointError, match="dataset_statistics.json"):
        ST4VLAPolicy.load(d)


def test_truncated_safetensors(saved, tmp_path):
    d = copy_dir(saved, tmp_path / "trunc")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ST4VLAPolicy.load(d)


def test_mismatched_shapes(saved, tmp_path):
    d = copy_dir(saved, tmp_path / "shapes")
    cfg = json.loads((d / "config.json").read_text())
    cfg["action"]["chunk_length"] = 6  # positional embedding now 8 + 6 rows instead of 8 + 4
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"shape mismatch.*positional_embedding"):
        ST4VLAPolicy.load(d)


# --- upstream run dirs ---------------------------------------------------------------------------


def to_upstream_state(policy: ST4VLAPolicy, old_qwen_layout: bool) -> dict[str, torch.Tensor]:
    """Our state dict renamed as an upstream checkpoint: hub DINOv2 names, optionally old Qwen keys."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in policy.model.state_dict().items():
        value = value.clone()
        if key.startswith("dino_encoder.body."):
            name = key[len("dino_encoder.body.") :]
            m = re.match(r"encoder\.layer\.(\d+)\.attention\.(q|k|v)_proj\.(weight|bias)$", name)
            if m:
                qkv.setdefault(f"blocks.{m[1]}.attn.qkv.{m[3]}", {})[m[2]] = value
                continue
            for pat, rep in [
                (r"^embeddings\.cls_token$", "cls_token"),
                (r"^embeddings\.mask_token$", "mask_token"),
                (r"^embeddings\.position_embeddings$", "pos_embed"),
                (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
                (r"^encoder\.layer\.(\d+)\.attention\.o_proj\.", r"blocks.\1.attn.proj."),
                (r"^encoder\.layer\.(\d+)\.layer_scale1\.lambda1$", r"blocks.\1.ls1.gamma"),
                (r"^encoder\.layer\.(\d+)\.layer_scale2\.lambda1$", r"blocks.\1.ls2.gamma"),
                (r"^encoder\.layer\.(\d+)\.", r"blocks.\1."),
                (r"^layernorm\.", "norm."),
            ]:
                if re.match(pat, name):
                    name = re.sub(pat, rep, name)
                    break
            out["dino_encoder.body." + name] = value
        elif old_qwen_layout and key.startswith("qwen_vl_interface.model.model.language_model."):
            out[key.replace("model.model.language_model.", "model.model.")] = value
        elif old_qwen_layout and key.startswith("qwen_vl_interface.model.model.visual."):
            out[key.replace("model.model.visual.", "model.visual.")] = value
        else:
            out[key] = value
    for name, parts in qkv.items():
        out["dino_encoder.body." + name] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def write_run_dir(policy: ST4VLAPolicy, root: Path, old_qwen_layout: bool = True) -> tuple[Path, Path]:
    base = root / "Qwen2.5-VL-tiny"  # the "base VLM": its config.json and tokenizer, as on a GPU box
    policy.model.qwen_vl_interface.model.config.save_pretrained(base)
    policy.tokenizer.save_pretrained(base)
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    c = policy.config
    cfg = {
        "framework": {
            "framework_py": "InternVLA-M1",
            "qwenvl": {"base_vlm": str(base), "vl_hidden_dim": c.vlm.hidden_size},
            "dino": {"dino_backbone": "dinov2_tiny"},
            "layer_qformer": {"qformer_start_layer": c.vlm.num_layers, "qformer_end_layer": c.vlm.num_layers + 1,
                              "num_query_tokens": c.qformer.num_queries, "input_dim": c.vlm.hidden_size,
                              "ouptput_dim": c.qformer.width},
            "action_model": {"action_model_type": "DiT-B", "action_hidden_dim": c.action.width, "action_dim": 7,
                             "future_action_window_size": c.chunk_length - 1, "past_action_window_size": 0},
        },
        "datasets": {"vla_data": {"CoT_prompt": c.spatial_prompt, "default_image_resolution": [3, 112, 112]}},
    }  # fmt: skip
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "dataset_statistics.json").write_text(json.dumps(STATS))
    state = to_upstream_state(policy, old_qwen_layout)
    torch.save(state, run / "checkpoints" / "steps_100_pytorch_model.pt")
    return run, base


@pytest.fixture()
def tiny_dit(monkeypatch):
    """Upstream names sizes by preset (DiT-B, dinov2_vits14): register the tiny model's as presets."""
    from workbench.policy import upstream_run

    monkeypatch.setitem(upstream_run.DIT_SIZES, "DiT-B", (64, 2, 4))
    monkeypatch.setitem(upstream_run.DINO_SIZES, "dinov2_tiny", (32, 1, 2))


@pytest.mark.parametrize("old_layout", [True, False])
def test_upstream_run_dir_loads_strictly_and_acts_the_same(policy, tmp_path, tiny_dit, old_layout):
    run, _ = write_run_dir(policy, tmp_path, old_qwen_layout=old_layout)
    keys = torch.load(run / "checkpoints" / "steps_100_pytorch_model.pt", weights_only=True)
    assert any(k.startswith("dino_encoder.body.blocks.0.attn.qkv") for k in keys)
    assert any(k.startswith("layer_qformer.layers.0.cross_attn") for k in keys)
    assert any(k.startswith("action_model.net.z_embedder.uncondition") for k in keys)
    assert old_layout == any(k.startswith("qwen_vl_interface.model.visual.") for k in keys)
    loaded = ST4VLAPolicy.load(run, unnorm_key="bridge_dataset")
    assert loaded.name == "run" and loaded.chunk_length == policy.chunk_length
    np.testing.assert_allclose(act(loaded), act(policy), atol=1e-5)
    # Also accepted: the .pt file itself.
    direct = ST4VLAPolicy.load(
        run / "checkpoints" / "steps_100_pytorch_model.pt", unnorm_key="bridge_dataset"
    )
    np.testing.assert_allclose(act(direct), act(policy), atol=1e-5)


def test_upstream_strict_matching_reports_keys(policy, tmp_path, tiny_dit):
    run, _ = write_run_dir(policy, tmp_path)
    pt = run / "checkpoints" / "steps_100_pytorch_model.pt"
    state = torch.load(pt, weights_only=True)
    state.pop("layer_qformer.proj.weight")
    state["action_model.net.extra_head.weight"] = torch.zeros(2)
    torch.save(state, pt)
    with pytest.raises(
        CheckpointError, match=r"missing keys.*layer_qformer\.proj\.weight.*unexpected keys.*extra_head"
    ):
        ST4VLAPolicy.load(run, unnorm_key="bridge_dataset")


def test_upstream_truncated_weights(policy, tmp_path, tiny_dit):
    run, _ = write_run_dir(policy, tmp_path)
    pt = run / "checkpoints" / "steps_100_pytorch_model.pt"
    pt.write_bytes(pt.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ST4VLAPolicy.load(run, unnorm_key="bridge_dataset")


def test_upstream_base_model_not_found_says_how_to_point_at_it(policy, tmp_path, tiny_dit, monkeypatch):
    monkeypatch.delenv(BASE_MODEL_ENV, raising=False)
    run, base = write_run_dir(policy, tmp_path)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["framework"]["qwenvl"]["base_vlm"] = "Qwen/Qwen2.5-VL-3B-Instruct"
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(
        CheckpointError, match=rf"Qwen/Qwen2.5-VL-3B-Instruct.*base_model_dir=.*{BASE_MODEL_ENV}"
    ):
        ST4VLAPolicy.load(run, unnorm_key="bridge_dataset")
    loaded = ST4VLAPolicy.load(run, unnorm_key="bridge_dataset", base_model_dir=base)
    np.testing.assert_allclose(act(loaded), act(policy), atol=1e-5)
    monkeypatch.setenv(BASE_MODEL_ENV, str(base))
    assert (
        ST4VLAPolicy.load(run, unnorm_key="bridge_dataset").config.vlm.base_model
        == "Qwen/Qwen2.5-VL-3B-Instruct"
    )


def test_tied_lm_head_is_not_required(policy):
    assert policy.model.qwen_vl_interface.model.config.tie_word_embeddings
    assert LM_HEAD in policy.model.state_dict()


def copy_dir(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# --- what is read from where ---------------------------------------------------------------------


def edit_yaml(run: Path, edit) -> None:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    edit(cfg)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))


def edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


QWEN_FLAT = {  # Qwen2.5-VL-3B-Instruct's config.json layout (flat text fields), tiny sizes
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
    "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 3000, "rms_norm_eps": 1e-6, "rope_theta": 500000.0,
    "max_position_embeddings": 4096, "tie_word_embeddings": False, "hidden_act": "silu",
    "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
    "vision_config": {"depth": 3, "hidden_size": 32, "num_heads": 2, "intermediate_size": 48,
                      "out_hidden_size": 64, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                      "window_size": 56, "fullatt_block_indexes": [2], "tokens_per_second": 2, "in_chans": 3},
}  # fmt: skip


def test_base_config_fields_are_carried_not_defaulted(tmp_path):
    from workbench.policy.upstream_run import vlm_config_from_hf
    from workbench.policy.vlm import hf_qwen_config

    (tmp_path / "config.json").write_text(json.dumps(QWEN_FLAT))
    v = vlm_config_from_hf(tmp_path, "tiny")
    assert (v.rms_norm_eps, v.rope_theta, v.mrope_section) == (1e-6, 500000.0, [2, 3, 3])
    assert (v.window_size, v.fullatt_block_indexes, v.vocab_size, v.tie_word_embeddings) == (
        56,
        (2,),
        3000,
        False,
    )
    assert (v.vision_depth, v.vision_hidden, v.vision_intermediate, v.num_kv_heads) == (3, 32, 48, 2)
    policy = ST4VLAPolicy.from_config(tiny_config(hidden_size=64, vision_hidden=32))
    hf = hf_qwen_config(v, policy.tokenizer)
    t = hf.text_config
    assert t.rms_norm_eps == 1e-6 and t.rope_parameters["rope_theta"] == 500000.0
    assert t.rope_parameters["mrope_section"] == [2, 3, 3] and t.vocab_size == 3000
    assert hf.vision_config.window_size == 56 and hf.vision_config.fullatt_block_indexes == [2]
    assert not hf.tie_word_embeddings
    # A nested text_config (transformers >= 4.5x saves) is read the same way.
    nested = {k: v for k, v in QWEN_FLAT.items() if k in ("vision_config", "model_type")}
    nested["text_config"] = {k: v for k, v in QWEN_FLAT.items() if k not in nested}
    (tmp_path / "config.json").write_text(json.dumps(nested))
    assert vlm_config_from_hf(tmp_path, "tiny") == v


def test_upstream_run_carries_the_base_models_norm_eps(policy, tmp_path, tiny_dit):
    run, base = write_run_dir(policy, tmp_path)
    edit_json(base / "config.json", lambda c: c["text_config"].__setitem__("rms_norm_eps", 3e-4))
    loaded = ST4VLAPolicy.load(run, unnorm_key="bridge_dataset")
    assert loaded.config.vlm.rms_norm_eps == 3e-4
    assert loaded.model.qwen_vl_interface.model.config.text_config.rms_norm_eps == 3e-4
    norm = loaded.model.qwen_vl_interface.model.model.language_model.norm
    assert getattr(norm, "variance_epsilon", getattr(norm, "eps", None)) == 3e-4


def test_legacy_workbench_config_keeps_the_eps_it_was_built_with():
    from workbench.policy.configuration import ST4VLAConfig

    data = tiny_config().to_dict()
    del data["vlm"]["rms_norm_eps"]
    assert ST4VLAConfig.from_dict(data).vlm.rms_norm_eps == 1e-5
    assert tiny_config().vlm.rms_norm_eps == 1e-6


def test_unknown_dit_preset_is_refused_by_name(policy, tmp_path, tiny_dit):
    run, _ = write_run_dir(policy, tmp_path)
    edit_yaml(run, lambda c: c["framework"]["action_model"].__setitem__("action_model_type", "DiT-XS"))
    with pytest.raises(
        CheckpointError, match=r"config\.yaml: field framework\.action_model\.action_model_type 'DiT-XS'"
    ):
        ST4VLAPolicy.load(run, unnorm_key="bridge_dataset")
    # A custom size loads when the head count is given; width and depth come from the weights.
    edit_yaml(run, lambda c: c["framework"]["action_model"].__setitem__("num_heads", 4))
    loaded = ST4VLAPolicy.load(run, unnorm_key="bridge_dataset")
    assert (loaded.config.action.width, loaded.config.action.depth, loaded.config.action.num_heads) == (
        64,
        2,
        4,
    )
    np.testing.assert_allclose(act(loaded), act(policy), atol=1e-5)


def test_known_preset_that_disagrees_with_the_weights_is_refused(policy, tmp_path, monkeypatch):
    from workbench.policy import upstream_run

    monkeypatch.setitem(upstream_run.DINO_SIZES, "dinov2_tiny", (32, 1, 2))
    run, _ = write_run_dir(policy, tmp_path)  # DiT-B is (768, 12, 12); the weights are 64 wide, 2 deep
    with pytest.raises(CheckpointError, match=r"'DiT-B' \(width 768, depth 12\).*width 64 and depth 2"):
        ST4VLAPolicy.load(run, unnorm_key="bridge_dataset")


def test_fields_are_read_where_upstream_reads_them(policy, tmp_path, tiny_dit):
    run, _ = write_run_dir(policy, tmp_path)

    def edit(c):
        c["framework"]["action_model"]["action_hidden_dim"] = 999  # upstream's DiT ignores it
        c["framework"]["action_model"]["repeated_diffusion_steps"] = 9  # not where upstream reads it
        c["trainer"] = {"repeated_diffusion_steps": 3}

    edit_yaml(run, edit)
    loaded = ST4VLAPolicy.load(run, unnorm_key="bridge_dataset")
    assert loaded.config.qformer.width == 64 and loaded.config.action.repeated_diffusion_steps == 3
    edit_yaml(run, lambda c: c["framework"]["layer_qformer"].__setitem__("ouptput_dim", 32))
    with pytest.raises(
        CheckpointError, match=r"field framework\.layer_qformer\.ouptput_dim is 32.*projects to 64"
    ):
        ST4VLAPolicy.load(run, unnorm_key="bridge_dataset")


@pytest.mark.parametrize(
    ("target", "content", "pattern"),
    [
        ("config.yaml", b"framework: \xff\xfe\n", r"config\.yaml is not UTF-8"),
        ("config.yaml", b"- a\n- b\n", r"config\.yaml must hold a mapping"),
        ("base", b"\xff\xfe{}", r"config\.json is not UTF-8"),
        ("base", b"[1, 2]", r"config\.json must hold a JSON object"),
        ("dataset_statistics.json", b"\xff", r"dataset_statistics\.json is not UTF-8"),
        ("dataset_statistics.json", b'"x"', r"dataset_statistics\.json must hold a JSON object"),
    ],
)
def test_unreadable_upstream_files_name_the_file(policy, tmp_path, tiny_dit, target, content, pattern):
    run, base = write_run_dir(policy, tmp_path)
    (base / "config.json" if target == "base" else run / target).write_bytes(content)
    with pytest.raises(CheckpointError, match=pattern):
        ST4VLAPolicy.load(run, unnorm_key="bridge_dataset")


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda c: c["framework"]["action_model"].__setitem__("action_dim", "7"),
         r"config\.yaml: field framework\.action_model\.action_dim must be int, got str '7'"),
        (lambda c: c["framework"]["layer_qformer"].__setitem__("qformer_start_layer", 1.5),
         r"config\.yaml: field framework\.layer_qformer\.qformer_start_layer must be int"),
        (lambda c: c["framework"]["action_model"].pop("action_model_type"),
         r"config\.yaml: field framework\.action_model\.action_model_type is missing"),
        (lambda c: c["trainer"].__setitem__("repeated_diffusion_steps", True) if "trainer" in c
         else c.__setitem__("trainer", {"repeated_diffusion_steps": True}),
         r"field trainer\.repeated_diffusion_steps must be int, got bool"),
        (lambda c: c["datasets"]["vla_data"].__setitem__("CoT_prompt", ["x"]),
         r"field datasets\.vla_data\.CoT_prompt must be str"),
    ],
)  # fmt: skip
def test_wrong_field_types_name_the_file_and_field(policy, tmp_path, tiny_dit, edit, pattern):
    run, _ = write_run_dir(policy, tmp_path)
    edit_yaml(run, edit)
    with pytest.raises(CheckpointError, match=pattern):
        ST4VLAPolicy.load(run, unnorm_key="bridge_dataset")


def test_bad_base_config_fields_name_the_field(policy, tmp_path, tiny_dit):
    run, base = write_run_dir(policy, tmp_path)
    edit_json(base / "config.json", lambda c: c["text_config"].__setitem__("rms_norm_eps", "1e-6"))
    with pytest.raises(CheckpointError, match=r"config\.json: field text_config\.rms_norm_eps must be float"):
        ST4VLAPolicy.load(run, unnorm_key="bridge_dataset")
    edit_json(base / "config.json", lambda c: c["text_config"].pop("rms_norm_eps"))
    edit_json(base / "config.json", lambda c: c["text_config"].pop("hidden_size"))
    with pytest.raises(CheckpointError, match=r"config\.json: field text_config\.hidden_size is missing"):
        ST4VLAPolicy.load(run, unnorm_key="bridge_dataset")


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda s: s["bridge_dataset"]["action"].pop("q99"), r"field bridge_dataset\.action\.q99 is missing"),
        (lambda s: s["bridge_dataset"].pop("action"), r"field bridge_dataset\.action is missing"),
        (
            lambda s: s["bridge_dataset"]["action"].__setitem__("q01", ["a"]),
            r"bridge_dataset\.action\.q01 must be",
        ),
        (lambda s: s.__setitem__("bridge_dataset", [1]), r"field bridge_dataset must be an object"),
        (
            lambda s: s["bridge_dataset"]["action"].__setitem__("mask", [1] * 7),
            r"bridge_dataset\.action\.mask must be",
        ),
        (
            lambda s: s["bridge_dataset"]["action"].__setitem__("q99", [0.1] * 6),
            r"must have one length, got \[6, 7\]",
        ),
    ],
)
def test_bad_statistics_name_the_file_and_field(policy, tmp_path, tiny_dit, edit, pattern):
    run, _ = write_run_dir(policy, tmp_path)
    edit_json(run / "dataset_statistics.json", edit)
    with pytest.raises(
        CheckpointError,
        match=r"dataset_statistics\.json: .*" + pattern,
    ):
        ST4VLAPolicy.load(run, unnorm_key="bridge_dataset")


def test_dino_position_grid_is_resized_as_the_hub_model(monkeypatch):
    """The 37x37 grid of a 518 px DINOv2 is resized to 16x16 for 224 px inputs with the hub's
    scale factor (16 + 0.1) / 37, not to size=(16, 16): the two differ, and the hub's is used."""
    import torch.nn.functional as F

    from workbench.policy.modeling import DinoEncoder

    cfg = tiny_config(dino=True)
    cfg.dino.pos_embed_size, cfg.dino.image_size = 518, 224
    enc = DinoEncoder(cfg)
    emb = enc.body.embeddings
    with torch.no_grad():
        emb.position_embeddings.copy_(
            torch.randn(emb.position_embeddings.shape, generator=torch.Generator().manual_seed(0))
        )
    tokens = torch.zeros(1, 1 + 16 * 16, cfg.dino.hidden_size)
    out = emb.interpolate_pos_encoding(tokens, 224, 224)
    grid = emb.position_embeddings[:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
    hub = F.interpolate(grid, scale_factor=(16.1 / 37, 16.1 / 37), mode="bicubic", antialias=False)
    by_size = F.interpolate(grid, size=(16, 16), mode="bicubic", align_corners=False)
    flat = lambda g: g.permute(0, 2, 3, 1).reshape(1, 256, -1)  # noqa: E731
    assert out.shape == (1, 257, cfg.dino.hidden_size)
    torch.testing.assert_close(out[:, 1:], flat(hub))
    torch.testing.assert_close(out[:, :1], emb.position_embeddings[:, :1])
    assert (flat(hub) - flat(by_size)).abs().max() > 0.1  # the difference the hub's offset makes
    # A grid that already fits a square input is used as is.
    assert emb.interpolate_pos_encoding(torch.zeros(1, 1 + 37 * 37, 1), 518, 518) is emb.position_embeddings
