"""The ST4VLA model (InternVLA-M1): Qwen2.5-VL -> query former -> DiT action expert.

Module and parameter names follow upstream, so an upstream state dict loads key for key:
    qwen_vl_interface.model.*                       transformers' Qwen2_5_VLForConditionalGeneration
    layer_qformer.{proj, query_tokens, layers.0}.*  LayerwiseQFormer
    action_model.net.{x_embedder, t_embedder, z_embedder(.uncondition), history_embedder,
                      positional_embedding, blocks.*, final_layer}.*   DiT
    dino_encoder.body.*, dino_pro.*                 optional DINOv2 branch (transformers' Dinov2Model
                                                    with the hub model's position-grid resize;
                                                    upstream_run.py maps torch.hub names onto it)
Shapes: B batch, L VLM tokens, Q queries, W width, T chunk length, D action dim.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Dinov2Config, Dinov2Model, PreTrainedTokenizerFast
from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings

from workbench.policy.configuration import ST4VLAConfig
from workbench.policy.diffusion import GaussianDiffusion
from workbench.policy.vlm import QwenVLInterface, answer_mean_loss

# ------------------------------------------------------------------------------------------------
# Query former (upstream LayerwiseQFormer)
# ------------------------------------------------------------------------------------------------


class CrossAttentionBlock(nn.Module):
    """Queries read the VLM tokens: LN -> MHA -> residual; LN -> MLP(x4, GELU) -> dropout -> residual."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.1):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.cross_attn = nn.MultiheadAttention(width, num_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
        self.dropout = nn.Dropout(dropout)

    def forward(self, query, memory, key_padding_mask=None, need_weights=False):
        # query [B, Q, W], memory [B, L, W]; key_padding_mask [B, L] True = ignore (PyTorch convention).
        # Note: keys/values are the memory itself (not normalised), as upstream.
        attn, weights = self.cross_attn(
            self.norm1(query), memory, memory, key_padding_mask=key_padding_mask, need_weights=need_weights
        )
        query = query + attn
        query = query + self.dropout(self.mlp(self.norm2(query)))
        return query, weights  # weights [B, Q, L] averaged over heads, or None


class LayerwiseQFormer(nn.Module):
    def __init__(self, input_dim: int, width: int, num_queries: int, num_layers: int, num_heads: int, **kw):
        super().__init__()
        self.proj = nn.Linear(input_dim, width)
        self.query_tokens = nn.Parameter(torch.randn(num_queries, width))
        self.layers = nn.ModuleList([CrossAttentionBlock(width, num_heads, **kw) for _ in range(num_layers)])

    def forward(self, hidden_states: list[torch.Tensor], key_padding_mask=None, need_weights=False):
        """hidden_states: one [B, L, input_dim] tensor per block -> queries [B, Q, W], attention list."""
        if len(hidden_states) != len(self.layers):
            raise ValueError(f"Expected {len(self.layers)} hidden-state layers, got {len(hidden_states)}.")
        query = self.query_tokens.unsqueeze(0).expand(hidden_states[0].shape[0], -1, -1)  # [B, Q, W]
        maps = []
        for layer, hs in zip(self.layers, hidden_states, strict=True):
            query, w = layer(query, self.proj(hs), key_padding_mask, need_weights)  # proj: [B, L, W]
            maps.append(w)
        return query, maps


# ------------------------------------------------------------------------------------------------
# DiT action expert (upstream DiT_modules/models.py, CogACT lineage)
# ------------------------------------------------------------------------------------------------


