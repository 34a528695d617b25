"""Action normalisation against upstream's dataset_statistics.json schema and BOUNDS_Q99 rules."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from workbench.policy.normalization import (
    ActionNormalizer,
    DatasetStatistics,
    UnnormKeyError,
    compute_statistics,
    default_mask,
)

# A trimmed copy of the shape of upstream's bridge statistics (values rounded).
BRIDGE = {
    "action": {
        "mean": [0.0002, 0.0001, -0.0001, 0.0, 0.0, 0.0, 0.5765],
        "std": [0.0097, 0.0135, 0.0127, 0.0287, 0.0306, 0.0766, 0.4973],
        "max": [0.4129, 0.6382, 0.3891, 0.8025, 1.4373, 5.4341, 1.0],
        "min": [-0.4007, -0.5232, -0.3993, -3.1415, -1.4113, -5.4366, 0.0],
        "q01": [-0.0290, -0.0417, -0.0260, -0.0809, -0.0921, -0.2037, 0.0],
        "q99": [0.0290, 0.0409, 0.0403, 0.0816, 0.0783, 0.2038, 1.0],
        "mask": [True, True, True, True, True, True, False],
    },
    "state": {"q01": [0.0] * 7, "q99": [1.0] * 7, "mean": [0.5] * 7},
    "num_transitions": 2135463,
    "num_trajectories": 60064,
}


@pytest.fixture
def stats_file(tmp_path):
    path = tmp_path / "dataset_statistics.json"
    path.write_text(json.dumps({"oxe_bridge": BRIDGE, "oxe_rt1": BRIDGE}))
    return path


def test_unnormalize_matches_upstream_rule(stats_file):
    norm = ActionNormalizer(stats_file, "oxe_bridge")
    a = np.array([[-1.0, 0.0, 1.0, 2.0, -3.0, 0.5, 0.49], [0.25, -0.25, 0.0, 0.0, 0.0, 0.0, 0.5]])
    out = norm.unnormalize(a)
    q01, q99 = np.array(BRIDGE["action"]["q01"]), np.array(BRIDGE["action"]["q99"])
    assert out.shape == (2, 7)
    assert out[0, 0] == pytest.approx(q01[0]) and out[0, 2] == pytest.approx(q99[2])  # -1 -> q01, 1 -> q99
    assert out[0, 3] == pytest.approx(q99[3]) and out[0, 4] == pytest.approx(q01[4])  # clipped first
    assert out[1, 0] == pytest.approx(0.5 * 1.25 * (q99[0] - q01[0]) + q01[0])
    assert out[:, 6].tolist() == [0.0, 1.0]  # gripper binarised at 0.5, unmasked so left as 0/1
    assert a[0, 3] == 2.0  # the caller's array is untouched


@given(
    arrays(np.float64, (5, 7), elements=st.floats(0.0, 1.0)), arrays(np.float64, (5,), elements=st.booleans())
)
@settings(max_examples=100, deadline=None)
def test_normalize_unnormalize_round_trip(u, gripper_open):
    norm = ActionNormalizer({"k": BRIDGE})
    q01, q99 = norm.q01, norm.q99
    actions = q01 + u * (q99 - q01)  # inside [q01, q99] on every dim
    actions[:, 6] = gripper_open.astype(np.float64)  # the dataset's gripper: 0 closed, 1 open
    normalized = norm.normalize(actions)
    assert np.all(np.abs(normalized) <= 1.0)
    assert np.array_equal(normalized[:, 6], actions[:, 6])  # unmasked: passed through raw
    back = norm.unnormalize(normalized)
    assert np.allclose(back[:, :6], actions[:, :6], atol=1e-7)
    assert np.array_equal(back[:, 6], actions[:, 6])


def test_normalize_clips_outliers_and_respects_mask():
    norm = ActionNormalizer({"k": BRIDGE})
    x = np.array(BRIDGE["action"]["q99"]) * 10
    x[6] = 1.0
    assert norm.normalize(x)[:6].tolist() == [1.0] * 6
    unmasked = {"k": {"action": {"q01": [0.0, 0.0], "q99": [2.0, 2.0], "mask": [True, False]}}}
    n2 = ActionNormalizer(unmasked)
    assert n2.normalize(np.array([1.0, 5.0])).tolist() == pytest.approx([0.0, 5.0], abs=1e-7)
    assert n2.unnormalize(np.array([0.0, 0.3])).tolist() == pytest.approx([1.0, 0.3])  # no gripper dim < 7


def test_missing_mask_means_all_dims_normalised():
    n = ActionNormalizer({"k": {"action": {"q01": [-1.0] * 7, "q99": [3.0] * 7}}})
    assert n.mask.all()
    assert n.unnormalize(np.zeros(7))[0] == pytest.approx(1.0)
    # Upstream binarises the gripper before scaling, so with the gripper masked 0 -> 0 -> 0.5*(0+1)*4-1.
    assert n.unnormalize(np.full(7, 0.2))[6] == pytest.approx(1.0)
    assert n.unnormalize(np.full(7, 0.7))[6] == pytest.approx(3.0)


def test_single_key_is_used_when_none_asked(tmp_path):
    path = tmp_path / "dataset_statistics.json"
    path.write_text(json.dumps({"franka": BRIDGE}))
    assert ActionNormalizer(path).key == "franka"
    assert ActionNormalizer(tmp_path).key == "franka"  # a run directory works too


def test_wrong_key_lists_available_keys(stats_file):
    with pytest.raises(UnnormKeyError) as e:
        ActionNormalizer(stats_file, "bridge_dataset")
    assert isinstance(e.value, KeyError)
    assert "bridge_dataset" in str(e.value) and "['oxe_bridge', 'oxe_rt1']" in str(e.value)


def test_several_keys_and_none_asked_lists_them(stats_file):
    with pytest.raises(UnnormKeyError, match=r"several keys \['oxe_bridge', 'oxe_rt1'\]"):
        ActionNormalizer(stats_file)


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "run" / "dataset_statistics.json"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        DatasetStatistics.load(missing)


def test_bad_statistics_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"lacks \['q99'\]"):
        ActionNormalizer({"k": {"action": {"q01": [0.0] * 7}}})
    with pytest.raises(ValueError, match="single statistics block"):
        DatasetStatistics.from_dict(BRIDGE)
    with pytest.raises(ValueError, match="no 'action' statistics"):
        DatasetStatistics.from_dict({"k": {"state": {}}})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        DatasetStatistics.load(bad)


def test_bad_actions_give_clear_errors():
    norm = ActionNormalizer({"k": BRIDGE})
    with pytest.raises(ValueError, match="last dimension 7"):
        norm.unnormalize(np.zeros((4, 6)))
    with pytest.raises(ValueError, match="NaN or inf"):
        norm.unnormalize(np.array([np.nan] * 7))


def test_compute_statistics_schema_and_values(tmp_path):
    rng = np.random.default_rng(0)
    actions = rng.normal(size=(1000, 7))
    actions[:, 6] = rng.integers(0, 2, size=1000)
    block = compute_statistics(actions, states=rng.normal(size=(1000, 8)), num_trajectories=20)
    a = block["action"]
    assert set(a) == {"mean", "std", "max", "min", "q01", "q99", "mask"}
    assert a["mask"] == [True] * 6 + [False]
    assert a["q01"] == pytest.approx(np.quantile(actions, 0.01, axis=0).tolist())
    assert a["min"] <= a["q01"] and a["q99"] <= a["max"]
    assert len(block["state"]["q99"]) == 8
    assert (block["num_transitions"], block["num_trajectories"]) == (1000, 20)
    path = DatasetStatistics({"sim": block}).save(tmp_path)
    loaded = DatasetStatistics.load(path)
    assert loaded.keys() == ["sim"]
    assert np.array_equal(loaded.action()["mask"], default_mask(7))
    assert loaded.state()["q99"].shape == (8,)
    # Statistics computed here drive normalisation: the data's middle 98% lands inside [-1, 1].
    normalized = ActionNormalizer(loaded).normalize(actions)[:, :6]
    inside = np.mean(np.all(np.abs(normalized) < 1.0, axis=1))
    assert 0.85 < inside < 0.95  # 6 dims, each 98% inside: about 0.98**6 = 0.886


def test_compute_statistics_rejects_bad_input():
    with pytest.raises(ValueError, match=r"non-empty \[N, D\]"):
        compute_statistics(np.zeros((0, 7)))
    with pytest.raises(ValueError, match="NaN or inf"):
        compute_statistics(np.full((3, 7), np.inf))
    with pytest.raises(ValueError, match="mask must have shape"):
        compute_statistics(np.zeros((3, 7)), mask=[True])
