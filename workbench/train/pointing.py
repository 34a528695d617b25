"""Pointing supervision: one attention head of the language model is taught to look at the object
whose coordinates the model is writing (an auxiliary loss for the CPU demo models; not upstream).

Why: the demo VLM learns to place a lone object, but in every stage 1 of the bundled line its box is
written while attending to all visual tokens alike (research/training-notes.md, note 9): a
pooled readout that a one-object curriculum rewards and a scene of 2-4 objects defeats. The values
of a visual token carry where it is (a linear probe, note 10), so a head that
attends to the named object's tokens hands the layers above its position. This loss asks one head
(`layer`, `head`) to put its attention, at every position that predicts a coordinate of an answer's
box or point, on the visual tokens under that box (the token under a point). Its weight is a
stage-1 option (`--pointing`), 0 in the bundled recipe; the architecture is unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from workbench.policy.vlm import IGNORE_INDEX

# `"bbox_2d": [x1, y1, x2, y2]` or `"point_2d": [x, y]`; group 2 spans the numbers.
GEOMETRY = re.compile(r'"(bbox_2d|point_2d)":\s*\[([^\[\]]*)\]')
COUNT = {"bbox_2d": 4, "point_2d": 2}


@dataclass
class PointingTarget:
    row: int  # sample in the batch
    positions: list[int]  # sequence positions that predict one geometry's coordinates
    cells: list[int]  # sequence positions of the visual tokens under that geometry


def cells_under(x1: float, y1: float, x2: float, y2: float, rows: int, cols: int, size: int) -> list[int]:
    """Row-major indices of the visual tokens whose image cell overlaps the box (model-frame pixels)."""
    ch, cw = size / rows, size / cols
    r0, r1 = int(y1 // ch), int(min(y2, size - 1e-6) // ch)
    c0, c1 = int(x1 // cw), int(min(x2, size - 1e-6) // cw)
    return [
        r * cols + c
        for r in range(max(r0, 0), min(r1, rows - 1) + 1)
        for c in range(max(c0, 0), min(c1, cols - 1) + 1)
    ]


def geometry_spans(answer: str) -> list[tuple[int, int, list[float]]]:
    """(start, end, numbers) of each box or point in an answer; characters of its numbers only."""
    out = []
    for m in GEOMETRY.finditer(answer):
        try:
            numbers = [float(v) for v in m.group(2).split(",")]
        except ValueError:  # not numbers: nothing to point at
            continue
        if len(numbers) == COUNT[m.group(1)]:
            out.append((m.start(2), m.end(2), numbers))
    return out


def pointing_targets(vlm, inputs: dict[str, torch.Tensor], answers: list[str]) -> list[PointingTarget]:
    """Where each answer writes a coordinate, and which visual tokens that coordinate is about.

    `inputs` is the batch build_inputs made from these answers (one image per sample, image first or
    not): an answer's tokens are the supervised labels, so their place is read from `labels`.
    """
    size = vlm.config.image_size
    grids = vlm.image_token_grids(inputs)
    targets = []
    for b, answer in enumerate(answers):
        spans = geometry_spans(answer)
        if not spans:
            continue
        start = int((inputs["labels"][b] != IGNORE_INDEX).nonzero()[0])  # first answer token
        offsets = vlm.tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)[
            "offset_mapping"
        ]
        image_pos = (inputs["input_ids"][b] == vlm.image_token_id).nonzero().flatten().tolist()
        rows, cols = grids[b]
        for s, e, numbers in spans:
            tokens = [i for i, (a, z) in enumerate(offsets) if a < e and z > s]  # overlap the numbers
            x1, y1 = numbers[0], numbers[1]
            x2, y2 = (numbers[2], numbers[3]) if len(numbers) == 4 else (x1, y1)
            cells = cells_under(x1, y1, x2, y2, rows, cols, size)
            if tokens and cells:
                targets.append(
                    PointingTarget(b, [start + i - 1 for i in tokens], [image_pos[c] for c in cells])
                )
    return targets


def pointing_loss(attention: torch.Tensor, targets: list[PointingTarget], head: int) -> torch.Tensor:
    """Mean over supervised positions of -log(attention mass of `head` on the target's visual tokens).

    attention: [B, heads, L, L] one layer's attention probabilities (eager attention).
    """
    if not targets:
        return attention.new_zeros(())
    losses = []
    for t in targets:
        rows = attention[t.row, head][t.positions]  # [positions, L]
        mass = rows[:, t.cells].sum(-1)  # [positions]
        losses.append(-torch.log(mass.clamp(min=1e-6)))
    return torch.cat(losses).mean()