class TimestepEmbedder(nn.Module):
    def __init__(self, width: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2  # sinusoidal features: [cos, sin] of t * 10000^(-k/half)
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # [B, freq_dim]
        return self.mlp(emb.to(self.mlp[0].weight.dtype))  # [B, W]


class Linear1(nn.Module):
    """A Linear under the attribute name `linear` (upstream's ActionEmbedder / HistoryEmbedder)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)

    def forward(self, x):
        return self.linear(x)


class ConditionEmbedder(nn.Module):
    """Upstream LabelEmbedder: Linear on the query tokens, with a learned `uncondition` for CFG."""

    def __init__(self, width: int, num_queries: int, dropout_prob: float):
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.dropout_prob = dropout_prob
        self.uncondition = nn.Parameter(torch.empty(num_queries, width))  # [Q, W]

    def forward(self, z: torch.Tensor, train: bool) -> torch.Tensor:
        if train and self.dropout_prob > 0:  # class dropout: whole samples become unconditional
            drop = torch.rand(z.shape[0], device=z.device) < self.dropout_prob
            z = torch.where(drop[:, None, None], self.uncondition.to(z.dtype), z)
        return self.linear(z)


class StateEmbedder(nn.Module):
    """Not upstream: the robot state [B, S] -> one condition token [B, W] (optional, see ActionConfig)."""

    def __init__(self, state_dim: int, width: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(state_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.mlp(state)


class Attention(nn.Module):
    """timm-style self-attention: fused qkv (with bias) and an output projection."""

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x):
        B, N, W = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, W // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # [B, H, N, W/H]
        return self.proj(out.transpose(1, 2).reshape(B, N, W))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    """Pre-LN self-attention block (no adaLN: the condition enters as tokens)."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(width, num_heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class FinalLayer(nn.Module):
    def __init__(self, width: int, out_dim: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(width, out_dim)

    def forward(self, x):
        return self.linear(self.norm_final(x))


class DiT(nn.Module):
    def __init__(self, cfg: ST4VLAConfig):
        super().__init__()
        a, q = cfg.action, cfg.qformer
        self.state_dim = a.state_dim
        self.num_cond = q.num_queries + (1 if a.state_dim else 0)  # query tokens (+ the state token)
        self.x_embedder = Linear1(a.action_dim, a.width)
        self.history_embedder = Linear1(a.action_dim, a.width)  # unused upstream too; kept for its keys
        self.t_embedder = TimestepEmbedder(a.width)
        self.z_embedder = ConditionEmbedder(a.width, q.num_queries, a.class_dropout)
        if a.state_dim:
            self.state_embedder = StateEmbedder(a.state_dim, a.width)
        self.positional_embedding = nn.Parameter(
            a.width**-0.5 * torch.randn(self.num_cond + a.chunk_length, a.width)
        )
        self.blocks = nn.ModuleList([DiTBlock(a.width, a.num_heads, a.mlp_ratio) for _ in range(a.depth)])
        self.final_layer = FinalLayer(a.width, a.action_dim)
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for lin in (self.x_embedder.linear, self.history_embedder.linear, self.z_embedder.linear):
            nn.init.normal_(lin.weight, std=0.02)
        nn.init.normal_(self.z_embedder.uncondition, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        nn.init.zeros_(self.final_layer.linear.weight)  # the head starts by predicting zero noise
        nn.init.zeros_(self.final_layer.linear.bias)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor, state: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x [B, T, D] noisy actions, t [B], z [B, Q, W] query tokens, state [B, S] (only when the
        model reads it) -> predicted noise [B, T, D]."""
        te = self.t_embedder(t).unsqueeze(1)  # [B, 1, W]
        c = te + self.z_embedder(z, self.training)  # [B, Q, W]
        if self.state_dim:
            if state is None:
                raise ValueError(f"This action expert reads the robot state ({self.state_dim} values).")
            c = torch.cat([c, te + self.state_embedder(state.to(c.dtype)).unsqueeze(1)], dim=1)  # [B, Q+1, W]
        h = torch.cat([c, self.x_embedder(x)], dim=1) + self.positional_embedding  # [B, C+T, W]
        for block in self.blocks:
            h = block(h)
        return self.final_layer(h)[:, self.num_cond :]  # the last T tokens: [B, T, D]

    def forward_with_cfg(self, x, t, z_cond, cfg_scale: float, state: torch.Tensor | None = None):
        """eps = eps_uncond + s (eps_cond - eps_uncond), the two passes batched as upstream.
        Guidance is on the VLM's condition only: the state token is in both passes."""
        B = x.shape[0]
        uncond = self.z_embedder.uncondition.unsqueeze(0).expand(B, -1, -1).to(z_cond.dtype)
        both = None if state is None else torch.cat([state, state])
        eps = self(torch.cat([x, x]), torch.cat([t, t]), torch.cat([z_cond, uncond]), both)  # [2B, T, D]
        cond_eps, uncond_eps = eps[:B], eps[B:]
        return uncond_eps + cfg_scale * (cond_eps - uncond_eps)


class ActionModel(nn.Module):
    """Upstream ActionModel: `net` (the DiT) plus its diffusion schedule."""

    def __init__(self, cfg: ST4VLAConfig):
        super().__init__()
        self.net = DiT(cfg)
        self.diffusion = GaussianDiffusion(cfg.action.diffusion_steps, cfg.action.noise_schedule)

    def loss(
        self, actions: torch.Tensor, cond: torch.Tensor, state: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Epsilon-prediction MSE at a random timestep per sample. actions [B,T,D], cond [B,Q,W], state [B,S]."""
        noise = torch.randn_like(actions)
        t = torch.randint(0, self.diffusion.num_timesteps, (actions.shape[0],), device=actions.device)
        pred = self.net(self.diffusion.q_sample(actions, t, noise), t, cond, state)
        return F.mse_loss(pred, noise)


# ------------------------------------------------------------------------------------------------
# DINOv2 branch
# ------------------------------------------------------------------------------------------------

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class HubDinov2Embeddings(Dinov2Embeddings):
    """transformers' DINOv2 embeddings with the position grid resized as torch.hub's dinov2 does.

    The hub model (facebookresearch/dinov2, `DinoVisionTransformer.interpolate_pos_encoding`) resizes
    its M x M grid (37 x 37 for the 518 px models) to the input's h0 x w0 patch grid with
    `scale_factor=((h0 + offset) / M, (w0 + offset) / M)`, bicubic, antialias off, in float32. With a
    scale factor PyTorch samples the source at (i + 0.5) / scale - 0.5, not at the spacing the output
    size gives, so the tokens differ from transformers' `size=(h0, w0)` resize (by more than 1 at
    unit-scale weights). The grid is used as is when it already has the input's patch count and the
    input is square (as the hub model). Parameters and their names are transformers' own.
    """

    def __init__(self, config: Dinov2Config, offset: float, antialias: bool):
        super().__init__(config)
        self.offset = offset
        self.antialias = antialias

    def interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
        num_patches = embeddings.shape[1] - 1
        pos = self.position_embeddings  # [1, 1 + M*M, C]
        grid = pos.shape[1] - 1
        if num_patches == grid and height == width:
            return pos
        side = math.isqrt(grid)
        if side * side != grid:
            raise ValueError(f"DINOv2 position grid of {grid} entries is not square.")
        dim = pos.shape[-1]
        h0, w0 = height // self.patch_size, width // self.patch_size
        patch = pos[:, 1:].float().reshape(1, side, side, dim).permute(0, 3, 1, 2)  # [1, C, M, M]
        if self.offset:
            resize = {"scale_factor": ((h0 + self.offset) / side, (w0 + self.offset) / side)}
        else:
            resize = {"size": (h0, w0)}
        patch = F.interpolate(patch, mode="bicubic", antialias=self.antialias, **resize)  # [1, C, h0, w0]
        if tuple(patch.shape[-2:]) != (h0, w0):
            raise ValueError(f"DINOv2 position grid resized to {tuple(patch.shape[-2:])}, not {(h0, w0)}.")
        patch = patch.permute(0, 2, 3, 1).reshape(1, h0 * w0, dim)  # [1, h0*w0, C]
        return torch.cat([pos[:, :1].float(), patch], dim=1).to(pos.dtype)


class DinoEncoder(nn.Module):
    """Upstream DINOBackBone: `body` is the ViT; outputs normalised patch tokens [B*views, N, C].

    `body` is transformers' Dinov2Model whose embeddings resize the position grid as the hub model
    (HubDinov2Embeddings)."""

    def __init__(self, cfg: ST4VLAConfig):
        super().__init__()
        d = cfg.dino
        self.image_size = d.image_size
        config = Dinov2Config(
            hidden_size=d.hidden_size,
            num_hidden_layers=d.num_layers,
            num_attention_heads=d.num_heads,
            patch_size=d.patch_size,
            image_size=d.pos_embed_size,
            layerscale_value=1.0,
        )
        self.body = Dinov2Model(config)
        embeddings = HubDinov2Embeddings(config, d.interpolate_offset, d.interpolate_antialias)
        embeddings.load_state_dict(self.body.embeddings.state_dict())  # keep transformers' init
        self.body.embeddings = embeddings
        self.num_channels = d.hidden_size

    def prepare(self, images: list[list[np.ndarray]]) -> torch.Tensor:
        """[H, W, 3] uint8 views -> [B*views, 3, S, S] ImageNet-normalised floats."""
        import cv2

        flat = []
        for views in images:
            for img in views:
                img = cv2.resize(img, (self.image_size, self.image_size), interpolation=cv2.INTER_CUBIC)
                flat.append((img.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD)
        x = torch.from_numpy(np.stack(flat)).permute(0, 3, 1, 2)
        return x.to(next(self.parameters()).dtype)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.body(pixel_values=pixels).last_hidden_state[:, 1:]  # drop CLS: [B*V, N, C]


# ------------------------------------------------------------------------------------------------
# The whole model
# ------------------------------------------------------------------------------------------------


class ST4VLAModel(nn.Module):
    def __init__(self, config: ST4VLAConfig, tokenizer: PreTrainedTokenizerFast):
        super().__init__()
        self.config = config
        self.qwen_vl_interface = QwenVLInterface(config, tokenizer)
        lo, hi = config.qformer_layers
        q = config.qformer
        self.layer_qformer = LayerwiseQFormer(
            config.vlm.hidden_size, q.width, q.num_queries, hi - lo, q.num_heads, mlp_ratio=q.mlp_ratio,
            dropout=q.dropout,
        )  # fmt: skip
        self.action_model = ActionModel(config)
        if config.dino.enabled:
            self.dino_encoder = DinoEncoder(config)
            self.dino_pro = nn.Linear(config.dino.hidden_size, config.vlm.hidden_size)

    # --- pieces used by training and by the policy -----------------------------------------------
    def vlm_hidden_states(self, inputs: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], object]:
        """The chosen hidden layers for the query former ([B, L, hidden] each) and the raw output."""
        out = self.qwen_vl_interface(inputs, output_hidden_states=True)
        lo, hi = self.config.qformer_layers
        return list(out.hidden_states[lo:hi]), out

    def condition(
        self,
        inputs: dict[str, torch.Tensor],
        images: list[list[np.ndarray]] | None = None,
        need_weights: bool = False,
        timer: Callable[[str], object] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """VLM (+ DINO) -> query former. Returns queries [B, Q, W] and per-layer attention [B, Q, L']."""
        with _stage(timer, "vlm_forward"):
            layers, _ = self.vlm_hidden_states(inputs)
        mask = inputs["attention_mask"]  # [B, L], 1 = token
        if self.config.dino.enabled:
            if images is None:
                raise ValueError("This model has a DINOv2 branch: pass the images to condition().")
            with _stage(timer, "dino_forward"):
                feats = self.dino_encoder(self.dino_encoder.prepare(images))  # [B*V, N, C]
                feats = self.dino_pro(feats.reshape(len(images), -1, feats.shape[-1]))  # [B, V*N, hidden]
            layers = [torch.cat([h, feats.to(h.dtype)], dim=1) for h in layers]  # [B, L + V*N, hidden]
            mask = torch.cat([mask, mask.new_ones(feats.shape[:2])], dim=1)
        key_padding = (mask == 0) if self.config.qformer.masked else None
        with _stage(timer, "query_former"):
            cond, maps = self.layer_qformer(layers, key_padding_mask=key_padding, need_weights=need_weights)
        return cond, maps

    def action_loss(
        self, actions: torch.Tensor, cond: torch.Tensor, state: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Diffusion loss with upstream's repeated_diffusion_steps (each sample seen at r timesteps)."""
        r = self.config.action.repeated_diffusion_steps
        state = None if state is None else state.repeat(r, 1)
        return self.action_model.loss(actions.repeat(r, 1, 1), cond.repeat(r, 1, 1), state)

    def grounding_loss(self, inputs: dict[str, torch.Tensor], per_answer: bool = False) -> torch.Tensor:
        """Next-token loss on answer tokens only (inputs from build_inputs(..., answers=...)).

        By default the mean over every answer token of the batch (transformers' loss, as upstream).
        `per_answer` takes each answer's mean first, then the batch mean: a three-token "Yes" then
        weighs as much as a 26-token box, instead of a ninth as much.
        """
        if "labels" not in inputs:
            raise ValueError("grounding_loss needs `labels`: build the batch with answers=[...].")
        if not per_answer:
            return self.qwen_vl_interface(inputs, output_hidden_states=False).loss
        labels = inputs["labels"]
        unlabelled = {k: v for k, v in inputs.items() if k != "labels"}
        logits = self.qwen_vl_interface(unlabelled, output_hidden_states=False).logits
        return answer_mean_loss(logits, labels)

    @torch.no_grad()
    def sample_actions(
        self,
        cond: torch.Tensor,
        noise: torch.Tensor,
        num_ddim_steps: int = 10,
        cfg_scale: float = 1.5,
        on_step: Callable[[int, torch.Tensor], None] | None = None,
        state: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """DDIM from noise [B, T, D] to normalised actions [B, T, D]; CFG when cfg_scale > 1 (upstream)."""
        net = self.action_model.net
        cond = cond.to(noise.dtype)
        if cfg_scale > 1.0:

            def eps_fn(x, t):
                return net.forward_with_cfg(x, t, cond, cfg_scale, state)
        else:

            def eps_fn(x, t):
                return net(x, t, cond, state)

        return self.action_model.diffusion.ddim_sample(eps_fn, noise, num_ddim_steps, on_step)


class _stage:
    """Context manager that reports a stage to an optional timer (policy timings)."""

    def __init__(self, timer, name):
        self.ctx = timer(name) if timer is not None else None

    def __enter__(self):
        return self.ctx.__enter__() if self.ctx is not None else None

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc) if self.ctx is not None else False
