"""Inference settings of the spatial answer: sub-pixel refinement and the shifted-frame consensus."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from workbench import spatial
from workbench.policy.consensus import SHIFTS, answer_with_votes, consensus, shifted
from workbench.policy.decoding import AnswerDecoding
from workbench.policy.refine import NumberTable, refine_text, refined_value


def _logits(table: NumberTable, vocab: int, mass: dict[int, float]) -> torch.Tensor:
    """Logits whose softmax puts `mass` on the number tokens of those values (split over their variants)."""
    probs = torch.full((vocab,), 1e-12, dtype=torch.float64)
    for value, p in mass.items():
        ids = table.ids[table.values == value]
        probs[ids] = p / len(ids)
    return probs.log()


def test_refined_value_is_the_local_expectation_and_ignores_a_far_mode(bundled):
    tok = bundled.model.qwen_vl_interface.tokenizer
    table = NumberTable(tok)
    assert {0, 55, 111} <= set(table.values.long().tolist())  # every model-frame coordinate is one token
    logits = _logits(table, len(tok), {40: 0.3, 42: 0.3, 90: 0.4})
    assert refined_value(logits, table, 40, radius=3) == pytest.approx(41.0, abs=1e-6)
    assert refined_value(logits, table, 40, radius=0) == pytest.approx(40.0)  # radius 0: the greedy value
    # a radius wide enough to reach the far mode is pulled towards it: why the radius stays small
    assert refined_value(logits, table, 40, radius=60) > 60


def test_refine_text_keeps_the_greedy_text_when_the_model_is_sure(bundled):
    tok = bundled.model.qwen_vl_interface.tokenizer
    table = NumberTable(tok)
    text = '[{"label": "red cube", "bbox_2d": [12, 40, 99, 7]}]'
    ids = tok(text)["input_ids"]
    sure = []
    for i in ids:
        row = torch.full((len(tok),), -30.0)
        row[i] = 30.0
        sure.append(row)
    assert refine_text(ids, sure, tok, table, radius=3) == text
    # the same tokens, the first coordinate now unsure between 12 and 13
    k = next(i for i, t in enumerate(ids) if table.lookup.get(t, (None, None))[1] == 12)
    sure[k] = _logits(table, len(tok), {12: 0.5, 13: 0.5})
    refined = json.loads(refine_text(ids, sure, tok, table, radius=3))
    assert refined[0]["bbox_2d"] == [12.5, 40, 99, 7]


def test_refined_answers_stay_within_the_radius_of_the_greedy_ones(bundled):
    rng = np.random.default_rng(3)
    views = [[rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)] for _ in range(2)]
    instructions = ["put red cube on white plate", "pick green bar"]
    greedy = bundled.answer_spatial_prompt(views, instructions)
    bundled.decoding = AnswerDecoding(refine_radius=2)
    try:
        refined = bundled.answer_spatial_prompt(views, instructions)
    finally:
        bundled.decoding = AnswerDecoding()
    for g, r in zip(greedy, refined, strict=True):
        gb = [b for b in spatial.parse(g, None).geometry if isinstance(b, spatial.Box)]
        rb = [b for b in spatial.parse(r, None).geometry if isinstance(b, spatial.Box)]
        assert [b.label for b in gb] == [b.label for b in rb]
        for a, b in zip(gb, rb, strict=True):
            diff = np.subtract((a.x1, a.y1, a.x2, a.y2), (b.x1, b.y1, b.x2, b.y2))
            assert np.abs(diff).max() <= 2.0


def test_shifted_moves_the_content_and_repeats_the_edge():
    img = np.zeros((10, 12, 3), dtype=np.uint8)
    img[4, 5] = 255
    out = shifted(img, 2, -1)
    assert out.shape == img.shape and out[3, 7, 0] == 255 and out.sum() == 255 * 3


def _box_text(*boxes: tuple[float, float, float, float, str]) -> str:
    return spatial.format([spatial.Box(*b) for b in boxes], None)


def test_consensus_outvotes_a_box_on_the_wrong_object_and_undoes_the_shifts():
    shifts = [(0, 0), (2, 0), (0, 2)]
    answers = [
        _box_text((10, 10, 20, 20, "red cube"), (50, 50, 70, 70, "white plate")),
        _box_text((80, 10, 90, 20, "red cube"), (52, 50, 72, 70, "white plate")),  # cube on another object
        _box_text((10, 12, 20, 22, "red cube"), (50, 52, 70, 72, "white plate")),
    ]
    merged = [b for b in spatial.parse(consensus(answers, shifts), None).geometry]
    assert [b.label for b in merged] == ["red cube", "white plate"]
    assert (merged[0].x1, merged[0].y1, merged[0].x2, merged[0].y2) == (10, 10, 20, 20)
    assert (merged[1].x1, merged[1].y1) == (50, 50)
    # a copy that names another object does not vote for this box
    relabelled = [answers[0], _box_text((80, 10, 90, 20, "green bar")), answers[2]]
    first = spatial.parse(consensus(relabelled, shifts), None).geometry[0]
    assert (first.x1, first.x2) == (10, 20)
    assert consensus(["no boxes here", answers[1], answers[2]], shifts) == "no boxes here"


def test_votes_find_a_detector_answer_again_through_every_shift():
    """A detector that boxes the bright pixel: each shifted copy's answer, shifted back, is the truth."""
    img = np.zeros((40, 40, 3), dtype=np.uint8)
    img[17, 23] = 255

    def detector(views: list[list[np.ndarray]], instructions: list[str]) -> list[str]:
        out = []
        for sample in views:
            y, x = np.unravel_index(sample[0][..., 0].argmax(), sample[0].shape[:2])
            out.append(_box_text((x - 2, y - 2, x + 3, y + 3, "dot")))
        return out

    (text,) = answer_with_votes(detector, [[img]], ["find the dot"], votes=len(SHIFTS))
    (box,) = spatial.parse(text, None).geometry
    assert box.center == (23.5, 17.5)
    with pytest.raises(ValueError, match="votes"):
        answer_with_votes(detector, [[img]], ["find the dot"], votes=len(SHIFTS) + 1)


def test_decoding_settings_are_checked_and_evaluate_sets_them_on_a_policy_that_has_them():
    from workbench.evaluate import answer_settings

    with pytest.raises(ValueError, match="refine_radius"):
        AnswerDecoding(refine_radius=-1)
    with pytest.raises(ValueError, match="votes"):
        AnswerDecoding(votes=0)

    class Remote:  # a policy that answers as it answers (a server, a random policy): left alone
        pass

    class Local:
        decoding = AnswerDecoding()

    remote, local = Remote(), Local()
    answer_settings(remote, 2, 3)
    answer_settings(local, 2, 3)
    assert not hasattr(remote, "decoding") and local.decoding == AnswerDecoding(refine_radius=2, votes=3)
