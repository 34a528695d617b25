"""The SimplerEnv adapter, against a fake `simpler_env` package (tests/fake_simpler) that copies the real
SimplerEnv's facts: make(task) -> TimeLimit-wrapped env, the ManiSkill2 obs dict with turned robot
bases, WidowX 8 joints at 5 Hz with an absolute gripper, the Google robot 11 joints at 3 Hz with a
relative gripper, the real cameras, Box(7) actions, the per-task info keys, terminated = success,
truncation at the limit. A fake `sapien` next to it lets the diagnosis meet each way SimplerEnv fails.

The fake runs in a real subprocess through the real server script and pipe. The real SimplerEnv was
checked by hand (docs/simplerenv.md); CI cannot build it.
"""

from __future__ import annotations

import stat
import sys

import numpy as np
import pytest
import torch
from helpers import CHECKPOINTS, TESTS

from workbench.compat import IncompatibleSource
from workbench.controller import base_rotation, project_path
from workbench.runner import PolicySlot, Runner
from workbench.sim import make, simpler, to_observation
from workbench.sim.base import Env, SimEnv
from workbench.sim.simpler import PYTHON_ENV_VAR, SimplerEnvAdapter, SimplerUnavailable, diagnose
from workbench.sources import SimSource

torch.set_num_threads(1)
FAKE = TESTS / "fake_simpler"
BUNDLED = CHECKPOINTS / "st4vla-tiny"
WIDOWX_START = np.array([-0.14507, 0.03409, 1.00532])  # the real tcp after reset(seed=0)


@pytest.fixture(scope="module")
def fake_path():
    return str(FAKE)


@pytest.fixture(scope="module")
def widowx(fake_path):
    env = make("widowx_carrot_on_plate", python=sys.executable, env_vars={"PYTHONPATH": fake_path})
    yield env
    env.close()


@pytest.fixture(scope="module")
def tiny():
    from workbench.policy import ST4VLAPolicy

    return ST4VLAPolicy.load(BUNDLED)


# -- diagnose: each failure told apart, with its fix -----------------------------------------------------


def test_no_interpreter_configured_gives_a_clear_error(monkeypatch):
    monkeypatch.delenv(PYTHON_ENV_VAR, raising=False)
    with pytest.raises(SimplerUnavailable, match=PYTHON_ENV_VAR) as e:
        make("widowx_carrot_on_plate")
    assert e.value.problem == "interpreter"
    with pytest.raises(SimplerUnavailable, match="missing or not an executable") as e:
        SimplerEnvAdapter("widowx_carrot_on_plate", python="/nonexistent/python")
    assert e.value.problem == "interpreter"


def test_an_interpreter_that_does_not_run_python_is_named(tmp_path):
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'this is not python' >&2\nexit 3\n")
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(
        SimplerUnavailable, match=r"does not run Python scripts \(exit 3\): this is not python"
    ) as e:
        diagnose(str(broken))
    assert e.value.problem == "interpreter"


def test_interpreter_without_simpler_env_is_detected_up_front():
    report = diagnose(sys.executable)  # this venv really has no simpler_env (nor sapien)
    assert report["simpler_env"] is False and "simpler_env" in report["simpler_error"]
    assert report["problem"] == "simpler_env"
    with pytest.raises(SimplerUnavailable, match="simpler_env is not importable.*Install SimplerEnv") as e:
        SimplerEnvAdapter("widowx_carrot_on_plate", python=sys.executable)
    assert e.value.problem == "simpler_env"


