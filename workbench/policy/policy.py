"""ST4VLAPolicy: the one object the workbench talks to.

    policy = ST4VLAPolicy.load("assets/checkpoints/st4vla-demo")      # or an upstream run dir
    answer = policy.spatial([image], "put the carrot on the plate")   # SpatialAnswer, original pixels
    chunk = policy.act([image], "put the carrot on the plate", seed=0, return_internals=True)

Images are [H, W, 3] uint8 arrays, one per view, at any size: they are resized to the model's frame
(cv2.INTER_AREA, as upstream's SimplerEnv client) and answers are mapped back to the original image.

`act` is upstream's path (prompt and views -> VLM -> query former -> DDIM -> unnormalise). What a
checkpoint reads beyond it (its own spatial answer, the robot state, the answer's points) is composed
around it as transforms chosen from the config (workbench/policy/extras.py; `policy.transforms`).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from workbench import spatial
from workbench.policy import checkpoint as ckpt
from workbench.policy import extras, upstream_run
from workbench.policy.configuration import ST4VLAConfig
from workbench.policy.decoding import AnswerDecoding
from workbench.policy.modeling import ST4VLAModel
from workbench.policy.normalization import ActionNormalizer, StateNormalizer
from workbench.policy.prompts import grounding_question
from workbench.policy.tokenizer import build_tokenizer, default_corpus, load_tokenizer
from workbench.records import ActionChunk
from workbench.spatial import Frame, SpatialAnswer


def neutral_statistics(action_dim: int = 7) -> dict[str, Any]:
    """Statistics under which unnormalising changes nothing but the gripper (binarised, as upstream)."""
    ones = [1.0] * action_dim
    action = {"q01": [-1.0] * action_dim, "q99": ones, "min": [-1.0] * action_dim, "max": ones,
              "mean": [0.0] * action_dim, "std": ones, "mask": [True] * (action_dim - 1) + [False]}  # fmt: skip
    return {"default": {"action": action, "num_transitions": 0, "num_trajectories": 0}}


class ST4VLAPolicy:
    def __init__(
        self,
        model: ST4VLAModel,
        statistics: dict[str, Any],
        *,
        unnorm_key: str | None = None,
        name: str = "st4vla",
        device: str = "cpu",
        transforms: extras.Transforms | None = None,
    ):
        self.model = model.to(device).eval()
        self.config: ST4VLAConfig = model.config
        self.name = name
        self.device = device
        # What the model reads besides upstream's prompt: given, or else what its config asks for now
        # (none for an upstream checkpoint; the `transforms` property reads the config afresh).
        self._transforms = transforms
        self.decoding = AnswerDecoding()  # how the spatial answer is decoded (default: greedy, upstream's)
        self.set_statistics(statistics, unnorm_key)

    def set_statistics(self, statistics: dict[str, Any], unnorm_key: str | None = None) -> None:
        """Use these dataset statistics (and key) to unnormalise actions and normalise the state."""
        key = select_unnorm_key(statistics, unnorm_key)
        normalizer = make_normalizer(statistics, key)
        state_normalizer = make_state_normalizer(statistics, key, self.config.robot_state_dim)
        self.statistics, self.unnorm_key = statistics, key
        self._normalizer, self._state_normalizer = normalizer, state_normalizer

    # --- construction ----------------------------------------------------------------------------
    @property
    def chunk_length(self) -> int:
        return self.config.chunk_length

    @property
    def action_dim(self) -> int:
        return self.config.action_dim

    @property
    def tokenizer(self):
        return self.model.qwen_vl_interface.tokenizer

    @property
    def transforms(self) -> extras.Transforms:
        """The steps around upstream's path: those given, else the ones the config asks for, derived
        from it on every call, so a config changed after loading (training phases do) is followed."""
        return extras.transforms_for(self.config) if self._transforms is None else self._transforms

    @transforms.setter
    def transforms(self, value: extras.Transforms | None) -> None:
        self._transforms = value  # None: follow the config again

    @classmethod
    def from_config(
        cls,
        config: ST4VLAConfig,
        tokenizer_dir: str | Path | None = None,
        statistics: dict | None = None,
        seed: int = 0,
        *,
        name: str = "st4vla-random",
        dtype: torch.dtype | None = None,
    ) -> ST4VLAPolicy:
        """A randomly initialised policy, built offline. Without statistics, neutral ones are used
        (actions stay in [-1, 1], gripper binarised) under the key "default". `dtype` (e.g.
        torch.bfloat16) builds the weights in that type directly (real sizes: half the memory)."""
        tokenizer = load_tokenizer(tokenizer_dir) if tokenizer_dir else build_tokenizer(default_corpus())
        torch.manual_seed(seed)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype or previous)
        try:
            model = ST4VLAModel(config, tokenizer)
        finally:
            torch.set_default_dtype(previous)
        return cls(model, statistics or neutral_statistics(config.action_dim), name=name)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        unnorm_key: str | None = None,
        device: str = "cpu",
        name: str | None = None,
        base_model_dir: str | Path | None = None,
    ) -> ST4VLAPolicy:
        """Load our format directory or an upstream run dir / .pt file (auto-detected)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"No checkpoint at {path}.")
        if ckpt.is_workbench_dir(path):
            config = ckpt.read_workbench_config(path)
            statistics = ckpt.read_statistics(path)
            select_unnorm_key(statistics, unnorm_key)  # fail before building the model
            model = ST4VLAModel(config, load_tokenizer(path))
            ckpt.load_state_strict(model, ckpt.load_safetensors(path / "model.safetensors"), str(path))
            return cls(model, statistics, unnorm_key=unnorm_key, name=name or path.name, device=device)
        run, weights = upstream_run.find_upstream_weights(path)
        yaml_cfg = upstream_run.read_upstream_yaml(run)
        statistics = ckpt.read_statistics(run)
        select_unnorm_key(statistics, unnorm_key)
        base_name = ((yaml_cfg.get("framework") or {}).get("qwenvl") or {}).get("base_vlm")
        base = upstream_run.resolve_base_model(base_name, base_model_dir)
        state = upstream_run.to_model_keys(upstream_run.load_torch_state(weights))
        config = upstream_run.config_from_upstream(yaml_cfg, state, base, base_name, run / "config.yaml")
        model = ST4VLAModel(config, load_tokenizer(base))
        ckpt.load_state_strict(model, state, str(weights))
        return cls(model, statistics, unnorm_key=unnorm_key, name=name or run.name, device=device)

    def save(self, path: str | Path, card: str | None = None) -> None:
        """Write our format: config, safetensors weights, statistics, tokenizer, image processor, card."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        data = {"format": ckpt.FORMAT, "format_version": 1, **self.config.to_dict()}
        (path / "config.json").write_text(json.dumps(data, indent=2))
        ckpt.save_state(self.model, path / "model.safetensors")
        (path / "dataset_statistics.json").write_text(json.dumps(self.statistics, indent=2))
        self.tokenizer.save_pretrained(str(path))
        self.model.qwen_vl_interface.image_processor.save_pretrained(str(path))
        (path / "README.md").write_text(card or self.default_card())

    def default_card(self) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        c = self.config
        return (
            f"# {self.name}\n\nST4VLA (InternVLA-M1 architecture) checkpoint in the st4vla-workbench format.\n\n"
            f"- parameters: {n / 1e6:.2f} M\n- VLM: Qwen2.5-VL, hidden {c.vlm.hidden_size}, {c.vlm.num_layers} layers\n"
            f"- query former: {c.qformer.num_queries} queries x {c.qformer.width}\n"
            f"- DiT: width {c.action.width}, depth {c.action.depth}; chunk {c.chunk_length} x {c.action_dim}\n"
            f"- image size: {c.image_size}; statistics keys: {sorted(self.statistics)}\n"
            f"- notes: {json.dumps(c.notes)}\n\nTraining and evaluation: not recorded for this checkpoint.\n"
        )

    # --- inputs ----------------------------------------------------------------------------------
    def prepare_images(self, images: list[np.ndarray]) -> tuple[list[np.ndarray], list[Frame]]:
        """Check and resize views to the model frame; returns resized views and one Frame per view."""
        if isinstance(images, np.ndarray):
            images = [images]
        if not images:
            raise ValueError("Give at least one image ([H, W, 3] uint8 array).")
        s = self.config.image_size
        out, frames = [], []
        for i, img in enumerate(images):
            if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
                shape = getattr(img, "shape", type(img).__name__)
                raise ValueError(f"Image {i} must be an [H, W, 3] array, got {shape}.")
            if img.dtype != np.uint8:
                raise ValueError(f"Image {i} must be uint8 (0..255), got {img.dtype}; convert it first.")
            h, w = img.shape[:2]
            resized = img if (h, w) == (s, s) else cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA)
            out.append(np.ascontiguousarray(resized))
            frames.append(Frame(width=s, height=s, orig_width=w, orig_height=h))
        return out, frames

    def prompt(self, instruction: str) -> str:
        """What the VLM reads at control time: the spatial prompt around the lower-cased instruction."""
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("The instruction must be a non-empty string.")
        if not self.config.use_spatial_prompt:
            return instruction.lower()
        return self.config.spatial_prompt.replace("{instruction}", instruction.lower())

    # --- the spatial answer ----------------------------------------------------------------------
    def spatial(
        self, images: list[np.ndarray], instruction: str, query: str = "box", max_new_tokens: int = 128
    ) -> SpatialAnswer:
        """Greedy-decode an answer to a grounding question; geometry in the ORIGINAL first view's pixels."""
        views, frames = self.prepare_images(images)
        question = grounding_question(query, instruction)
        vlm = self.model.qwen_vl_interface
        t0 = time.perf_counter()
        inputs = vlm.build_inputs([views], [question])
        refine = self.decoding.refine_radius
        text = vlm.generate(inputs, max_new_tokens=max_new_tokens, refine_radius=refine)[0]
        answer = answer_from_text(text, frames[0])
        self.last_spatial_seconds = time.perf_counter() - t0
        return answer

    @property
    def trained_to_answer(self) -> bool:
        """Whether a training phase taught the model to write a spatial answer (config.spatial_answers).
        Where that is not recorded, a model with neither a grounding loss nor a spatial prompt was not:
        asked the grounding question, such a model writes only tokens that print as nothing."""
        if self.config.spatial_answers is not None:
            return self.config.spatial_answers
        return self.config.grounding_loss_weight != 0 or self.config.use_spatial_prompt

    @property
    def acts_on_its_box_answer(self) -> bool:
        """Whether act() first answers exactly the "box" grounding question (its spatial prompt): then
        `read_answer(images, chunk.answer)` is that answer, with no second decode."""
        return self.transforms.reads_answer and self.prompt("x") == grounding_question("box", "x")

    def read_answer(self, images: list[np.ndarray], text: str) -> SpatialAnswer:
        """Model text (for example `chunk.answer`) as a SpatialAnswer on the original first view."""
        _, frames = self.prepare_images(images)
        return answer_from_text(text, frames[0])

    # --- the action chunk ------------------------------------------------------------------------
    @torch.no_grad()
    def act(
        self,
        images: list[np.ndarray],
        instruction: str,
        *,
        num_ddim_steps: int = 10,
        cfg_scale: float = 1.5,
        seed: int | None = None,
        return_internals: bool = False,
        state: np.ndarray | None = None,
        answer: str | None = None,
        tcp_pose: np.ndarray | None = None,
    ) -> ActionChunk:
        """One action chunk, as upstream's predict_action: prompt and views -> VLM -> query former ->
        DDIM with CFG (noise from `seed`, else the global RNG) -> unnormalise.

        `state` (the observation's joints), `tcp_pose` (obs["extra"]["tcp_pose"]) and `answer` (a spatial
        answer to act on instead of the model's own) are read only through the transforms of a checkpoint
        whose config asks for them (workbench.policy.extras); upstream ignores the first two and refuses
        `answer`. The answer acted on is returned in `chunk.answer`.
        """
        timings: dict[str, float] = {}
        timer = _Timer(timings) if return_internals else None
        views, _ = self.prepare_images(images)
        given = extras.Conditioning(views, instruction, state, tcp_pose, answer, size=views[0].shape[:2])
        x = self.transforms(self, given, timer)
        with _maybe(timer, "condition_inputs"):
            inputs = self.prompt_inputs(views, instruction) if x.vlm_inputs is None else x.vlm_inputs
        cond, maps = self.model.condition(inputs, [views], need_weights=return_internals, timer=timer)
        noise = self.initial_noise(seed)  # [1, T, D]
        expert = x.expert_input(self.device, self.dtype)  # [1, S] or None
        on_step = _StepTimer(timings) if return_internals else None
        with _maybe(timer, "diffusion"):
            sample = self.model.sample_actions(cond, noise, num_ddim_steps, cfg_scale, on_step, state=expert)
        normalized = sample[0].float().cpu().numpy()  # [T, D]
        with _maybe(timer, "unnormalize"):
            actions = self._normalizer.unnormalize(normalized)
        chunk = ActionChunk(
            normalized=normalized, actions=np.asarray(actions, dtype=np.float64), answer=x.answer
        )
        if return_internals:
            chunk.timings = timings
            chunk.attention = self.attention_maps(inputs, maps)
        return chunk

    @property
    def dtype(self) -> torch.dtype:
        """The action expert's weight type: its noise and extra inputs are cast to it."""
        return next(self.model.action_model.parameters()).dtype

    def initial_noise(self, seed: int | None) -> torch.Tensor:
        """The DDIM start [1, T, D]: float32 normals from `seed` (None: the global RNG), then cast."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        shape = (1, self.chunk_length, self.action_dim)
        return torch.randn(shape, generator=gen, dtype=torch.float32).to(self.device, self.dtype)

    def prompt_inputs(self, views: list[np.ndarray], instruction: str) -> dict[str, torch.Tensor]:
        """Upstream's VLM inputs for one sample: the prompt and the (model-sized) views."""
        return self.model.qwen_vl_interface.build_inputs([views], [self.prompt(instruction)])

    # --- what non-upstream checkpoints read (workbench.policy.extras) ---------------------------
    @property
    def reads_state(self) -> bool:
        return self.config.action.state_dim > 0

    @torch.no_grad()
    def answer_spatial_prompt(self, views: list[list[np.ndarray]], instructions: list[str]) -> list[str]:
        """Greedy answers to the spatial prompt for a batch (views model-sized): what an answer-reading
        checkpoint writes before acting (extras.write_answers, with this policy's decoding settings)."""
        return extras.write_answers(self, views, instructions)

    def condition_inputs(
        self, views: list[np.ndarray], instruction: str, answer: str | None = None
    ) -> tuple[dict[str, torch.Tensor], str | None]:
        """The VLM inputs the query former reads for one sample (views model-sized), and the answer in
        them: upstream's prompt alone (no answer; a given `answer` is not read here), or with
        config.condition_on_answer the prompt followed by `answer` (the model's own when None)."""
        x = self.transforms.run(self, extras.Conditioning(views, instruction, answer=answer), stage="vlm")
        if x.vlm_inputs is None:
            return self.prompt_inputs(views, instruction), None
        return x.vlm_inputs, x.answer

    def state_tensor(
        self,
        state: np.ndarray | None,
        answer: str | None = None,
        size: tuple[int, int] | None = None,
        tcp_pose: np.ndarray | None = None,
    ) -> torch.Tensor | None:
        """What the action expert reads besides the query tokens, [1, S], or None when it reads nothing:
        the normalised robot state (joints, then with config.state_tcp the TCP position of `tcp_pose`),
        then (config.answer_points) the points of `answer`, in a model frame of `size` = (height, width)."""
        x = extras.Conditioning(None, None, state, tcp_pose, answer, size)
        return self.transforms.run(self, x, stage="expert").expert_input(self.device, self.dtype)

    def attention_maps(self, inputs: dict[str, torch.Tensor], maps: list) -> dict[str, np.ndarray]:
        """Query-former attention over each view's image tokens: {"view_k": [rows, cols]} (sample 0)."""
        weights = [w for w in maps if w is not None]
        if not weights:
            return {}
        attn = torch.stack(weights).mean(0)[0].mean(0)  # mean over layers and queries: [L']
        ids = inputs["input_ids"][0]
        pos = (ids == self.model.qwen_vl_interface.image_token_id).nonzero().flatten()  # image tokens
        grids = self.model.qwen_vl_interface.image_token_grids(inputs)
        out, start = {}, 0
        for k, (r, c) in enumerate(grids):
            idx = pos[start : start + r * c]
            out[f"view_{k}"] = attn[idx].float().reshape(r, c).cpu().numpy()
            start += r * c
        return out


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def answer_from_text(text: str, frame: Frame | None) -> SpatialAnswer:
    """Parse model text in the model frame into a SpatialAnswer on the original image. Never raises."""
    try:
        return spatial.parse(text, frame)
    except Exception as e:  # noqa: BLE001 - the parser promises not to raise; be safe for the UI anyway
        return SpatialAnswer(text=text, geometry=[], frame=frame, problems=[f"parser error: {e}"])


