"""Test-time augmentation for the spatial answer: the same question on shifted copies of the frame.

A tiny VLM's box moves by a pixel or two, and now and then lands on another object, when the image
moves by two pixels. Asking on several copies of the frame shifted by a couple of pixels, shifting each
answer back and taking the median of every corner keeps the answer the copies agree on: a box that
one copy puts on the wrong object is outvoted, and the pixel jitter averages out.

The unshifted answer decides which boxes there are and their labels; a copy's box counts for box i
only when it carries the same label. The consensus is written back as answer text (one decimal), so
everything downstream (the DiT's points, the viewer, the report) reads it like any answer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from workbench import spatial

# (dx, dy) pixel shifts of the model frame; the first is the frame itself.
SHIFTS = ((0, 0), (2, 0), (-2, 0), (0, 2), (0, -2), (2, 2), (-2, -2), (2, -2), (-2, 2))
PAD = 4  # edge padding while shifting; larger than any shift


def shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """[H, W, 3] image moved dx pixels right and dy down; the uncovered border repeats the edge."""
    padded = np.pad(image, ((PAD, PAD), (PAD, PAD), (0, 0)), mode="edge")
    h, w = image.shape[:2]
    return np.ascontiguousarray(padded[PAD - dy : PAD - dy + h, PAD - dx : PAD - dx + w])


def answer_boxes(text: str) -> list[spatial.Box]:
    """The boxes of an answer in model-frame pixels, in order; none for text that is not an answer."""
    try:
        return [g for g in spatial.parse(text, None).geometry if isinstance(g, spatial.Box)]
    except Exception:  # noqa: BLE001 - malformed model text counts as no boxes
        return []


def consensus(answers: list[str], shifts: list[tuple[int, int]]) -> str:
    """The median answer of copies shifted by `shifts` (answers[0] unshifted), in the model frame."""
    reference = answer_boxes(answers[0])
    if not reference:
        return answers[0]
    merged = []
    for i, ref in enumerate(reference):
        corners = []
        for text, (dx, dy) in zip(answers, shifts, strict=True):
            boxes = answer_boxes(text)
            if i < len(boxes) and boxes[i].label == ref.label:
                b = boxes[i]
                corners.append((b.x1 - dx, b.y1 - dy, b.x2 - dx, b.y2 - dy))
        x1, y1, x2, y2 = np.median(np.asarray(corners), axis=0)  # corners holds ref itself at least
        merged.append(spatial.Box(float(x1), float(y1), float(x2), float(y2), ref.label))
    return spatial.format(merged, None, decimals=1)


def answer_with_votes(
    answer: Callable[[list[list[np.ndarray]], list[str]], list[str]],
    views: list[list[np.ndarray]],
    instructions: list[str],
    votes: int,
) -> list[str]:
    """`answer` (a batched greedy decode) on `votes` shifted copies of each sample, merged by consensus."""
    if not 1 <= votes <= len(SHIFTS):
        raise ValueError(f"votes must be in 1..{len(SHIFTS)}, got {votes}")
    shifts = list(SHIFTS[:votes])
    copies = [[shifted(v, dx, dy) for v in sample] for sample in views for dx, dy in shifts]
    texts = answer(copies, [i for i in instructions for _ in shifts])
    return [consensus(texts[k * votes : (k + 1) * votes], shifts) for k in range(len(views))]
