"""Pointing supervision (workbench/train/pointing.py): where a coordinate is written, which visual tokens
it is about, and a loss that teaches one attention head to look there."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.policy import ST4VLAPolicy, tiny_config
from workbench.train.pointing import cells_under, geometry_spans, pointing_loss, pointing_targets

ANSWERS = [
    '[{"label": "red cube", "bbox_2d": [10, 60, 40, 100]}]',
    "Yes",
    '[{"label": "a", "point_2d": [100, 5]}, {"label": "b", "bbox_2d": [56, 0, 111, 27]}]',
]


@pytest.fixture(scope="module")
def vlm():
    torch.set_num_threads(1)
    policy = ST4VLAPolicy.from_config(tiny_config(image_size=112), seed=0)  # 4 x 4 visual tokens
    policy.model.qwen_vl_interface.model.set_attn_implementation("eager")
    return policy.model.qwen_vl_interface


@pytest.fixture(scope="module")
def batch(vlm):
    image = np.random.default_rng(0).integers(0, 255, (112, 112, 3), dtype=np.uint8)
    return vlm.build_inputs([[image]] * 3, ["Locate it.", "Is it there?", "Point, then box."], ANSWERS)


def test_cells_under_a_box_and_a_point_on_the_4x4_grid():
    assert cells_under(10, 60, 40, 100, 4, 4, 112) == [8, 9, 12, 13]  # 28-px cells
    assert cells_under(100, 5, 100, 5, 4, 4, 112) == [3]
    assert cells_under(56, 0, 111.9, 27, 4, 4, 112) == [2, 3]
    assert geometry_spans("Yes") == [] and geometry_spans('{"bbox_2d": [1, 2]}') == []


def test_targets_are_the_positions_writing_each_geometry_and_the_tokens_under_it(vlm, batch):
    targets = pointing_targets(vlm, batch, ANSWERS)
    assert [t.row for t in targets] == [0, 2, 2]  # "Yes" has no coordinate
    ids = batch["input_ids"]
    written = [vlm.tokenizer.decode(ids[t.row, [p + 1 for p in t.positions]]) for t in targets]
    assert written == ["10, 60, 40, 100", "100, 5", "56, 0, 111, 27"]  # position p predicts token p + 1
    image_pos = [(ids[t.row] == vlm.image_token_id).nonzero().flatten().tolist() for t in targets]
    cells = [[pos.index(c) for c in t.cells] for t, pos in zip(targets, image_pos, strict=True)]
    assert cells == [[8, 9, 12, 13], [3], [2, 3]]


def test_pointing_loss_is_the_attention_mass_on_the_target_and_teaches_the_head(vlm, batch):
    targets = pointing_targets(vlm, batch, ANSWERS)
    unlabelled = {k: v for k, v in batch.items() if k != "labels"}
    attn = vlm.forward(unlabelled, output_hidden_states=False, output_attentions=True).attentions[0]
    by_hand = [-torch.log(attn[t.row, 1, t.positions][:, t.cells].sum(-1)) for t in targets]
    assert torch.allclose(pointing_loss(attn, targets, head=1), torch.cat(by_hand).mean())

    params = [p for n, p in vlm.model.named_parameters() if ".visual." not in f".{n}"]
    opt = torch.optim.Adam(params, lr=3e-3)
    losses = []
    for _ in range(25):
        out = vlm.forward(unlabelled, output_hidden_states=False, output_attentions=True)
        loss = pointing_loss(out.attentions[0], targets, head=1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses
    assert pointing_loss(attn, [], head=0).item() == 0.0