def select_unnorm_key(statistics: dict[str, Any], unnorm_key: str | None) -> str:
    keys = sorted(statistics)
    if unnorm_key is None:
        if len(keys) == 1:
            return keys[0]
        raise ckpt.CheckpointError(
            f"This checkpoint has statistics for several datasets {keys}: pass unnorm_key= one of them."
        )
    if unnorm_key not in statistics:
        raise ckpt.CheckpointError(f"Unknown unnorm_key {unnorm_key!r}; this checkpoint has {keys}.")
    if "action" not in statistics[unnorm_key]:
        raise ckpt.CheckpointError(f"Statistics {unnorm_key!r} have no 'action' entry (upstream schema).")
    return unnorm_key


def make_normalizer(statistics: dict[str, Any], key: str):
    """The shared ActionNormalizer (workbench/policy/normalization.py) for one statistics key."""
    try:
        return ActionNormalizer(statistics, key)
    except (ValueError, KeyError) as e:
        raise ckpt.CheckpointError(f"Unusable dataset statistics for {key!r}: {e}") from e


def make_state_normalizer(statistics: dict[str, Any], key: str, state_dim: int):
    """The StateNormalizer when the action expert reads the state, else None; checks the statistics."""
    if not state_dim:
        return None
    try:
        norm = StateNormalizer(statistics, key)
    except (ValueError, KeyError) as e:
        raise ckpt.CheckpointError(f"Unusable state statistics for {key!r}: {e}") from e
    if norm.dim != state_dim:
        raise ckpt.CheckpointError(
            f"The action expert reads {state_dim} state values but the statistics {key!r} describe {norm.dim}."
        )
    return norm


class _StepTimer:
    """on_step for the sampler: each DDIM step's seconds as timings["ddim_step_<i>"]."""

    def __init__(self, timings: dict[str, float]):
        self.timings, self.last = timings, time.perf_counter()

    def __call__(self, i: int, _x: torch.Tensor) -> None:
        now = time.perf_counter()
        self.timings[f"ddim_step_{i}"] = now - self.last
        self.last = now


class _Timer:
    def __init__(self, timings: dict[str, float]):
        self.timings = timings

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0


@contextmanager
def _maybe(timer, name):
    if timer is None:
        yield
    else:
        with timer(name):
            yield
