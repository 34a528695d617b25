"""The VLM interface: transformers' Qwen2_5_VLForConditionalGeneration, with prompts built as upstream.

Upstream (InternVLA/model/modules/vlm/QWen2_5.py) builds one user turn per sample: the images first,
then the text; renders it with the chat template (add_generation_prompt=True) and runs the processor
with left padding. Two ways to run "the processor" here:
  * the full `Qwen2_5_VLProcessor` when it can be constructed (it needs torchvision for its video
    processor, which this machine lacks);
  * the fallback: `Qwen2VLImageProcessorPil` for pixels, and the tokenizer on the text after each
    <|image_pad|> is expanded to image_grid_thw.prod() // merge_size**2 copies (what the processor does).
Both give the same input_ids / pixel_values; tests check this where the full processor exists.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
)

from workbench.policy import refine
from workbench.policy.configuration import ST4VLAConfig, VLMConfig

IGNORE_INDEX = -100
IMAGE_PAD = "<|image_pad|>"


def hf_qwen_config(cfg: VLMConfig, tokenizer: PreTrainedTokenizerFast) -> Qwen2_5_VLConfig:
    """A transformers Qwen2.5-VL config from ours; special-token ids come from the tokenizer.

    Every field that changes the numbers (norm eps, activations, rope theta and M-RoPE sections,
    window size and full-attention blocks, vocabulary, tied embeddings) comes from `cfg`, which for an
    upstream run is read from the base model's config.json: none is left to transformers' defaults."""
    ids = tokenizer.convert_tokens_to_ids
    text = dict(
        vocab_size=max(cfg.vocab_size, len(tokenizer)),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        rms_norm_eps=cfg.rms_norm_eps,
        hidden_act=cfg.hidden_act,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": cfg.rope_theta,
            "mrope_section": cfg.mrope_section,
        },
        tie_word_embeddings=cfg.tie_word_embeddings,
        bos_token_id=ids("<|endoftext|>"),
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = dict(
        depth=cfg.vision_depth,
        hidden_size=cfg.vision_hidden,
        num_heads=cfg.vision_heads,
        intermediate_size=cfg.vision_intermediate,
        hidden_act=cfg.vision_hidden_act,
        tokens_per_second=cfg.tokens_per_second,
        patch_size=cfg.patch_size,
        spatial_merge_size=cfg.spatial_merge_size,
        temporal_patch_size=cfg.temporal_patch_size,
        window_size=cfg.window_size,
        out_hidden_size=cfg.hidden_size,
        fullatt_block_indexes=list(cfg.fullatt_block_indexes),
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids(IMAGE_PAD),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=cfg.tie_word_embeddings,
    )


def make_image_processor(config: ST4VLAConfig) -> Qwen2VLImageProcessorPil:
    """The PIL image processor, sized so a model-frame image (image_size^2) is not resized again."""
    v = config.vlm
    factor = v.patch_size * v.spatial_merge_size
    return Qwen2VLImageProcessorPil(
        min_pixels=factor * factor,
        max_pixels=config.image_size * config.image_size,
        patch_size=v.patch_size,
        temporal_patch_size=v.temporal_patch_size,
        merge_size=v.spatial_merge_size,
    )


def try_full_processor(image_processor, tokenizer):
    """Qwen2_5_VLProcessor, or None where it cannot be built (no torchvision for its video processor)."""
    try:
        from transformers import Qwen2_5_VLProcessor
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

        return Qwen2_5_VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=Qwen2VLVideoProcessor(),
            chat_template=tokenizer.chat_template,
        )
    except Exception:  # noqa: BLE001 - ImportError, or transformers' lookups failing without torchvision
        return None


class QwenVLInterface(nn.Module):
    """Upstream's `qwen_vl_interface`: `.model` is the real Qwen2_5_VLForConditionalGeneration."""

    def __init__(self, config: ST4VLAConfig, tokenizer: PreTrainedTokenizerFast):
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        self.model = Qwen2_5_VLForConditionalGeneration(hf_qwen_config(config.vlm, tokenizer))
        self.image_processor = make_image_processor(config)
        self.processor = try_full_processor(self.image_processor, tokenizer)
        self.image_token_id = self.model.config.image_token_id
        self._numbers: refine.NumberTable | None = None  # built on the first refined decode

    # --- prompts ---------------------------------------------------------------------------------
    def user_content(self, num_images: int, prompt: str) -> list[dict]:
        """A user turn's content: the images, then the prompt text (as upstream), or the other way
        round with `vlm.text_first`."""
        images, text = [{"type": "image"} for _ in range(num_images)], [{"type": "text", "text": prompt}]
        return text + images if self.config.vlm.text_first else images + text

    def chat_texts(self, num_images: list[int], prompts: list[str]) -> list[str]:
        """One user turn per sample (`user_content`); generation prompt added."""
        texts = []
        for n, prompt in zip(num_images, prompts, strict=True):
            messages = [{"role": "user", "content": self.user_content(n, prompt)}]
            texts.append(
                self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            )
        return texts

    def build_inputs(
        self,
        images: list[list[np.ndarray]],
        prompts: list[str],
        answers: list[str] | None = None,
        use_full_processor: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """Tokenise a batch. images[b] = views of sample b ([H, W, 3] uint8, already model-sized).

        Returns input_ids/attention_mask [B, L] (left padded), mm_token_type_ids [B, L],
        pixel_values [sum patches, C*t*p*p], image_grid_thw [n_images, 3]; with `answers`, also
        labels [B, L] where only the answer tokens and the closing <|im_end|> are supervised.
        """
        if len(images) != len(prompts):
            raise ValueError(
                f"{len(images)} image lists for {len(prompts)} prompts: give one list per prompt."
            )
        texts = self.chat_texts([len(v) for v in images], prompts)
        flat = [np.ascontiguousarray(img) for views in images for img in views]
        use_full = (self.processor is not None) if use_full_processor is None else use_full_processor
        if use_full and answers is None:
            if self.processor is None:
                raise RuntimeError(
                    "The full Qwen2_5_VLProcessor is not available here (it needs torchvision)."
                )
            out = self.processor(text=texts, images=flat or None, padding=True, return_tensors="pt")
            return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}
        return self._build_fallback(texts, flat, answers)

    def _build_fallback(self, texts: list[str], flat: list[np.ndarray], answers: list[str] | None):
        batch: dict[str, torch.Tensor] = {}
        if flat:
            pix = self.image_processor(images=flat, return_tensors="pt")
            batch["pixel_values"] = pix["pixel_values"]  # [sum patches, 3*t*p*p]
            batch["image_grid_thw"] = pix["image_grid_thw"]  # [n_images, 3]
            counts = (pix["image_grid_thw"].prod(-1) // self.config.vlm.spatial_merge_size**2).tolist()
            texts = _expand_image_pads(texts, counts)
        eos = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        rows, label_rows = [], []
        for i, text in enumerate(texts):
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            labels = [IGNORE_INDEX] * len(ids)
            if answers is not None:
                answer = self.tokenizer(answers[i], add_special_tokens=False)["input_ids"] + [eos]
                ids, labels = ids + answer, labels + answer
            rows.append(ids)
            label_rows.append(labels)
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        # Left padding: generation continues from the right edge of every row.
        batch["input_ids"] = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        batch["attention_mask"] = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        batch["mm_token_type_ids"] = (batch["input_ids"] == self.image_token_id).int()
        if answers is not None:
            batch["labels"] = torch.tensor([[IGNORE_INDEX] * (width - len(r)) + r for r in label_rows])
        return batch

    # --- model calls -----------------------------------------------------------------------------
    def forward(
        self,
        inputs: dict[str, torch.Tensor],
        output_hidden_states: bool = True,
        output_attentions: bool = False,
    ):
        """`output_attentions` needs the eager attention implementation (diagnostics only)."""
        dtype = next(self.model.parameters()).dtype
        inputs = dict(inputs)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
        # rope_deltas is cached by transformers across calls; a fresh forward must recompute it.
        self.model.model.rope_deltas = None
        return self.model(
            **inputs,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )

    @torch.inference_mode()
    def generate(
        self, inputs: dict[str, torch.Tensor], max_new_tokens: int = 128, refine_radius: int = 0
    ) -> list[str]:
        """Greedy decode (upstream chat_with_M1); returns only the new text of each row. With
        `refine_radius` > 0 each number is written as its local expectation (workbench.policy.refine)."""
        dtype = next(self.model.parameters()).dtype
        inputs = {k: v for k, v in inputs.items() if k != "labels"}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
        self.model.model.rope_deltas = None
        out = self.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.convert_tokens_to_ids("<|im_end|>"),
            return_dict_in_generate=True,
            output_logits=refine_radius > 0,
        )
        new = out.sequences[:, inputs["input_ids"].shape[1] :]  # [B, N]
        if refine_radius <= 0:
            return self.tokenizer.batch_decode(
                new, skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
        if self._numbers is None:
            self._numbers = refine.NumberTable(self.tokenizer)
        return [
            refine.refine_text(
                row.tolist(), [step[b] for step in out.logits], self.tokenizer, self._numbers, refine_radius
            )
            for b, row in enumerate(new)
        ]

    def image_token_grids(self, inputs: dict[str, torch.Tensor]) -> list[tuple[int, int]]:
        """(rows, cols) of LLM image tokens for each image, in order."""
        m = self.config.vlm.spatial_merge_size
        return [(int(h) // m, int(w) // m) for _, h, w in inputs["image_grid_thw"].tolist()]


def answer_mean_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy, averaged within each answer, then over the answers of the batch.

    logits [B, L, V], labels [B, L] with IGNORE_INDEX off the answer (as build_inputs writes them).
    """
    logits, labels = logits[:, :-1].float(), labels[:, 1:]  # position t predicts token t+1
    mask = labels != IGNORE_INDEX
    token_loss = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")
    per_answer = token_loss.sum(1) / mask.sum(1).clamp(min=1)  # ignored positions add 0
    answered = mask.any(1)
    if not answered.any():
        raise ValueError("no answer tokens in the batch: every label is IGNORE_INDEX")
    return per_answer[answered].mean()


def _expand_image_pads(texts: list[str], counts: list[int]) -> list[str]:
    """Replace the k-th <|image_pad|> of the batch by counts[k] copies (as Qwen's processor does)."""
    it = iter(counts)
    out = []
    for text in texts:
        parts = text.split(IMAGE_PAD)
        pieces = [parts[0]]
        for part in parts[1:]:
            try:
                n = next(it)
            except StopIteration:
                raise ValueError("More <|image_pad|> placeholders than images.") from None
            pieces.append(IMAGE_PAD * n + part)
        out.append("".join(pieces))
    if next(it, None) is not None:
        raise ValueError("More images than <|image_pad|> placeholders in the prompts.")
    return out
