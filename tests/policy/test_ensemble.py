"""Adaptive ensembling (CogACT): alignment of past chunks, weights, horizon, reset."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from workbench.policy.ensemble import AdaptiveEnsembler

chunks = st.lists(arrays(np.float64, (8, 7), elements=st.floats(-1, 1)), min_size=1, max_size=10)


@given(chunks, st.integers(1, 8))
@settings(max_examples=100, deadline=None)
def test_alpha_zero_is_the_plain_mean_of_aligned_predictions(seq, horizon):
    ens = AdaptiveEnsembler(horizon, alpha=0.0)
    for t, chunk in enumerate(seq):
        out = ens.ensemble_action(chunk)
        # By hand: the chunk from k steps ago (k < horizon) predicts now at its index k.
        aligned = [seq[t - k][k] for k in range(min(horizon, t + 1))]
        assert out.shape == (7,)
        assert np.allclose(out, np.mean(aligned, axis=0))


@given(chunks, st.floats(-5, 5))
@settings(max_examples=50, deadline=None)
def test_horizon_one_returns_the_newest_first_action(seq, alpha):
    ens = AdaptiveEnsembler(1, alpha)
    assert not ens.enabled
    for chunk in seq:
        assert np.array_equal(ens.ensemble_action(chunk), chunk[0])


def test_hand_computed_two_step_example():
    alpha = 0.5
    ens = AdaptiveEnsembler(horizon=3, alpha=alpha)
    c1 = np.array([[1.0, 0.0], [1.0, 0.0]])  # step 1 predicts (1, 0) now and (1, 0) next
    c2 = np.array([[0.0, 1.0], [0.0, 1.0]])  # step 2 predicts (0, 1) now
    assert np.allclose(ens.ensemble_action(c1), [1.0, 0.0])
    out = ens.ensemble_action(c2)
    # Guesses for step 2: c1[1] = (1, 0) with cos 0 to the newest, c2[0] = (0, 1) with cos 1.
    w_old, w_new = np.exp(alpha * 0.0), np.exp(alpha * 1.0)
    expected = (w_old * np.array([1.0, 0.0]) + w_new * np.array([0.0, 1.0])) / (w_old + w_new)
    assert np.allclose(out, expected)
    assert out[1] > out[0]  # the newest guess weighs more when alpha > 0
    assert np.allclose(ens.last_weights, [w_old, w_new] / (w_old + w_new))


def test_history_is_bounded_by_horizon_and_reset_clears_it():
    ens = AdaptiveEnsembler(2, 0.0)
    seq = [np.full((4, 3), float(i)) for i in range(5)]
    for c in seq:
        out = ens.ensemble_action(c)
    assert len(ens.history) == 2
    assert np.allclose(out, [3.5] * 3)  # only the last two chunks: (3 + 4) / 2
    ens.reset()
    assert len(ens.history) == 0 and ens.last_weights is None
    assert np.allclose(ens.ensemble_action(np.ones((4, 3))), 1.0)


def test_chunk_shorter_than_its_age_is_left_out():
    ens = AdaptiveEnsembler(4, 0.0)
    ens.ensemble_action(np.full((1, 2), 10.0))  # a one-step chunk predicts only its own step
    out = ens.ensemble_action(np.full((3, 2), 2.0))
    assert np.allclose(out, 2.0) and ens.last_predictions.shape == (1, 2)


def test_single_actions_are_ensembled_as_a_history():
    ens = AdaptiveEnsembler(3, 0.0)
    outs = [ens.ensemble_action(np.array([v, 0.0])) for v in (1.0, 2.0, 3.0, 4.0)]
    assert [o[0] for o in outs] == pytest.approx([1.0, 1.5, 2.0, 3.0])  # mean of the last 3, as upstream
    with pytest.raises(ValueError, match="mixing single actions"):
        ens.ensemble_action(np.zeros((4, 2)))


def test_state_can_be_copied_for_branching():
    ens = AdaptiveEnsembler(3, 0.1)
    ens.ensemble_action(np.ones((4, 7)))
    snapshot = copy.deepcopy(ens)
    a = ens.ensemble_action(np.zeros((4, 7)) + 0.5)
    b = snapshot.ensemble_action(np.zeros((4, 7)) + 0.5)
    assert np.array_equal(a, b)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="horizon must be an integer >= 1"):
        AdaptiveEnsembler(0, 0.1)
    with pytest.raises(ValueError, match="alpha must be finite"):
        AdaptiveEnsembler(2, float("nan"))
    ens = AdaptiveEnsembler(2, 0.1)
    with pytest.raises(ValueError, match="NaN or inf"):
        ens.ensemble_action(np.full((4, 7), np.nan))
    with pytest.raises(ValueError, match=r"non-empty \[T, D\] \(or \[D\]\)"):
        ens.ensemble_action(np.zeros((2, 3, 7)))
    ens.ensemble_action(np.zeros((4, 7)))
    with pytest.raises(ValueError, match="action dim changed from 7 to 6"):
        ens.ensemble_action(np.zeros((4, 6)))
