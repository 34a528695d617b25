"""Upstream InternVLA-M1 run directories: finding the weights and rebuilding the model's config.

Upstream run dir:
    config.yaml, dataset_statistics.json, checkpoints/steps_N_pytorch_model.pt or
    final_model/pytorch_model.pt (torch.save of the state dict, bf16). The VLM's sizes and tokenizer
    come from the base model named in config.yaml (framework.qwenvl.base_vlm), which must be on disk:
    pass base_model_dir= or set ST4VLA_BASE_MODEL_DIR. Nothing is ever downloaded.

Invariants: every field is read where upstream's code reads it (query-former width:
framework.layer_qformer.ouptput_dim; repeated_diffusion_steps: trainer.*), every number-changing
field of the base model's config.json is carried (none left to transformers' defaults), sizes the
weights fix are read from the weights, and a bad or missing field raises CheckpointError naming the
file and the field. tests/policy/test_policy_upstream_parity.py checks a run written by upstream's code.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import torch
import yaml

from workbench.policy.checkpoint import CheckpointError, read_json_object, typed, typed_ints
from workbench.policy.configuration import ActionConfig, DinoConfig, QFormerConfig, ST4VLAConfig, VLMConfig

BASE_MODEL_ENV = "ST4VLA_BASE_MODEL_DIR"
DIT_SIZES = {"DiT-S": (384, 6, 4), "DiT-B": (768, 12, 12), "DiT-L": (1024, 24, 16)}  # width, depth, heads
DINO_SIZES = {  # hidden, layers, heads
    "dinov2_vits14": (384, 12, 6),
    "dinov2_vitb14": (768, 12, 12),
    "dinov2_vitl14": (1024, 24, 16),
    "dinov2_vitg14": (1536, 40, 24),
}


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
# Files of a run
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


def read_upstream_yaml(run: Path) -> dict[str, Any]:
    cfg = run / "config.yaml"
    if not cfg.is_file():
        raise CheckpointError(f"No config.yaml in {run}: an upstream run dir needs it to rebuild the model.")
    try:
        data = yaml.safe_load(cfg.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{cfg} is not UTF-8 text ({e}); restore it from the training run.") from e
    except yaml.YAMLError as e:
        raise CheckpointError(f"{cfg} is not valid YAML ({e}); restore it from the training run.") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CheckpointError(f"{cfg} must hold a mapping (upstream's config), not {type(data).__name__}.")
    return data


# ------------------------------------------------------------------------------------------------
# The config: config.yaml, the base VLM's config.json and the weights
# ------------------------------------------------------------------------------------------------


def vlm_config_from_hf(base: Path, name: str | None) -> VLMConfig:
    """Our VLM config from the base model's config.json, every number-changing field carried.

    Read as transformers 4.52 (upstream's pin) reads it: the text fields from `text_config` when it is
    an object, else from the top level (Qwen2.5-VL-3B-Instruct's own file is flat); a field the file
    lacks takes that version's class default, as upstream's model would get it.
    """
    path = base / "config.json"
    raw = read_json_object(path, "the base VLM's config")
    nested = isinstance(raw.get("text_config"), dict)
    text = raw["text_config"] if nested else raw
    tw = "text_config" if nested else ""  # where the text fields are, for the messages
    vision = typed(raw, "vision_config", dict, path, "")
    rope, rw = _rope_section(text, path, tw)
    hidden = typed(text, "hidden_size", int, path, tw)
    _check_vision_output(vision, hidden, path)
    tie = typed(text, "tie_word_embeddings", bool, path, tw, None)
    if tie is None:
        tie = typed(raw, "tie_word_embeddings", bool, path, "", False)
    theta = typed(text, "rope_theta", float, path, tw, None)
    if theta is None:
        theta = typed(rope, "rope_theta", float, path, rw, 1_000_000.0)
    return VLMConfig(
        hidden_size=hidden,
        **_text_fields(text, path, tw),
        rope_theta=theta,
        mrope=typed_ints(rope, "mrope_section", path, rw, None),
        tie_word_embeddings=tie,
        **_vision_fields(vision, path),
        base_model=name,
    )


def _rope_section(text: dict[str, Any], path: Path, tw: str) -> tuple[dict[str, Any], str]:
    """(rope_scaling, or transformers 5's rope_parameters, or {}; its dotted name), of a supported type."""
    rope = typed(text, "rope_scaling", dict, path, tw, None) or typed(
        text, "rope_parameters", dict, path, tw, {}
    )
    rw = f"{tw}.rope_scaling" if "rope_scaling" in text else f"{tw}.rope_parameters"
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", "mrope"):
        raise CheckpointError(
            f"{path}: field {rw}.type {rope_type!r} is not supported; Qwen2.5-VL uses 'mrope' (or 'default')."
        )
    return rope, rw


def _check_vision_output(vision: dict[str, Any], hidden: int, path: Path) -> None:
    """The vision tower must read RGB and hand the language model tokens of its width."""
    out_hidden = typed(vision, "out_hidden_size", int, path, "vision_config", 3584)
    if out_hidden != hidden:
        raise CheckpointError(
            f"{path}: field vision_config.out_hidden_size ({out_hidden}) must equal the text hidden_size ({hidden})."
        )
    if typed(vision, "in_channels", int, path, "vision_config", 3) != 3:
        raise CheckpointError(f"{path}: field vision_config.in_channels must be 3 (RGB).")


def _text_fields(text: dict[str, Any], path: Path, tw: str) -> dict[str, Any]:
    """The language model's VLMConfig fields; absent optional ones take transformers 4.52's defaults."""
    return {
        "num_layers": typed(text, "num_hidden_layers", int, path, tw),
        "num_heads": typed(text, "num_attention_heads", int, path, tw),
        "num_kv_heads": typed(text, "num_key_value_heads", int, path, tw, 8),
        "intermediate_size": typed(text, "intermediate_size", int, path, tw),
        "vocab_size": typed(text, "vocab_size", int, path, tw),
        "rms_norm_eps": typed(text, "rms_norm_eps", float, path, tw, 1e-5),
        "hidden_act": typed(text, "hidden_act", str, path, tw, "silu"),
        "max_position_embeddings": typed(text, "max_position_embeddings", int, path, tw, 32768),
    }


def _vision_fields(vision: dict[str, Any], path: Path) -> dict[str, Any]:
    """The vision tower's VLMConfig fields (vision_config); absent optional ones take 4.52's defaults."""
    vw = "vision_config"
    return {
        "vision_depth": typed(vision, "depth", int, path, vw),
        "vision_hidden": typed(vision, "hidden_size", int, path, vw),
        "vision_heads": typed(vision, "num_heads", int, path, vw),
        "vision_intermediate": typed(vision, "intermediate_size", int, path, vw),
        "vision_hidden_act": typed(vision, "hidden_act", str, path, vw, "silu"),
        "patch_size": typed(vision, "patch_size", int, path, vw, 14),
        "spatial_merge_size": typed(vision, "spatial_merge_size", int, path, vw, 2),
        "temporal_patch_size": typed(vision, "temporal_patch_size", int, path, vw, 2),
        "tokens_per_second": typed(vision, "tokens_per_second", int, path, vw, 4),
        "window_size": typed(vision, "window_size", int, path, vw, 112),
        "fullatt_block_indexes": typed_ints(vision, "fullatt_block_indexes", path, vw, (7, 15, 23, 31)),
    }


def dit_sizes(am: dict[str, Any], state: dict[str, torch.Tensor], source: Path) -> tuple[int, int, int]:
    """(width, depth, heads) of the DiT: width and depth from the weights, heads from the preset.

    Upstream names the size by preset (framework.action_model.action_model_type, DiT-S/B/L). A name it
    does not know is refused, unless config.yaml also gives framework.action_model.num_heads (not an
    upstream field); a known preset whose sizes disagree with the weights is refused too."""
    where = "framework.action_model"
    preset = typed(am, "action_model_type", str, source, where)
    pos = state.get("action_model.net.positional_embedding")
    if pos is None or pos.ndim != 2:
        raise CheckpointError("The weights lack action_model.net.positional_embedding [tokens, width].")
    width = int(pos.shape[1])
    depth = len({int(m[1]) for k in state if (m := re.match(r"action_model\.net\.blocks\.(\d+)\.", k))})
    heads = typed(am, "num_heads", int, source, where, None)
    if preset in DIT_SIZES:
        p_width, p_depth, p_heads = DIT_SIZES[preset]
        if (width, depth) != (p_width, p_depth):
            raise CheckpointError(
                f"{source}: field {where}.action_model_type is {preset!r} (width {p_width}, depth {p_depth}), "
                f"but the weights hold a DiT of width {width} and depth {depth}: the config is not this run's."
            )
        heads = heads or p_heads
    elif heads is None:
        raise CheckpointError(
            f"{source}: field {where}.action_model_type {preset!r} is not one of upstream's presets "
            f"{sorted(DIT_SIZES)}. For a custom size add {where}.num_heads (width {width} and depth "
            f"{depth} are read from the weights)."
        )
    if heads <= 0 or width % heads:
        raise CheckpointError(f"{source}: field {where}.num_heads {heads} does not divide the width {width}.")
    return width, depth, heads


def config_from_upstream(
    yaml_cfg: dict[str, Any],
    state: dict[str, torch.Tensor],
    base: Path,
    name: str | None,
    source: Path = Path("config.yaml"),
) -> ST4VLAConfig:
    """Our config from upstream's config.yaml (`source`), the base VLM's config.json and the weights.

    Fields are read where upstream's code reads them: the query former's width from
    framework.layer_qformer.ouptput_dim (upstream's spelling), repeated_diffusion_steps from
    trainer.repeated_diffusion_steps, the DiT's sizes from its preset and the weights (dit_sizes)."""
    fw = typed(yaml_cfg, "framework", dict, source, "", {})
    qf = typed(fw, "layer_qformer", dict, source, "framework", {})
    am = typed(fw, "action_model", dict, source, "framework", {})
    datasets = typed(yaml_cfg, "datasets", dict, source, "", {})
    data = typed(datasets, "vla_data", dict, source, "datasets", {})
    trainer = typed(yaml_cfg, "trainer", dict, source, "", {})
    vlm = vlm_config_from_hf(base, name)
    width, depth, heads = dit_sizes(am, state, source)
    qformer = qformer_config(qf, state, source, width)
    # The DiT's positions are the query tokens, then the chunk: the weights decide its length.
    chunk = int(state["action_model.net.positional_embedding"].shape[0]) - qformer.num_queries
    image_size = _image_size(data)
    dino = dino_config_from_state(fw, state, source, image_size)
    prompt = typed(data, "CoT_prompt", str, source, "datasets.vla_data", None)
    return ST4VLAConfig(
        vlm=vlm,
        qformer=qformer,
        action=ActionConfig(
            width=width,
            depth=depth,
            num_heads=heads,
            chunk_length=chunk,
            action_dim=typed(am, "action_dim", int, source, "framework.action_model", 7),
            repeated_diffusion_steps=typed(trainer, "repeated_diffusion_steps", int, source, "trainer", 4),
        ),
        dino=dino,
        image_size=image_size,
        spatial_prompt=prompt or ST4VLAConfig().spatial_prompt,
        use_spatial_prompt=prompt is not None,
        notes={"source": "upstream run dir", "base_model": name},
    )


def qformer_config(
    qf: dict[str, Any], state: dict[str, torch.Tensor], source: Path, dit_width: int
) -> QFormerConfig:
    """The query former (framework.layer_qformer): its query count from the DiT's uncondition token
    (else num_query_tokens), its width from ouptput_dim checked against the weights (else the weights'
    projection, else the DiT's width), its layers from qformer_start_layer / qformer_end_layer."""
    where = "framework.layer_qformer"
    unc = state.get("action_model.net.z_embedder.uncondition")
    n_queries = (
        int(unc.shape[0]) if unc is not None else typed(qf, "num_query_tokens", int, source, where, 64)
    )
    proj = state.get("layer_qformer.proj.weight")
    width = typed(qf, "ouptput_dim", int, source, where, None)
    if width is None:
        width = int(proj.shape[0]) if proj is not None else dit_width
    elif proj is not None and int(proj.shape[0]) != width:
        raise CheckpointError(
            f"{source}: field {where}.ouptput_dim is {width}, but the weights' query former "
            f"projects to {int(proj.shape[0])}: the config is not this run's."
        )
    start = typed(qf, "qformer_start_layer", int, source, where, None)
    end = typed(qf, "qformer_end_layer", int, source, where, None)
    layers = (start, end) if start is not None and end is not None else None
    return QFormerConfig(width=width, num_queries=n_queries, layer_range=layers)


def _image_size(data: dict[str, Any]) -> int:
    """The frame size: datasets.vla_data.default_image_resolution [C, H, W], else upstream's 224."""
    res = data.get("default_image_resolution")
    if isinstance(res, list | tuple) and len(res) == 3:
        return int(res[1])
    return 224


def dino_config_from_state(
    fw: dict[str, Any], state: dict[str, torch.Tensor], source: Path, image_size: int
) -> DinoConfig:
    """The DINOv2 branch's sizes from the weights; only the head count comes from the backbone's name."""
    dino_keys = [k for k in state if k.startswith("dino_encoder.body.")]
    if not dino_keys:
        return DinoConfig(enabled=False)
    dino_cfg = typed(fw, "dino", dict, source, "framework", {})
    backbone = typed(dino_cfg, "dino_backbone", str, source, "framework.dino", "dinov2_vits14")
    if backbone not in DINO_SIZES:
        raise CheckpointError(
            f"{source}: field framework.dino.dino_backbone {backbone!r} is not one of {sorted(DINO_SIZES)}."
        )
    _, layers, heads = DINO_SIZES[backbone]
    blocks = {int(m[1]) for k in dino_keys if (m := re.search(r"\.layer\.(\d+)\.", k))}
    patch = state["dino_encoder.body.embeddings.patch_embeddings.projection.weight"]
    grid = math.isqrt(state["dino_encoder.body.embeddings.position_embeddings"].shape[1] - 1)
    return DinoConfig(
        enabled=True,
        hidden_size=int(patch.shape[0]),
        num_layers=len(blocks) or layers,
        num_heads=heads,
        patch_size=int(patch.shape[-1]),
        pos_embed_size=grid * int(patch.shape[-1]),
        image_size=image_size,  # upstream resizes DINO inputs to the VLA image size (224)
    )
