"""Configuration of the ST4VLA (InternVLA-M1) model: plain dataclasses, saved as config.json.

`internvla_m1_config()` gives the released sizes (Qwen2.5-VL-3B, 64 queries of width 768, DiT-B);
`tiny_config(...)` gives small models for tests and the CPU-trained demo checkpoints, with every size
a keyword argument.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.policy.prompts import SPATIAL_PROMPT


@dataclass
class VLMConfig:
    """Qwen2.5-VL sizes (defaults: Qwen2.5-VL-3B-Instruct)."""

    hidden_size: int = 2048
    num_layers: int = 36
    num_heads: int = 16
    num_kv_heads: int = 2
    intermediate_size: int = 11008
    vocab_size: int = 151936
    rms_norm_eps: float = 1e-6  # Qwen2.5-VL's config.json (transformers' class default is 1e-5)
    hidden_act: str = "silu"
    rope_theta: float = 1_000_000.0
    # M-RoPE split of the rotary half-dim (temporal, height, width); None = Qwen2.5-VL's 1:1.5:1.5 rule.
    mrope: tuple[int, ...] | None = None
    max_position_embeddings: int = 128000
    tie_word_embeddings: bool = True
    vision_depth: int = 32
    vision_hidden: int = 1280
    vision_heads: int = 16
    vision_intermediate: int = 3420
    patch_size: int = 14
    spatial_merge_size: int = 2
    temporal_patch_size: int = 2
    window_size: int = 112
    fullatt_block_indexes: tuple[int, ...] = (7, 15, 23, 31)
    vision_hidden_act: str = "silu"
    tokens_per_second: int = 2  # video M-RoPE only; carried so the VLM config is the base model's
    base_model: str | None = None  # upstream `framework.qwenvl.base_vlm`, for the record only
    # Put the user turn's text before its images. Upstream (and Qwen2.5-VL's examples) put the image
    # first, so under the causal mask the visual tokens never see the question. With the text first,
    # each visual token can weigh itself against the named object; the CPU demo models learn to choose
    # the named object this way (research/training-notes.md, note 10). Upstream checkpoints: False.
    text_first: bool = False

    @property
    def mrope_section(self) -> list[int]:
        if self.mrope:
            return list(self.mrope)
        # Qwen2.5-VL splits the rotary half-dim as temporal:height:width = 1:1.5:1.5 ([16,24,24] at 128).
        half = (self.hidden_size // self.num_heads) // 2
        hw = (half - half // 4) // 2
        return [half - 2 * hw, hw, hw]


@dataclass
class QFormerConfig:
    """Upstream LayerwiseQFormer: one cross-attention block per chosen VLM layer."""

    width: int = 768
    num_queries: int = 64
    num_heads: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    # Half-open range of `hidden_states` indices (0 = embeddings); None = the last layer only,
    # as upstream's qformer_start_layer=36, qformer_end_layer=37 for the 36-layer VLM.
    layer_range: tuple[int, int] | None = None
    masked: bool = False  # upstream passes no mask; True masks padding tokens out of the keys


@dataclass
class ActionConfig:
    """DiT action expert and its diffusion (defaults: DiT-B, chunk 16, 7-D actions)."""

    width: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    chunk_length: int = 16  # future_action_window_size + 1
    action_dim: int = 7
    diffusion_steps: int = 100
    noise_schedule: str = "squaredcos_cap_v2"
    class_dropout: float = 0.1
    repeated_diffusion_steps: int = 4
    # Proprioception as one extra condition token (the robot state, normalised like the actions).
    # 0 = off, as upstream's DiT, which reads only the query tokens; upstream checkpoints load with 0.
    state_dim: int = 0


@dataclass
class DinoConfig:
    """Optional DINOv2 branch (upstream: dinov2_vits14 in the repo yamls, vitl14 for LIBERO)."""

    enabled: bool = False
    hidden_size: int = 384
    num_layers: int = 12
    num_heads: int = 6
    patch_size: int = 14
    image_size: int = 224  # input resolution (upstream resizes to 224: 16x16 = 256 tokens/view)
    pos_embed_size: int = 518  # the hub models' position-embedding grid (37x37), interpolated
    # How the grid is resized to the input's patch grid, as torch.hub's dinov2 does it: bicubic with
    # scale_factor (n + offset) / grid (offset 0.1, its "historical kludge"), no antialias. Offset 0
    # resizes to the target size instead (transformers' Dinov2Model does that).
    interpolate_offset: float = 0.1
    interpolate_antialias: bool = False


LEGACY_RMS_NORM_EPS = 1e-5  # what a saved config without vlm.rms_norm_eps was built with
ANSWER_POINTS = 4  # answer_points: source centre (x, y), target centre (x, y)
TCP_POSITION = 3  # state_tcp: the TCP's x, y, z


def reads_tcp(policy: Any) -> bool:
    """Whether `policy.act` needs `tcp_pose=` (ST4VLAConfig.state_tcp). Other policies (remote, random,
    wrappers without a config) do not take the keyword, so callers pass it only when this is true."""
    return bool(getattr(getattr(policy, "config", None), "state_tcp", False))


@dataclass
class ST4VLAConfig:
    vlm: VLMConfig = field(default_factory=VLMConfig)
    qformer: QFormerConfig = field(default_factory=QFormerConfig)
    action: ActionConfig = field(default_factory=ActionConfig)
    dino: DinoConfig = field(default_factory=DinoConfig)
    image_size: int = 224  # model input frame (upstream: cv2.resize to 224x224, INTER_AREA)
    spatial_prompt: str = SPATIAL_PROMPT
    use_spatial_prompt: bool = True  # False = the vanilla baseline (plain instruction)
    # Not upstream: the VLM first answers the spatial prompt (greedy decoding) and the query former
    # reads the hidden states of the prompt AND of that answer, so the box the model wrote reaches the
    # action expert (research/training-notes.md, note 13). Upstream (False) runs one forward
    # pass over the prompt and never decodes at control time.
    condition_on_answer: bool = False
    # Not upstream: the explicit spatial prompt. The VLM answers the spatial prompt (greedy) and the
    # centres of the answer's first two boxes (source, then target) join the robot state the DiT reads,
    # as 4 numbers (ANSWER_POINTS); action.state_dim counts them. An oracle experiment showed this DiT
    # acts on points given as numbers, and probes that the hidden states do not carry them (notes 4, 12).
    answer_points: bool = False
    # Not upstream: the robot state the DiT reads is the joints followed by the TCP position (x, y, z in
    # the robot's base frame: SimplerEnv's obs["extra"]["tcp_pose"][:3]); action.state_dim counts it.
    # From the joints alone the DiT must learn the arm's forward kinematics to turn "the object is at
    # (u, v)" into a motion, and closed loop it stopped 2-3 cm beside the object (research/training-notes.md,
    # note 17).
    state_tcp: bool = False
    grounding_loss_weight: float = 0.1
    # Whether a training phase taught the VLM to write spatial answers (boxes, points, traces): stage 1
    # on spatial questions, or co-training on them. None: not recorded (checkpoints written before the
    # field), then a spatial prompt or a grounding loss is taken to mean it was (ST4VLAPolicy.trained_to_answer).
    spatial_answers: bool | None = None
    notes: dict[str, Any] = field(default_factory=dict)  # free-form (deviations, provenance)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def chunk_length(self) -> int:
        return self.action.chunk_length

    @property
    def action_dim(self) -> int:
        return self.action.action_dim

    @property
    def visual_tokens_per_view(self) -> int:
        grid = self.image_size // self.vlm.patch_size
        return (grid // self.vlm.spatial_merge_size) ** 2

    def validate(self) -> None:
        v = self.vlm
        factor = v.patch_size * v.spatial_merge_size
        if self.image_size % factor:
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of patch_size*spatial_merge_size = {factor}."
            )
        for name, dim, heads in [
            ("vlm", v.hidden_size, v.num_heads),
            ("vision", v.vision_hidden, v.vision_heads),
            ("qformer", self.qformer.width, self.qformer.num_heads),
            ("action", self.action.width, self.action.num_heads),
        ]:
            if dim % heads:
                raise ValueError(f"{name} width {dim} is not divisible by its {heads} heads.")
        if v.mrope and 2 * sum(v.mrope) != v.hidden_size // v.num_heads:
            raise ValueError(
                f"vlm.mrope {list(v.mrope)} must add up to half the head dim "
                f"({v.hidden_size // v.num_heads // 2})."
            )
        if self.qformer.width != self.action.width:
            # Upstream's DiT embeds the query tokens with z_embedder: Linear(token_size -> token_size).
            raise ValueError(
                f"qformer.width ({self.qformer.width}) must equal action.width ({self.action.width})."
            )
        if v.num_heads % v.num_kv_heads:
            raise ValueError(
                f"vlm num_heads {v.num_heads} must be a multiple of num_kv_heads {v.num_kv_heads}."
            )
        if self.qformer.layer_range is not None:
            lo, hi = self.qformer.layer_range
            if not 0 <= lo < hi <= v.num_layers + 1:
                raise ValueError(
                    f"qformer.layer_range {self.qformer.layer_range} outside 0..{v.num_layers + 1}."
                )
        if self.condition_on_answer and not self.use_spatial_prompt:
            raise ValueError("condition_on_answer needs the spatial prompt: there is no answer without it.")
        if self.answer_points and not self.use_spatial_prompt:
            raise ValueError("answer_points needs the spatial prompt: there is no answer without it.")
        if self.answer_points and self.action.state_dim < ANSWER_POINTS:
            raise ValueError(
                f"answer_points needs action.state_dim >= {ANSWER_POINTS} (the robot state plus the "
                f"{ANSWER_POINTS} answer coordinates), got {self.action.state_dim}."
            )

        if self.state_tcp and self.robot_state_dim <= TCP_POSITION:
            raise ValueError(
                f"state_tcp needs a robot state of the joints plus the {TCP_POSITION} TCP coordinates, "
                f"but action.state_dim leaves {self.robot_state_dim} for the robot."
            )

    @property
    def robot_state_dim(self) -> int:
        """The robot state's share of action.state_dim (the rest are the answer's points); with
        state_tcp it ends with the TCP position."""
        return self.action.state_dim - (ANSWER_POINTS if self.answer_points else 0)

    @property
    def reads_answer(self) -> bool:
        """Whether acting needs the model's own answer to the spatial prompt first."""
        return self.condition_on_answer or self.answer_points

    @property
    def qformer_layers(self) -> tuple[int, int]:
        return self.qformer.layer_range or (self.vlm.num_layers, self.vlm.num_layers + 1)

    # --- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ST4VLAConfig:
        data = dict(data)
        parts = {"vlm": VLMConfig, "qformer": QFormerConfig, "action": ActionConfig, "dino": DinoConfig}
        kwargs: dict[str, Any] = {}
        for key, sub in parts.items():
            raw = dict(data.pop(key, {}))
            if key == "vlm":
                # Configs written before the field existed were built with transformers' default.
                raw.setdefault("rms_norm_eps", LEGACY_RMS_NORM_EPS)
            known = {f.name for f in dataclasses.fields(sub)}
            unknown = set(raw) - known
            if unknown:
                raise ValueError(f"Unknown {key} config keys {sorted(unknown)}; known: {sorted(known)}.")
            for f in dataclasses.fields(sub):  # JSON turns tuples into lists
                if f.name in raw and isinstance(raw[f.name], list):
                    raw[f.name] = tuple(raw[f.name])
            kwargs[key] = sub(**raw)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown config keys {sorted(unknown)}; known: {sorted(known)}.")
        return cls(**kwargs, **data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> ST4VLAConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


def internvla_m1_config(*, dino: bool = False, chunk_length: int = 16) -> ST4VLAConfig:
    """The released model's sizes: Qwen2.5-VL-3B, QFormer 64x768 (8 heads) on the last layer, DiT-B."""
    return ST4VLAConfig(
        vlm=VLMConfig(base_model="Qwen/Qwen2.5-VL-3B-Instruct"),
        qformer=QFormerConfig(),
        action=ActionConfig(chunk_length=chunk_length),
        dino=DinoConfig(enabled=dino),
    )


def tiny_config(
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int | None = None,
    vocab_size: int = 2048,
    vision_depth: int = 2,
    vision_hidden: int = 64,
    vision_heads: int = 2,
    image_size: int = 112,
    patch_size: int = 14,
    spatial_merge_size: int = 2,
    num_queries: int = 8,
    qformer_width: int | None = None,
    qformer_heads: int = 8,
    dit_width: int = 64,
    dit_depth: int = 2,
    dit_heads: int = 4,
    chunk_length: int = 8,
    action_dim: int = 7,
    dino: bool = False,
    dino_hidden: int = 32,
    dino_layers: int = 1,
    dino_heads: int = 2,
) -> ST4VLAConfig:
    """A small model of the same architecture; every size is a knob (tests, CPU demo checkpoints).

    The vision tower uses full attention in every block (its windows would span the whole image at
    these sizes anyway). `vocab_size` is raised to the tokenizer's length when the model is built.
    """
    vlm = VLMConfig(
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        intermediate_size=intermediate_size or 4 * hidden_size,
        vocab_size=vocab_size,
        patch_size=patch_size,
        spatial_merge_size=spatial_merge_size,
        **_tiny_vision(vision_depth, vision_hidden, vision_heads, image_size),
    )
    qformer = QFormerConfig(
        width=qformer_width or dit_width, num_queries=num_queries, num_heads=qformer_heads
    )
    action = ActionConfig(
        width=dit_width,
        depth=dit_depth,
        num_heads=dit_heads,
        chunk_length=chunk_length,
        action_dim=action_dim,
    )
    dino_config = _tiny_dino(dino, dino_hidden, dino_layers, dino_heads, image_size)
    return ST4VLAConfig(vlm=vlm, qformer=qformer, action=action, dino=dino_config, image_size=image_size)


def _tiny_vision(depth: int, hidden: int, heads: int, image_size: int) -> dict[str, Any]:
    """The tiny VLM's vision-tower fields: full attention in every block (one window spans the image)."""
    return {
        "vision_depth": depth,
        "vision_hidden": hidden,
        "vision_heads": heads,
        "vision_intermediate": 2 * hidden,
        "window_size": image_size,
        "fullatt_block_indexes": tuple(range(depth)),
        "max_position_embeddings": 4096,
        "tie_word_embeddings": True,
    }


def _tiny_dino(enabled: bool, hidden: int, layers: int, heads: int, image_size: int) -> DinoConfig:
    """A tiny DINOv2 branch whose position grid is the input's (no interpolation at its own size)."""
    return DinoConfig(
        enabled=enabled,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        image_size=image_size,
        pos_embed_size=image_size,
    )
