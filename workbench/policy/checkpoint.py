"""Checkpoint IO: this project's format, and upstream InternVLA-M1 run directories.

Our format (a directory):
    config.json                ST4VLAConfig + {"format": "st4vla-workbench"}
    model.safetensors          the state dict (upstream key names)
    dataset_statistics.json    upstream schema: {key: {"action": {q01, q99, mask, ...}, ...}}
    tokenizer.json, tokenizer_config.json, ..., preprocessor_config.json
    README.md                  the model card

Upstream run dir:
    config.yaml, dataset_statistics.json, checkpoints/steps_N_pytorch_model.pt or
    final_model/pytorch_model.pt (torch.save of the state dict, bf16). The VLM's sizes and tokenizer
    come from the base model named in config.yaml (framework.qwenvl.base_vlm), which must be on disk:
    pass base_model_dir= or set ST4VLA_BASE_MODEL_DIR. Nothing is ever downloaded.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workbench.policy.configuration import ActionConfig, DinoConfig, QFormerConfig, ST4VLAConfig, VLMConfig

FORMAT = "st4vla-workbench"
BASE_MODEL_ENV = "ST4VLA_BASE_MODEL_DIR"
LM_HEAD = "qwen_vl_interface.model.lm_head.weight"
DIT_SIZES = {"DiT-S": (384, 6, 4), "DiT-B": (768, 12, 12), "DiT-L": (1024, 24, 16)}  # width, depth, heads
DINO_SIZES = {  # hidden, layers, heads
    "dinov2_vits14": (384, 12, 6),
    "dinov2_vitb14": (768, 12, 12),
    "dinov2_vitl14": (1024, 24, 16),
    "dinov2_vitg14": (1536, 40, 24),
}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded as asked; the message says what to do."""


# ------------------------------------------------------------------------------------------------
# Key maps
# ------------------------------------------------------------------------------------------------


def map_qwen_key(key: str) -> str:
    """Old transformers layout (model.layers.*, visual.*) -> the 4.52+/5.x layout we build."""
    prefix = "qwen_vl_interface.model."
    if not key.startswith(prefix):
        return key
    rest = key[len(prefix) :]
    if rest.startswith("visual."):
        rest = "model." + rest
    elif rest.startswith("model.") and not rest.startswith(("model.language_model.", "model.visual.")):
        rest = "model.language_model." + rest[len("model.") :]
    return prefix + rest


_HUB_DINO = [  # torch.hub DINOv2 name -> transformers Dinov2Model name (qkv handled separately)
    (r"^cls_token$", "embeddings.cls_token"),
    (r"^mask_token$", "embeddings.mask_token"),
    (r"^pos_embed$", "embeddings.position_embeddings"),
    (r"^patch_embed\.proj\.(weight|bias)$", r"embeddings.patch_embeddings.projection.\1"),
    (r"^blocks\.(\d+)\.norm1\.(weight|bias)$", r"encoder.layer.\1.norm1.\2"),
    (r"^blocks\.(\d+)\.norm2\.(weight|bias)$", r"encoder.layer.\1.norm2.\2"),
    (r"^blocks\.(\d+)\.attn\.proj\.(weight|bias)$", r"encoder.layer.\1.attention.o_proj.\2"),
    (r"^blocks\.(\d+)\.ls1\.gamma$", r"encoder.layer.\1.layer_scale1.lambda1"),
    (r"^blocks\.(\d+)\.ls2\.gamma$", r"encoder.layer.\1.layer_scale2.lambda1"),
    (r"^blocks\.(\d+)\.mlp\.fc(1|2)\.(weight|bias)$", r"encoder.layer.\1.mlp.fc\2.\3"),
    (r"^norm\.(weight|bias)$", r"layernorm.\1"),
]


def map_dino_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename dino_encoder.body.* from torch.hub names to transformers' (splitting fused qkv)."""
    prefix = "dino_encoder.body."
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith(prefix) or key[len(prefix) :].startswith(
            ("embeddings.", "encoder.", "layernorm.")
        ):
            out[key] = value  # not DINO, or already transformers names
            continue
        name = key[len(prefix) :]
        qkv = re.match(r"^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", name)
        if qkv:
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0), strict=True):
                out[f"{prefix}encoder.layer.{qkv[1]}.attention.{part}.{qkv[2]}"] = chunk.clone()
            continue
        for pattern, repl in _HUB_DINO:
            if re.match(pattern, name):
                out[prefix + re.sub(pattern, repl, name)] = value
                break
        else:
            out[key] = value  # unknown: left as is, reported as unexpected by the strict load
    return out


def to_model_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return map_dino_state({map_qwen_key(k): v for k, v in state.items()})