@pytest.mark.parametrize(
    ("fail", "problem", "says"),
    [
        (
            "loader",
            "vulkan_loader",
            r"the Vulkan loader libvulkan\.so\.1 is not found .* apt install libvulkan1",
        ),
        (
            "device",
            "vulkan_device",
            r"no Vulkan device \(RuntimeError: Cannot find a suitable rendering device\)",
        ),
        ("render", "render", r"rendering a frame fails \(.*ErrorExtensionNotPresent\).*Mesa older than 26"),
        (
            "crash",
            "render",
            r"rendering a frame fails \(the diagnosis process died during rendering a frame\)",
        ),
    ],
)
def test_each_vulkan_failure_is_told_apart(fake_path, fail, problem, says):
    env_vars = {"PYTHONPATH": fake_path, "FAKE_SAPIEN": fail}
    report = diagnose(sys.executable, env_vars)
    assert report["problem"] == problem
    with pytest.raises(SimplerUnavailable, match=says) as e:
        SimplerEnvAdapter("widowx_carrot_on_plate", python=sys.executable, env_vars=env_vars)
    assert e.value.problem == problem
    assert "Install SimplerEnv" not in str(e.value)  # a missing loader is not a missing package


def test_a_working_setup_diagnoses_clean(fake_path):
    report = diagnose(sys.executable, {"PYTHONPATH": fake_path})
    assert report["problem"] == "" and report["simpler_env"] and report["vulkan"] and report["render"]


# -- the adapter speaks SimplerEnv ----------------------------------------------------------------------


def test_adapter_speaks_the_protocol(widowx):
    assert isinstance(widowx, Env) and not isinstance(widowx, SimEnv)  # no ground truth in SimplerEnv
    assert widowx.gripper_convention == "absolute_open_positive" and widowx.control_hz == 5
    assert widowx.max_episode_steps == 60 and widowx.main_camera == "3rd_view_camera"
    assert widowx.image_size == (640, 480) and len(widowx.state_names) == 8
    assert widowx.state_names[0] == "waist"
    np.testing.assert_allclose(widowx.base_pose, [0.147, 0.028, 0.87, 0, 0, 0, 1], atol=1e-6)  # before reset
    obs, info = widowx.reset(seed=3)
    assert info["episode_id"] == 3 and "scene_table_height" in info
    rgb = obs["image"]["3rd_view_camera"]["rgb"]
    assert rgb.dtype == np.uint8 and rgb.shape == (480, 640, 3)
    assert set(obs["camera_param"]["3rd_view_camera"]) == {"intrinsic_cv", "extrinsic_cv", "cam2world_gl"}
    assert obs["extra"]["tcp_pose"].shape == (7,) and obs["agent"]["qpos"].shape == (8,)
    np.testing.assert_allclose(
        base_rotation(obs["agent"]["base_pose"]), np.diag([-1.0, -1.0, 1.0]), atol=1e-6
    )
    np.testing.assert_allclose(widowx.base_pose, obs["agent"]["base_pose"])
    assert widowx.get_language_instruction() == "put carrot on plate"
    obs, reward, terminated, truncated, info = widowx.step(np.array([0.05, 0, 0, 0, 0, 0, -1.0]))
    assert {
        "moved_correct_obj",
        "moved_wrong_obj",
        "is_src_obj_grasped",
        "consecutive_grasp",
        "src_on_target",
        "success",
        "episode_stats",
        "elapsed_steps",
    } <= set(info)
    assert info["is_src_obj_grasped"] is True and info["episode_stats"]["moved_correct_obj"] is True
    # +x in the turned base is -x in the world
    np.testing.assert_allclose(obs["extra"]["tcp_pose"][:3], WIDOWX_START + [-0.05, 0, 0], atol=1e-5)
    for _ in range(2):
        obs, reward, terminated, truncated, info = widowx.step(np.array([0.05, 0, 0, 0, 0, 0, 1.0]))
    assert terminated is True and info["success"] is True and reward == 1.0
    o = to_observation(widowx, obs)
    assert o.images["3rd_view_camera"].shape == (480, 640, 3) and o.ground_truth is None
    assert o.cameras["3rd_view_camera"].width == 640 and o.instruction == "put carrot on plate"
    assert o.base_pose is not None and o.state.shape == (8,)


def test_truncation_at_the_time_limit(widowx):
    widowx.reset()
    truncated = False
    for t in range(60):
        _, _, terminated, truncated, _ = widowx.step(np.zeros(7))
        assert not terminated and truncated == (t == 59)
    assert truncated


