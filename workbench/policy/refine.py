"""Sub-pixel coordinates from a greedy answer: each number token's value refined by its local expectation.

The VLM writes every coordinate as one number token (0..111 in a 112-pixel frame), so a greedy answer
is quantised to whole pixels and throws away how sure the model was between neighbours. Here each
generated number is replaced by the mean of the values within `radius` of it, weighted by the model's
probabilities for those number tokens at that position. Only the neighbourhood counts: a coordinate
whose distribution has a second mode on another object must not be pulled half-way towards it.

The greedy tokens are unchanged (the refinement happens after decoding), so the answer says the same
thing, only more precisely: "[52, 40, ...]" may become "[52.4, 39.8, ...]".
"""

from __future__ import annotations

import re

import numpy as np
import torch

_NUMBER = re.compile(r"^( ?)(\d+)$")


class NumberTable:
    """The tokenizer's whole-number tokens: id -> (leading space, value); and its special tokens."""

    def __init__(self, tokenizer):
        ids, values, spaced = [], [], []
        for token_id in range(len(tokenizer)):
            m = _NUMBER.match(tokenizer.decode([token_id]))
            if m:
                ids.append(token_id)
                values.append(int(m.group(2)))
                spaced.append(bool(m.group(1)))
        self.ids = torch.tensor(ids, dtype=torch.long)  # [K]
        self.values = torch.tensor(values, dtype=torch.float64)  # [K]
        self.lookup = {i: (s, v) for i, s, v in zip(ids, spaced, values, strict=True)}
        self.special = set(tokenizer.all_special_ids)  # skipped when decoding, as skip_special_tokens does


def refined_value(logits: torch.Tensor, table: NumberTable, value: int, radius: int) -> float:
    """The expectation of the number tokens' values within `radius` of `value`; logits [V]."""
    probs = torch.softmax(logits.double(), dim=-1)[table.ids]  # [K]; " 5" and "5" both count for 5
    near = (table.values - value).abs() <= radius
    mass = probs[near].sum()
    if mass <= 0:
        return float(value)
    return float((probs[near] * table.values[near]).sum() / mass)


def refine_text(
    tokens: list[int], logits: list[torch.Tensor], tokenizer, table: NumberTable, radius: int
) -> str:
    """One row's generated tokens decoded, each number token written as its refined value (one decimal).
    tokens [N] and logits (N tensors [V], the scores each token was chosen from) are aligned."""
    pieces = []
    for token_id, row in zip(tokens, logits, strict=True):
        if token_id in table.special:
            continue
        if token_id in table.lookup:
            spaced, value = table.lookup[token_id]
            x = refined_value(row, table, value, radius)
            pieces.append((" " if spaced else "") + f"{np.round(x, 1):g}")
        else:
            pieces.append(tokenizer.decode([token_id]))
    return "".join(pieces)
