"""Failure triage: each reason from constructed step sequences, and one real episode on the built-in sim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench import triage as tr
from workbench.triage import StepFacts, triage

HIT = {"num_predicted": 1.0, "box_iou": 0.6, "box_center_in_box": 1.0}
MISS = {"num_predicted": 1.0, "box_iou": 0.0, "box_center_in_box": 0.0}
NO_ANSWER = {"num_predicted": 0.0, "box_iou": 0.0, "box_center_in_box": 0.0}


def episode(tcp, goal=None, grasped=(), metrics=HIT, success_at=None):
    """Facts for one episode: tcp_to_object per step, object_to_goal (default 0.3 m), grasp steps."""
    goal = goal if goal is not None else [0.3] * len(tcp)
    out = []
    for i, (d, g) in enumerate(zip(tcp, goal, strict=True)):
        info = {"tcp_to_object": d, "object_to_goal": g, "is_src_obj_grasped": i in grasped,
                "success": i == success_at}  # fmt: skip
        out.append(StepFacts.from_info(i, info, metrics(i) if callable(metrics) else metrics))
    return out


def flat(d, n=20):
    return [d] * n


def test_success():
    t = triage(episode(flat(0.01), success_at=12))
    assert t.reason == "success" and not t.failed


def test_grounding_when_most_answers_miss_and_the_gripper_stays_away():
    t = triage(episode(flat(0.15), metrics=lambda i: HIT if i < 5 else MISS))  # 15 of 20 miss
    assert t.reason == "grounding" and t.failed
    assert (t.evidence["answered_steps"], t.evidence["missed_steps"]) == (20, 15)
    assert "15 of 20" in t.sentence()


def test_a_minority_of_misses_is_not_grounding_but_reach():
    t = triage(episode(flat(0.15), metrics=lambda i: MISS if i < 10 else HIT))  # exactly half miss
    assert t.reason == "reach"
    assert t.evidence["min_tcp_to_object"] == 0.15 and "15.0 cm" in t.sentence()


def test_steps_saved_under_the_older_distance_names_read_the_same():
    new = episode(flat(0.15), goal=flat(0.2), grasped=range(3))
    old = [
        StepFacts.from_info(
            f.step,
            {
                "tcp_to_source": f.tcp_to_object,
                "source_to_goal": f.object_to_goal,
                "is_src_obj_grasped": f.grasped,
            },
            HIT,
        )  # fmt: skip
        for f in new
    ]
    assert old == new and triage(old).evidence["min_object_to_goal"] == 0.2


def test_a_small_box_centred_on_the_object_is_a_hit():
    small = {"num_predicted": 1.0, "box_iou": 0.05, "box_center_in_box": 1.0}
    assert triage(episode(flat(0.15), metrics=small)).reason == "reach"


def test_no_spatial_answer_is_never_blamed_on_grounding():
    t = triage(episode(flat(0.15), metrics=NO_ANSWER))
    assert t.reason == "reach" and t.evidence["answered_steps"] == 0


def test_reaching_the_object_clears_a_wrong_answer():
    tcp = flat(0.15, 10) + flat(0.02, 10)
    assert triage(episode(tcp, metrics=MISS)).reason == "grasp"


def test_grasp_and_place():
    assert triage(episode(flat(0.02))).reason == "grasp"
    t = triage(episode(flat(0.01), grasped={5, 6, 7, 8, 9}))
    assert t.reason == "place" and "held 5 steps" in t.sentence()
    assert t.evidence["longest_grasp"] == tr.GRASP_STEPS and t.evidence["first_grasp_step"] == 5
    # both fingers touching for fewer than GRASP_STEPS steps in a row is no grasp
    touch = triage(episode(flat(0.01), grasped={3, 4, 5, 6, 10, 11, 12, 13}))
    assert touch.reason == "grasp" and touch.evidence["grasped_steps"] == 8
    assert touch.evidence["longest_grasp"] == 4 and touch.evidence["first_grasp_step"] is None
    assert "held 4 steps at most (needs 5)" in touch.sentence()


def test_time_when_still_approaching_at_the_end():
    tcp = flat(0.30, 10) + [0.30 - 0.01 * k for k in range(1, 11)]  # 1 cm closer every step
    t = triage(episode(tcp))
    assert t.reason == "time" and t.evidence["progress"] == pytest.approx(0.05)
    # the same approach that stalled for the last window is a reach failure
    assert triage(episode(tcp + flat(0.20, 6))).reason == "reach"


def test_time_after_the_grasp_reads_the_distance_to_the_goal():
    goal = flat(0.3, 12) + [0.3 - 0.02 * k for k in range(1, 9)]
    t = triage(episode(flat(0.01), goal=goal, grasped=set(range(8, 20))))
    assert t.reason == "time" and t.evidence["progress"] == pytest.approx(0.10)
    # the TCP closing in before the grasp does not count once the object is held
    assert triage(episode(flat(0.01), goal=flat(0.3), grasped=set(range(8, 20)))).reason == "place"


def test_unknown_without_ground_truth():
    facts = [StepFacts.from_info(i, {"success": False}) for i in range(5)]
    t = triage(facts)
    assert t.reason == "unknown" and not t.failed
    json.dumps(t.evidence)  # JSON-ready


def test_thresholds_are_the_named_constants():
    just_in = episode(flat(tr.REACH_DISTANCE))
    just_out = episode(flat(tr.REACH_DISTANCE + 1e-3))
    assert triage(just_in).reason == "grasp" and triage(just_out).reason == "reach"
    assert tr.counts(["reach", "reach", "time"]) == {r: {"reach": 2, "time": 1}.get(r, 0) for r in tr.REASONS}


def test_sim_reports_the_distances_and_the_expert_succeeds():
    """The built-in sim's info carries what triage reads; the expert's episode triages as success."""
    from workbench.sim import make

    env = make("tabletop_move_near", width=64, height=48, depth=False)
    try:
        obs, info = env.reset(seed=1)
        assert info["tcp_to_object"] > 0.05 and info["object_to_goal"] > 0.1
        facts = []
        for t in range(env.max_episode_steps):
            obs, _, term, trunc, info = env.step(env.expert().act(obs))
            facts.append(StepFacts.from_info(t + 1, info))
            if term or trunc:
                break
    finally:
        env.close()
    verdict = triage(facts)
    assert verdict.reason == "success"
    assert verdict.evidence["min_tcp_to_object"] < 0.01  # the expert grasps within 1 cm
    assert verdict.evidence["first_grasp_step"] is not None  # move_near reports its grasp flag


@pytest.mark.slow
def test_a_real_failed_probe_episode_has_a_reason():
    """vanilla-tiny (no spatial answer, fails) on the built-in sim, through the probe's runner."""
    import torch

    from workbench.policy.policy import ST4VLAPolicy
    from workbench.probe import ProbeSpec, run_probe

    torch.set_num_threads(1)
    ckpt = Path(__file__).resolve().parents[1] / "assets" / "checkpoints" / "vanilla-tiny"
    policy = ST4VLAPolicy.load(str(ckpt))
    spec = ProbeSpec(task="tabletop_pick", objects=["red cube"], instructions=[""], seeds=[0], max_steps=12,
                     num_ddim_steps=2, width=224, height=168)  # fmt: skip
    row = run_probe(spec, policy).rows[0]
    assert not row.success
    assert row.triage in tr.FAILURES
    assert row.triage != "grounding"  # vanilla writes no spatial answer: never blamed on it
    assert row.evidence["min_tcp_to_object"] > 0 and row.evidence["answered_steps"] == 0
    assert row.why and row.why.startswith(tr.DESCRIPTIONS[row.triage])


