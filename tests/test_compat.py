"""Compatibility at Load: what the bundled checkpoint reads against what sources give (workbench.compat).

The SimplerEnv figures (WidowX 8 joints at 5 Hz, absolute gripper; Google robot 11 joints at 3 Hz,
relative gripper; both bases turned 180 degrees) are those the real SimplerEnv reports
(shared/reference/simplerenv-real.md); the runner-level refusal is tested through the fake SimplerEnv
in test_sim_simpler.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.compat import (
    MAPPINGS,
    SourceGives,
    check,
    checkpoint_needs,
    source_gives,
)
from workbench.controller import GRIPPER_ABSOLUTE, GRIPPER_RELATIVE
from workbench.sim.robot import STATE_NAMES

torch.set_num_threads(1)
WIDOWX_JOINTS = (
    "waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "left_finger", "right_finger",
)  # fmt: skip
WIDOWX = SourceGives(
    "widowx_carrot_on_plate",
    state_dim=8,
    state_names=WIDOWX_JOINTS,
    cameras=("3rd_view_camera",),
    image_size=(640, 480),
    gripper=GRIPPER_ABSOLUTE,
    control_hz=5.0,
    base_turn_deg=180.0,
)


@pytest.fixture(scope="module")
def needs(bundled):
    return checkpoint_needs(bundled)


def test_the_bundled_checkpoint_declares_what_it_reads(needs, bundled):
    assert needs.state_dim == 9 and needs.state_names == STATE_NAMES  # 13 = 9 joints + 4 answer points
    assert needs.answer_points and not needs.reads_tcp and needs.image_size == 112
    assert needs.dataset == "tabletop_panda" and needs.control_hz == 5.0 and needs.gripper == GRIPPER_ABSOLUTE
    q = bundled.statistics["tabletop_panda"]["state"]
    np.testing.assert_allclose(needs.neutral_state, (np.array(q["q01"]) + np.array(q["q99"])) / 2)


def test_it_fits_the_built_in_simulator_as_it_is(needs):
    from workbench.sources import SimSource

    source = SimSource.from_task("tabletop_put_on", width=160, height=120)
    try:
        gives = source_gives(source)
        assert gives.state_names == STATE_NAMES and gives.image_size == (160, 120)
        report = check(needs, gives)
        assert report.actions_ok and report.mapping.name == "as_is" and report.warnings == []
        assert "9 joint values" in report.text() and "the built-in Panda" in report.text()
        assert "160x120 image is resized to the checkpoint's 112x112" in report.text()
        state = np.arange(9.0)
        assert report.mapping.apply(state) is state
    finally:
        source.close()


def test_widowx_without_a_mapping_says_what_differs_and_what_to_choose(needs):
    report = check(needs, WIDOWX)
    assert not report.actions_ok and report.mapping is None
    assert report.choices == ("neutral",)  # no joint in common with the Panda, and 8 is not 9
    text = report.text()
    assert "only the spatial answer works" in text
    assert "reads 9 joint values (panda_joint1" in text and "gives 8 (waist, shoulder" in text
    assert "choose one of neutral" in text
    assert "the robot base is turned 180 degrees" in text
    assert "choose a state mapping (neutral)" in report.summary()


def test_widowx_with_the_neutral_mapping_acts_and_warns(needs):
    report = check(needs, WIDOWX, "neutral")
    assert report.actions_ok and report.mapping.name == "neutral"
    assert any("state mapping 'neutral' (chosen)" in w for w in report.warnings)
    mapped = report.mapping.apply(np.arange(8.0))
    assert mapped.shape == (9,)
    np.testing.assert_allclose(mapped, needs.neutral_state)
    assert report.to_dict()["mapping"]["name"] == "neutral"
    automatic = check(needs, WIDOWX, auto=True)
    assert automatic.mapping.name == "neutral" and any(
        "picked automatically" in w for w in automatic.warnings
    )


@pytest.mark.parametrize(
    ("mapping", "why"),
    [
        ("as_is", "the source gives 8 values, the checkpoint reads 9"),
        ("by_name", "no joint names in common"),
        ("none", "'none' is for checkpoints that read no state"),
    ],
)
def test_mappings_that_cannot_work_say_why(needs, mapping, why):
    report = check(needs, WIDOWX, mapping)
    assert not report.actions_ok and why in report.text()


def test_by_name_takes_each_joint_from_where_the_source_has_it(needs):
    # the same Panda, listed in another order with two head joints more (as the Google robot has)
    names = ("joint_head_pan", *reversed(STATE_NAMES), "joint_head_tilt")
    gives = SourceGives("panda_with_a_head", state_dim=11, state_names=names)
    assert check(needs, gives).choices == ("by_name", "neutral")
    report = check(needs, gives, "by_name", auto=False)
    assert report.actions_ok and "9 of 9 joints by name" in report.mapping.description
    state = np.array([100.0, *range(9)[::-1], 200.0])  # the value of panda joint k is k
    np.testing.assert_array_equal(report.mapping.apply(state), np.arange(9.0))
    assert check(needs, gives, auto=True).mapping.name == "by_name"


def test_google_robot_rate_and_gripper_are_warned_not_refused(needs):
    google = SourceGives(
        "google_robot_pick_coke_can",
        state_dim=11,
        cameras=("overhead_camera",),
        image_size=(640, 512),
        gripper=GRIPPER_RELATIVE,
        control_hz=3.0,
        base_turn_deg=180.0,
    )
    report = check(needs, google, "neutral")
    assert report.actions_ok
    topics = {f.topic for f in report.findings if f.level == "warning"}
    assert topics == {"state", "gripper", "rate"}
    assert "trained at 5 Hz; the source steps at 3 Hz" in report.text()
    assert "relative (+1 closes, -1 opens)" in report.text()


def test_a_checkpoint_without_state_needs_no_mapping(bundled):
    needs = checkpoint_needs(_NoState(bundled))
    report = check(needs, WIDOWX)
    assert report.actions_ok and report.mapping.name == "none" and report.mapping.apply(np.ones(8)) is None


def test_unknown_mapping_and_undeclared_policies():
    with pytest.raises(ValueError, match="unknown state mapping 'joints'"):
        check(None, WIDOWX, "joints")
    report = check(None, WIDOWX)  # a remote policy: nothing declared, nothing refused
    assert report.actions_ok and "not checked" in report.text()
    assert set(MAPPINGS) == {"as_is", "by_name", "neutral", "none"}


class _NoState:
    """The bundled checkpoint's config with the action expert reading no state (as upstream's)."""

    def __init__(self, policy):
        import copy

        self.config = copy.deepcopy(policy.config)
        self.config.action.state_dim = 0
        self.config.answer_points = False
        self.statistics, self.unnorm_key, self.name = policy.statistics, policy.unnorm_key, "no-state"


def test_sources_that_do_not_declare_or_recorded_no_state(needs):
    custom = check(needs, SourceGives("my_env"))  # a custom env: its state is known only when it runs
    assert custom.actions_ok and custom.mapping.name == "as_is"
    assert any("does not say what state it gives" in w for w in custom.warnings)
    recorded = check(needs, SourceGives("a recording without state", state_dim=0))
    assert not recorded.actions_ok and "gives no state" in recorded.text()
    assert check(needs, SourceGives("a recording without state", state_dim=0), "neutral").actions_ok