# ------------------------------------------------------------------------------------------------
# Strict loading with clear errors
# ------------------------------------------------------------------------------------------------


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model`; missing/unexpected keys or shape mismatches raise CheckpointError."""
    own = model.state_dict()
    tied = getattr(model.qwen_vl_interface.model.config, "tie_word_embeddings", False)
    missing = [k for k in own if k not in state and not (tied and k == LM_HEAD)]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {missing[:5]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {unexpected[:5]})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches (first: {shapes[:5]})")
    if problems:
        raise CheckpointError(
            f"{source} does not match the model built from its config: " + "; ".join(problems) + ". "
            "Check that the config (and base model, for upstream runs) is the one this checkpoint was trained with."
        )
    with torch.no_grad():
        for k, v in state.items():
            if not (tied and k == LM_HEAD):  # tied: the embedding already carries these weights
                own[k].copy_(v.to(own[k].dtype))


# ------------------------------------------------------------------------------------------------
# Our format
# ------------------------------------------------------------------------------------------------


def is_workbench_dir(path: Path) -> bool:
    cfg = path / "config.json"
    if not (path.is_dir() and cfg.is_file() and (path / "model.safetensors").is_file()):
        return False
    try:
        return json.loads(cfg.read_text()).get("format") == FORMAT
    except (json.JSONDecodeError, OSError):
        return False


def read_statistics(path: Path) -> dict[str, Any]:
    stats = path / "dataset_statistics.json"
    if not stats.is_file():
        raise CheckpointError(
            f"No dataset_statistics.json in {path}: the policy cannot unnormalise actions without it. "
            "Copy the training run's dataset_statistics.json into this directory."
        )
    try:
        data = json.loads(stats.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{stats} is not valid JSON ({e}); restore it from the training run.") from e
    if not isinstance(data, dict) or not data:
        raise CheckpointError(f"{stats} holds no statistics; expected {{key: {{'action': {{...}}}}}}.")
    return data


def read_workbench_config(path: Path) -> ST4VLAConfig:
    data = json.loads((path / "config.json").read_text())
    data.pop("format", None)
    data.pop("format_version", None)
    return ST4VLAConfig.from_dict(data)


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(
            f"Cannot read {path}: {e}. The file is truncated or corrupt; copy it again from its source."
        ) from e


def save_state(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    state = model.state_dict()
    if getattr(model.qwen_vl_interface.model.config, "tie_word_embeddings", False):
        state.pop(LM_HEAD, None)  # shared with the input embedding; safetensors refuses aliases
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(path), metadata={"format": FORMAT})


# ------------------------------------------------------------------------------------------------
# Upstream run dirs
# ------------------------------------------------------------------------------------------------


def find_upstream_weights(path: Path) -> tuple[Path, Path]:
    """(run_dir, weights file) for a run dir or a .pt inside one; the latest steps_N if several."""
    if path.is_file():
        run = path.parent.parent if path.parent.name in ("checkpoints", "final_model") else path.parent
        return run, path
    steps = []
    for f in (path / "checkpoints").glob("steps_*_pytorch_model.pt"):
        m = re.match(r"steps_(\d+)_pytorch_model\.pt$", f.name)
        if m:
            steps.append((int(m[1]), f))
    if steps:
        return path, max(steps)[1]
    final = path / "final_model" / "pytorch_model.pt"
    if final.is_file():
        return path, final
    raise CheckpointError(
        f"No weights in {path}: expected checkpoints/steps_N_pytorch_model.pt or final_model/pytorch_model.pt."
    )


def load_torch_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)  # never unpickle objects
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError/EOFError/UnpicklingError variously
        raise CheckpointError(
            f"Cannot read {path}: {type(e).__name__}: {e}. The file is truncated or corrupt, or holds more "
            "than tensors (only weights_only state dicts are loaded); copy it again from its source."
        ) from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a flat state dict of tensors.")
    return state


def resolve_base_model(name: str | None, base_model_dir: str | Path | None) -> Path:
    """The local directory of the base VLM (config.json + tokenizer). Never downloads."""
    candidates = [base_model_dir, os.environ.get(BASE_MODEL_ENV), name]
    for c in candidates:
        if c and (Path(c) / "config.json").is_file():
            return Path(c)
    raise CheckpointError(
        f"The run's base VLM {name!r} (config.yaml framework.qwenvl.base_vlm) is not on this machine, and "
        "nothing is downloaded. Point at a local copy of it (a directory with config.json and tokenizer "
        f"files, e.g. a downloaded Qwen2.5-VL-3B-Instruct): ST4VLAPolicy.load(path, base_model_dir=DIR) or "
        f"export {BASE_MODEL_ENV}=DIR."
    )


def vlm_config_from_hf(base: Path, name: str | None) -> VLMConfig:
    from transformers import Qwen2_5_VLConfig

    hf = Qwen2_5_VLConfig.from_pretrained(str(base))
    t, v = hf.text_config, hf.vision_config
    rope = t.rope_parameters or {}
    return VLMConfig(
        hidden_size=t.hidden_size,
        num_layers=t.num_hidden_layers,
        num_heads=t.num_attention_heads,
        num_kv_heads=t.num_key_value_heads,
        intermediate_size=t.intermediate_size,
        vocab_size=t.vocab_size,
        rope_theta=float(rope.get("rope_theta", 1e6)),
        max_position_embeddings=t.max_position_embeddings,
        tie_word_embeddings=bool(hf.tie_word_embeddings),
        vision_depth=v.depth,
        vision_hidden=v.hidden_size,
        vision_heads=v.num_heads,
        vision_intermediate=v.intermediate_size,
        patch_size=v.patch_size,
        spatial_merge_size=v.spatial_merge_size,
        temporal_patch_size=v.temporal_patch_size,
        window_size=v.window_size,
        fullatt_block_indexes=tuple(v.fullatt_block_indexes),
        base_model=name,
    )


def config_from_upstream(
    yaml_cfg: dict[str, Any], state: dict[str, torch.Tensor], base: Path, name: str | None
) -> ST4VLAConfig:
    """Our config from upstream's config.yaml, the base VLM's config.json and the weights' shapes."""
    fw = yaml_cfg.get("framework", {}) or {}
    qf = fw.get("layer_qformer", {}) or {}
    am = fw.get("action_model", {}) or {}
    data = ((yaml_cfg.get("datasets", {}) or {}).get("vla_data", {})) or {}
    vlm = vlm_config_from_hf(base, name)
    width, depth, heads = DIT_SIZES.get(am.get("action_model_type", "DiT-B"), DIT_SIZES["DiT-B"])
    # The weights decide sizes the yaml may not spell out (chunk length, queries, DINO width).
    pos = state.get("action_model.net.positional_embedding")
    unc = state.get("action_model.net.z_embedder.uncondition")
    n_queries = int(unc.shape[0]) if unc is not None else int(qf.get("num_query_tokens", 64))
    chunk = int(am.get("future_action_window_size", 15)) + 1
    if pos is not None:
        chunk = int(pos.shape[0]) - n_queries
    image_size = 224
    res = data.get("default_image_resolution")
    if isinstance(res, list | tuple) and len(res) == 3:
        image_size = int(res[1])
    dino_keys = [k for k in state if k.startswith("dino_encoder.body.")]
    dino = DinoConfig(enabled=bool(dino_keys))
    if dino_keys:
        # Sizes from the weights; only the head count comes from the backbone's name.
        backbone = (fw.get("dino", {}) or {}).get("dino_backbone", "dinov2_vits14")
        hidden, layers, dheads = DINO_SIZES.get(backbone, DINO_SIZES["dinov2_vits14"])
        blocks = {int(m[1]) for k in dino_keys if (m := re.search(r"\.layer\.(\d+)\.", k))}
        patch = state["dino_encoder.body.embeddings.patch_embeddings.projection.weight"]
        grid = math.isqrt(state["dino_encoder.body.embeddings.position_embeddings"].shape[1] - 1)
        dino = DinoConfig(
            enabled=True,
            hidden_size=int(patch.shape[0]),
            num_layers=len(blocks) or layers,
            num_heads=dheads,
            patch_size=int(patch.shape[-1]),
            pos_embed_size=grid * int(patch.shape[-1]),
            image_size=image_size,  # upstream resizes DINO inputs to the VLA image size (224)
        )
    start, end = qf.get("qformer_start_layer"), qf.get("qformer_end_layer")
    return ST4VLAConfig(
        vlm=vlm,
        qformer=QFormerConfig(
            width=int(am.get("action_hidden_dim", width)),
            num_queries=n_queries,
            layer_range=(int(start), int(end)) if start is not None and end is not None else None,
        ),
        action=ActionConfig(
            width=width,
            depth=depth,
            num_heads=heads,
            chunk_length=chunk,
            action_dim=int(am.get("action_dim", 7)),
            repeated_diffusion_steps=int(am.get("repeated_diffusion_steps", 4)),
        ),
        dino=dino,
        image_size=image_size,
        spatial_prompt=data.get("CoT_prompt") or ST4VLAConfig().spatial_prompt,
        use_spatial_prompt="CoT_prompt" in data,
        notes={"source": "upstream run dir", "base_model": name},
    )


def read_upstream_yaml(run: Path) -> dict[str, Any]:
    import yaml

    cfg = run / "config.yaml"
    if not cfg.is_file():
        raise CheckpointError(f"No config.yaml in {run}: an upstream run dir needs it to rebuild the model.")
    return yaml.safe_load(cfg.read_text()) or {}