def test_bad_actions_never_reach_simplerenv(widowx):
    widowx.reset()
    for bad in ([np.nan] * 7, [0.0] * 8, np.zeros((1, 7))):
        with pytest.raises(ValueError):
            widowx.step(bad)
    obs, *_, info = widowx.step(np.array([5.0, 0, 0, 0, 0, 0, 1]))  # out of Box(7): clipped to 1
    assert info["action_clipped"] is True
    np.testing.assert_allclose(obs["extra"]["tcp_pose"][0], WIDOWX_START[0] - 1.0, atol=1e-5)


def test_google_robot_task_keys_and_convention(fake_path):
    env = make(
        "google_robot_pick_coke_can",
        python=sys.executable,
        env_vars={"PYTHONPATH": fake_path},
        images=("rgb", "depth"),
    )
    try:
        assert env.gripper_convention == "relative_close_positive" and env.control_hz == 3
        assert env.main_camera == "overhead_camera" and env.max_episode_steps == 80
        assert env.image_size == (640, 512) and len(env.state_names) == 11
        assert env.state_names[-2:] == ("joint_head_pan", "joint_head_tilt")
        obs, info = env.reset()
        assert {"model_id", "scene_name", "urdf_version"} <= set(info)
        assert obs["image"]["overhead_camera"]["rgb"].shape == (512, 640, 3)
        assert obs["image"]["overhead_camera"]["depth"].dtype == np.float32
        assert obs["agent"]["qpos"].shape == (11,)
        np.testing.assert_allclose(
            base_rotation(obs["agent"]["base_pose"]), np.diag([-1.0, -1.0, 1.0]), atol=1e-6
        )
        _, _, _, _, info = env.step(np.zeros(7))
        assert {
            "is_grasped",
            "consecutive_grasp",
            "lifted_object",
            "lifted_object_significantly",
            "success",
        } <= set(info)
    finally:
        env.close()


def test_server_errors_are_reported(fake_path):
    with pytest.raises(RuntimeError, match="Unknown task"):
        SimplerEnvAdapter("widowx_juggle", python=sys.executable, env_vars={"PYTHONPATH": fake_path})


# -- a policy through SimplerEnv, as the app runs it ----------------------------------------------------


def _simpler_source(monkeypatch, fake_path, task):
    """What the app does: WORKBENCH_SIMPLER_PYTHON names the interpreter, make(task) (no keywords)."""
    monkeypatch.setenv(PYTHON_ENV_VAR, sys.executable)
    monkeypatch.setenv("PYTHONPATH", fake_path)
    monkeypatch.setattr(simpler, "_DIAGNOSED_OK", set())  # this interpreter is diagnosed clean only here
    return SimSource(make(task), lambda: make(task))


def test_an_unfit_state_is_refused_at_construction_with_the_report(monkeypatch, fake_path, tiny):
    source = _simpler_source(monkeypatch, fake_path, "widowx_carrot_on_plate")
    try:
        with pytest.raises(IncompatibleSource) as e:
            Runner(source, [PolicySlot("A", tiny, num_ddim_steps=2)])
        text = str(e.value)
        assert "only the spatial answer works" in text
        assert "reads 9 joint values" in text and "gives 8 (waist, shoulder" in text
        assert "choose one of neutral" in text
    finally:
        source.close()


