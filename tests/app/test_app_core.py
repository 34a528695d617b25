"""The app's core without a browser: allowed folders, input checks, per-tab state, summaries."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest
from helpers import rrd_columns

from panels import app
from panels.state import AllowedPaths, AppConfig, AppError, PathNotAllowedError, clean_instruction
from panels.state.core import Workbench
from panels.state.specs import PolicySettings
from panels.state.summary import point_markdown, step_summary
from workbench.policy.checkpoint import is_checkpoint_dir
from workbench.records import Observation, PolicyStep, StepRecord
from workbench.spatial import Box, SpatialAnswer


@pytest.fixture
def dirs(tmp_path):
    allowed = tmp_path / "allowed"
    (allowed / "ckpt").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("no")
    return allowed, outside


def test_allowed_paths_resolve_inside_and_reject_outside(dirs):
    allowed, outside = dirs
    paths = AllowedPaths([allowed], what="checkpoint", flag="--checkpoint-dirs")
    assert paths.resolve("ckpt") == (allowed / "ckpt").resolve()
    assert paths.resolve(str(allowed / "ckpt")) == (allowed / "ckpt").resolve()
    with pytest.raises(PathNotAllowedError, match="--checkpoint-dirs"):
        paths.resolve(str(outside / "secret.txt"))
    with pytest.raises(AppError, match="inside the allowed folders"):
        paths.resolve("../outside/secret.txt")  # relative escape is never looked up outside
    with pytest.raises(AppError, match="No checkpoint path"):
        paths.resolve("   ")
    with pytest.raises(AppError, match="NUL"):
        paths.resolve("ckpt\x00")


def test_symlink_escaping_the_allowed_folder_is_rejected(dirs):
    allowed, outside = dirs
    (allowed / "link").symlink_to(outside)
    paths = AllowedPaths([allowed])
    with pytest.raises(AppError):
        paths.resolve("link/secret.txt")
    with pytest.raises(PathNotAllowedError):
        paths.resolve(str(allowed / "link" / "secret.txt"))
    assert (allowed / "link").resolve() not in paths.listing("*")


def test_clean_instruction():
    assert clean_instruction("  put   the carrot\non the plate ") == ("put the carrot on the plate", [])
    text, warnings = clean_instruction("pick\x07 the cube")
    assert text == "pick the cube" and "Control characters" in warnings[0]
    for bad in ("", "   ", None, "\x00\x01"):
        with pytest.raises(AppError):
            clean_instruction(bad)
    with pytest.raises(AppError, match="keep it under"):
        clean_instruction("pick " * 100)


def test_settings_are_checked():
    with pytest.raises(AppError, match="DDIM"):
        PolicySettings(num_ddim_steps=0)
    with pytest.raises(AppError, match="CFG"):
        PolicySettings(cfg_scale=-1)


def test_cli_defaults_bind_localhost_and_take_dirs(tmp_path):
    cfg = app.parse_args([])
    assert cfg.host == "127.0.0.1" and cfg.port == 7860
    cfg = app.parse_args(
        ["--checkpoint-dirs", str(tmp_path), "--sessions-dir", str(tmp_path / "s"), "--port", "9"]
    )
    assert cfg.checkpoint_dirs == [tmp_path.resolve()] and cfg.sessions_dir == (tmp_path / "s").resolve()
    with pytest.raises(ValueError):
        AppConfig(port=70000)


def test_free_port_skips_a_busy_one():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        assert app.free_port("127.0.0.1", busy) != busy


def test_checkpoint_listing_and_broken_checkpoint(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    (good / "config.json").write_text("{}")
    (good / "model.safetensors").write_bytes(b"not really")
    (tmp_path / "empty").mkdir()
    wb = Workbench(AppConfig(checkpoint_dirs=[tmp_path]))
    assert is_checkpoint_dir(good) and not is_checkpoint_dir(tmp_path / "empty")
    assert wb.list_checkpoints() == [str(good.resolve())]
    with pytest.raises(AppError, match="not a checkpoint folder"):
        wb.load_policy(str(tmp_path / "empty"))
    with pytest.raises(AppError, match="Could not load the checkpoint good"):
        wb.load_policy("good")  # a broken file is a message, not a crash
    with pytest.raises(PathNotAllowedError):
        wb.load_policy("/etc")


def _record(step: int = 3) -> StepRecord:
    obs = Observation(images={"main": np.zeros((100, 200, 3), np.uint8)}, instruction="pick the cube")
    answer = SpatialAnswer(
        text='{"label": "cube", "bbox_2d": [10, 20, 30, 40]}', geometry=[Box(10, 20, 30, 40, "cube")]
    )
    ps = PolicyStep(policy="A", instruction="pick the cube", spatial=answer, executed=np.arange(7) / 10)
    return StepRecord(step=step, observation=obs, policies={"A": ps}, executed_action=np.arange(7) / 10)


def test_tab_needs_load_and_marks_points_inside_the_image():
    tab = Workbench(AppConfig()).new_tab()
    for call in (tab.reset, lambda: tab.step(1), tab.reask, lambda: tab.set_instruction("pick")):
        with pytest.raises(AppError, match="press Load"):
            call()
    with pytest.raises(AppError, match="Reset first"):
        tab.mark_point(1, 1)
    tab.records = [_record()]
    with pytest.raises(AppError, match="outside the 200x100"):
        tab.mark_point(250, 10)
    tab.mark_point(20, 34)
    assert tab.point_report() == {"A": {"distance": pytest.approx(4.0), "inside": True}}  # centre (20, 30)
    assert "4.0 px" in point_markdown(tab) and "inside its box" in point_markdown(tab)
    assert tab.edits[-1] == {
        "kind": "user_point",
        "step": 3,
        "branch": "main",
        "x": 20.0,
        "y": 34.0,
        "report": tab.point_report(),
    }  # saved with the session
    tab.mark_point(5, 5)
    assert tab.point_report()["A"]["inside"] is False and "**outside** its box" in point_markdown(tab)


def test_the_page_offers_every_object_split_and_a_novel_load_moves_a_novel_mesh():
    from panels.source import OBJECT_SPLITS
    from panels.state.specs import SourceSpec
    from workbench.sim import catalog

    assert OBJECT_SPLITS == ("seen", "unseen", "novel")
    tab = Workbench(AppConfig(demo_checkpoint="/nonexistent")).new_tab()
    record = tab.load(SourceSpec(task="tabletop_pick", seed=3, split="novel"), [""], PolicySettings())
    obs = record.observation
    assert catalog.get(obs.ground_truth.object_label).split == "novel" and "gadget" in obs.instruction
    with pytest.raises(ValueError, match="no novel object to move"):  # the page shows this message
        tab.load(SourceSpec(task="tabletop_stack", seed=3, split="novel"), [""], PolicySettings())
    tab.release()


def test_two_tabs_share_no_state():
    wb = Workbench(AppConfig())
    a, b = wb.new_tab(), wb.new_tab()
    a.records = [_record()]
    a.mark_point(5, 5)
    assert a.id != b.id and b.records == [] and b.user_point is None and b.edits is not a.edits


def test_step_summary_is_json_ready():
    s = step_summary(_record())
    assert s["step"] == 3 and s["instruction"] == "pick the cube"
    assert s["policies"]["A"]["predicted_centre"] == [20.0, 30.0]
    assert s["executed_action"][:2] == [0.0, 0.1]
    assert step_summary(None) == {}


def test_seed_is_checked():
    from panels.state.specs import SourceSpec

    for bad in (1e30, int(1e30), -1, 2**32, 0.5, float("nan"), float("inf"), None):
        with pytest.raises(AppError, match=r"Seed must be a whole number in 0\.\.4294967295"):
            SourceSpec(seed=bad)
    assert SourceSpec(seed=7.0).seed == 7 and isinstance(SourceSpec(seed=7.0).seed, int)


def test_the_server_warms_up_while_the_page_opens(tmp_path, capsys):
    from helpers import CHECKPOINTS

    demo = CHECKPOINTS / "st4vla-tiny"
    if not demo.is_dir():
        pytest.skip("the bundled demo checkpoint is not here")
    wb = Workbench(AppConfig(sessions_dir=tmp_path / "sessions"))
    app.preload(wb).join(timeout=120)
    assert str(demo) in wb._policies  # the first Load finds it in the cache
    assert "workbench app: ready (st4vla-tiny read and stepped once in" in capsys.readouterr().out
    assert not (tmp_path / "sessions").exists() or not any((tmp_path / "sessions").iterdir())  # no trace
    assert not [t for t in threading.enumerate() if "RecordingStream" in t.name]  # its tab was released
    assert app.preload(Workbench(AppConfig(sessions_dir=tmp_path, demo_session="sample"))) is None


def test_load_form_carries_the_state_mapping_the_page_names():
    from panels.source import LOAD_WIDGETS, MAPPING_CHOICES, LoadForm
    from workbench.compat import MAPPINGS

    values = dict(ckpt="", ckpt_b="", mode="shared", kind="simpler", task="", seed=0, split="seen", obj="",
                  episode="", simpler_task="widowx_carrot_on_plate", ddim=2, cfg=1.5, horizon=7, alpha=0.1,
                  instruction="")  # fmt: skip
    assert LOAD_WIDGETS[-1] == "state_mapping"  # last, so API clients that leave it out get automatic
    assert LoadForm(*values.values()).source().state_mapping == ""
    spec = LoadForm(*values.values(), "neutral").source()
    assert (
        spec.kind == "simpler" and spec.task == "widowx_carrot_on_plate" and spec.state_mapping == "neutral"
    )
    assert [v for _, v in MAPPING_CHOICES] == ["", *MAPPINGS]


def _streamed_image_columns(tab, tmp_path) -> set[str]:
    """The archetype columns of the camera images in the tab's viewer stream so far."""
    path = tmp_path / f"{tab.id}.rrd"
    path.write_bytes(tab.viewer_bytes())
    return {
        n for e, columns in rrd_columns(path).items() if e.endswith("world/camera/image") for n in columns
    }


def test_the_viewer_gets_raw_camera_images_unless_jpeg_is_asked_for(tmp_path):
    from panels.state.specs import SourceSpec

    assert app.parse_args([]).viewer_images == "raw"
    assert app.parse_args(["--viewer-images", "jpeg"]).viewer_images == "jpeg"
    with pytest.raises(ValueError, match="viewer_images"):
        AppConfig(viewer_images="png")
    for images, column in (("raw", "Image:buffer"), ("jpeg", "EncodedImage:blob")):
        tab = Workbench(AppConfig(demo_checkpoint="/nonexistent", viewer_images=images)).new_tab()
        tab.load(SourceSpec(task="tabletop_pick", seed=3), [""], PolicySettings())
        tab.step(1)
        columns = _streamed_image_columns(tab, tmp_path)
        assert column in columns and not any(
            c.startswith("Encoded" if images == "raw" else "Image:") for c in columns
        )
        tab.release()
