"""A small tokenizer trained locally that speaks Qwen2.5-VL's special tokens and chat template.

Why: the real Qwen2.5-VL tokenizer cannot be downloaded here, and tiny models need a small vocabulary
anyway. The tokenizer is a byte-level BPE (like Qwen's) trained on the caller's corpus, plus:
  * Qwen2.5-VL's special tokens (<|im_start|>, <|image_pad|>, <|vision_start|>, ...);
  * every integer 0..1023 as one token, so that a pixel coordinate is one token (training notes:
    one token per coordinate made grounding learnable at all on a CPU);
  * a chat template that renders the same text as Qwen2.5-VL's for image + text user turns.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

# Qwen2.5-VL's special tokens, in Qwen's id order (ids differ here: the vocabulary is ours).
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
MAX_COORDINATE = 1023

# Renders what Qwen2.5-VL's template renders for our turns: a default system turn, then each message
# as <|im_start|>role\n ... <|im_end|>\n, images as <|vision_start|><|image_pad|><|vision_end|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(
    corpus: Iterable[str], out_dir: str | Path | None = None, vocab_size: int = 2048
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `corpus`, add Qwen's special tokens and the 0..1023 coordinates.

    The result is saved to `out_dir` (tokenizer.json + tokenizer_config.json) when one is given and
    loads back with `PreTrainedTokenizerFast.from_pretrained(out_dir)` or `load_tokenizer(out_dir)`.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=QWEN_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = list(corpus)
    if not texts:
        raise ValueError("build_tokenizer needs a non-empty corpus (a list of example strings).")
    tok.train_from_iterator(texts, trainer=trainer)
    # Integers as added tokens: matched before BPE (longest first), so "1023" is one token.
    numbers = [AddedToken(str(i), normalized=False, special=False) for i in range(MAX_COORDINATE + 1)]
    tok.add_tokens(numbers)

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
    )
    # Qwen's processor looks these attributes up; keep them the same as Qwen's tokenizer.
    fast.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL_TOKENS[1:]})
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by `build_tokenizer` (or any fast tokenizer dir), left padding."""
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"No tokenizer.json in {path}. Build one with workbench.policy.tokenizer.build_tokenizer()."
        )
    tok = PreTrainedTokenizerFast.from_pretrained(str(path))
    tok.padding_side = "left"
    if tok.chat_template is None:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def default_corpus() -> list[str]:
    """A small built-in corpus: prompts and answers in the workbench's formats (tests, demo models)."""
    from workbench.policy.prompts import (
        GROUNDING_QUESTIONS,
        OBJECT_QUESTIONS,
        grounding_question,
        object_question,
    )

    objects = ["carrot", "eggplant", "spoon", "towel", "plate", "basket", "block", "cube", "can", "apple"]
    colours = ["red", "green", "blue", "yellow", "orange", "purple", "white", "black"]
    verbs = ["put", "place", "move", "pick up", "stack", "push", "open", "close"]
    texts = []
    for i, obj in enumerate(objects):
        colour = colours[i % len(colours)]
        verb = verbs[i % len(verbs)]
        instruction = f"{verb} the {colour} {obj} on the {objects[(i + 1) % len(objects)]}"
        texts += [grounding_question(q, instruction) for q in GROUNDING_QUESTIONS]
        texts += [object_question(q, f"{colour} {obj}") for q in OBJECT_QUESTIONS]
        texts.append(f'[{{"label": "{obj}", "bbox_2d": [{i}, {i + 1}, {i + 20}, {i + 30}]}}]')
        texts.append(f'{{"label": "{obj}", "point_2d": [{i + 3}, {i + 7}]}}')
        texts.append(f'{{"label": "gripper", "trace_2d": [[{i}, {i}], [{i + 5}, {i + 9}]]}}')
        texts.append(f'```json\n[{{"label": "{colour} {obj}"}}]\n```')
    return texts * 4
