"""Checkpoints: our format round trip, upstream run dirs (old key layout, hub DINOv2 names), errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from workbench.policy import CheckpointError, ST4VLAPolicy, tiny_config
from workbench.policy.checkpoint import BASE_MODEL_ENV, LM_HEAD

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
    lin = p.model.action_model.net.final_layer.linear
    with torch.no_grad():
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=torch.Generator().manual_seed(2)) * 0.05)
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
    from workbench.policy import checkpoint

    monkeypatch.setitem(checkpoint.DIT_SIZES, "DiT-B", (64, 2, 4))
    monkeypatch.setitem(checkpoint.DINO_SIZES, "dinov2_tiny", (32, 1, 2))


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