def test_st4vla_tiny_steps_widowx_with_a_mapping_and_draws_from_the_gripper(monkeypatch, fake_path, tiny):
    source = _simpler_source(monkeypatch, fake_path, "widowx_carrot_on_plate")
    # horizon 1: the executed action is the chunk's first row, so the path's first step is checkable
    slot = PolicySlot("A", tiny, num_ddim_steps=2, state_mapping="neutral", ensemble_horizon=1)
    runner = Runner(source, [slot])
    try:
        report = runner.compatibility["A"]
        assert report.mapping.name == "neutral" and any(
            "state mapping 'neutral'" in w for w in report.warnings
        )
        records = [runner.reset(seed=0), *runner.run(10)]
        assert [r.step for r in records] == list(range(11))
        turn = base_rotation(records[0].observation.base_pose)
        for before, after in zip(records, records[1:], strict=False):
            obs, chunk = before.observation, before.policies["A"].chunk
            cam = obs.cameras["3rd_view_camera"]
            assert chunk.ee_path_2d is not None
            drawn = np.asarray(chunk.ee_path_2d.points)
            gripper = np.asarray(project_path(cam, obs.tcp_pose[None, :3]).points[0])
            np.testing.assert_allclose(drawn[0], gripper, atol=1e-6)  # drawn from the gripper
            assert 0 <= drawn[0][0] < 640 and 0 <= drawn[0][1] < 480
            moved = after.observation.tcp_pose[:3] - obs.tcp_pose[:3]
            np.testing.assert_allclose(moved, turn @ before.executed_action[:3], atol=1e-5)
            np.testing.assert_allclose(chunk.ee_path_3d[1], after.observation.tcp_pose[:3], atol=1e-5)
            went = np.asarray(project_path(cam, after.observation.tcp_pose[None, :3]).points[0])
            np.testing.assert_allclose(
                drawn[1], went, atol=1e-3
            )  # its first step lands where the gripper went
    finally:
        runner.close()


def test_google_robot_runs_with_app_defaults(monkeypatch, fake_path, tiny):
    source = _simpler_source(monkeypatch, fake_path, "google_robot_pick_coke_can")
    runner = Runner(source, [PolicySlot("A", tiny, num_ddim_steps=2, state_mapping="neutral")])
    try:
        topics = {f.topic for f in runner.compatibility["A"].findings if f.level == "warning"}
        assert topics == {"state", "gripper", "rate"}
        assert "the robot base is turned 180 degrees about z" in runner.compatibility["A"].text()
        records = [runner.reset(seed=0), *runner.run(3)]
        assert records[0].executed_action[6] == 0.0  # relative: the first step has no change to command
        assert records[-1].observation.images["overhead_camera"].shape == (512, 640, 3)
    finally:
        runner.close()


def test_the_app_says_at_load_what_works_and_which_mapping(monkeypatch, fake_path, tmp_path):
    """Load in the app: SimplerEnv widowx_carrot_on_plate with the bundled st4vla-tiny."""
    from panels.state.config import AppConfig, AppError
    from panels.state.core import Workbench
    from panels.state.specs import PolicySettings, SourceSpec

    monkeypatch.setenv(PYTHON_ENV_VAR, sys.executable)
    monkeypatch.setenv("PYTHONPATH", fake_path)
    monkeypatch.setattr(simpler, "_DIAGNOSED_OK", set())
    diagnoses = []
    monkeypatch.setattr(
        simpler, "diagnose", lambda *a, _run=simpler.diagnose, **kw: diagnoses.append(a) or _run(*a, **kw)
    )
    app = Workbench(AppConfig(sessions_dir=tmp_path / "sessions"))
    assert app.simpler_status() == (True, "")
    tab = app.new_tab()
    settings = PolicySettings(num_ddim_steps=2)
    spec = SourceSpec(kind="simpler", task="widowx_carrot_on_plate")
    try:
        tab.load(spec, [str(BUNDLED)], settings)
        notes = tab.take_notes()
        assert any(
            "widowx_carrot_on_plate: the spatial answer works; actions run with state mapping 'neutral'" in n
            for n in notes
        )
        assert any("reads 9 joint values" in n and "picked automatically" in n for n in notes)
        assert tab.source.state_mapping == "" and tab.source.state_mapping_used == "neutral"
        assert len(diagnoses) == 1  # the adapter reuses the app's clean diagnosis (10-30 s on a CPU)
        records = tab.step(10)
        assert len(records) == 10 and all(r.policies for r in records)
        # a mapping the user names that cannot work is refused at Load, in words
        with pytest.raises(AppError, match="state mapping 'as_is' cannot work here"):
            tab.load(
                SourceSpec(kind="simpler", task="widowx_carrot_on_plate", state_mapping="as_is"),
                [str(BUNDLED)],
                settings,
            )
    finally:
        tab.close()