def _records(tcp, branch="main", start=0, truncated_at=None):
    import numpy as np

    from workbench.records import Observation, PolicyStep, StepRecord

    out = []
    for k, d in enumerate(tcp):
        step = start + k
        obs = Observation(images={"cam": np.zeros((4, 4, 3), np.uint8)}, instruction="pick")
        out.append(StepRecord(step, obs, {"A": PolicyStep("A", "pick", metrics=NO_ANSWER)},
                              info={"tcp_to_object": d, "object_to_goal": 0.3, "success": False},
                              truncated=step == truncated_at, branch=branch))  # fmt: skip
    return out


def test_episode_line_at_the_end_only_and_on_the_branch_in_view():
    main = _records(flat(0.02, 10))  # main reached the object
    assert tr.episode_line(main) == "" and tr.episode_verdict(main) is None  # not ended yet
    line = tr.episode_line(main, ended=True)
    assert line.startswith("Why it failed: **grasp** — reached the object") and "2.0 cm" in line
    # a branch from step 4 that goes away from the object: its own steps after main's first four
    branch = _records(flat(0.2, 8), branch="b1", start=4, truncated_at=11)
    records = main[:4] + branch
    steps = tr.lineage(records, "b1")
    assert [(r.branch, r.step) for r in steps] == [("main", 0), ("main", 1), ("main", 2), ("main", 3)] + [
        ("b1", k) for k in range(4, 12)
    ]
    assert "**grasp**" in tr.episode_line(steps)  # main's first steps reached it (within 3 cm)
    far = tr.lineage(_records(flat(0.2, 4)) + branch, "b1")
    assert "**reach**" in tr.episode_line(far)
    assert tr.lineage(records, "nope") == [] and tr.episode_line([]) == ""
    won = _records(flat(0.01, 6))
    won[3].info["success"] = True
    assert tr.episode_line(won, ended=True) == "" and tr.episode_verdict(won, ended=True).reason == "success"
    for r in won:  # a recording: no ground truth, nothing to say
        r.info = {"success": False}
    assert tr.episode_line(won, ended=True) == "" and tr.episode_verdict(won, ended=True).reason == "unknown"
