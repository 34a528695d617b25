"""Rerun logging and overlays on StepRecords (no model needed: records are plain data)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import expected_entities, make_record, rrd_columns

from workbench.spatial import Box
from workbench.viz import blueprints, overlay
from workbench.viz.rerun_log import ACTION_DIMS, RerunLogger, rrd_entities_by_step


def test_rrd_holds_expected_entities_at_every_step(tmp_path):
    path = tmp_path / "rec.rrd"
    logger = RerunLogger(rrd_path=path, stream=True, blueprint=blueprints.side_by_side(["A", "B"]))
    records = [make_record(s) for s in range(4)]
    streamed = 0
    for r in records:
        logger.write(r)
        streamed += len(logger.read())
    logger.close()
    assert streamed > 0, "the binary stream must carry the data for the app"
    by_step = rrd_entities_by_step(path)
    assert sorted(by_step) == [0, 1, 2, 3]
    for r in records:
        want = expected_entities(r)
        assert "world/camera/image" in want and "world/camera/B/spatial/boxes" in want
        assert (
            "world/camera/A/rollout" in want and "actions/A" in want and "timings" in want and "log/B" in want
        )
        assert by_step[r.step] == want


def test_an_answer_that_disappears_is_cleared_not_left_stale(tmp_path):
    path = tmp_path / "rec.rrd"
    logger = RerunLogger(rrd_path=path, stream=False)
    first, second = make_record(0, policies=("A",)), make_record(1, policies=("A",))
    second.policies["A"].spatial = None  # e.g. the grounding query was switched off
    second.observation.ground_truth.key_points = []
    for r in (first, second, make_record(2, policies=("A",))):
        logger.write(r)
    logger.close()
    cleared = rrd_entities_by_step(path, clears=True)
    gone = {
        "world/camera/A/spatial/boxes",
        "world/camera/A/spatial/points",
        "world/camera/ground_truth/points",
    }
    assert cleared[1] == gone
    assert 0 not in cleared and 2 not in cleared  # nothing is cleared that was not there
    assert gone <= rrd_entities_by_step(path)[2]


def test_branch_records_live_under_their_own_root(tmp_path):
    path = tmp_path / "rec.rrd"
    logger = RerunLogger(rrd_path=path, stream=False)
    logger.write(make_record(0, policies=("A",)))
    logger.write(make_record(0, policies=("A",), branch="paraphrase"))
    logger.close()
    ents = rrd_entities_by_step(path)[0]
    assert "world/camera/image" in ents and "branches/paraphrase/world/camera/image" in ents


def test_logger_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="somewhere to write"):
        RerunLogger(stream=False)
    with pytest.raises(ValueError, match="jpeg_quality"):
        RerunLogger(jpeg_quality=0)
    bad = make_record(0, policies=())
    bad.executed_action = np.zeros(6)
    logger = RerunLogger(stream=True)
    with pytest.raises(ValueError, match="7 dims"):
        logger.write(bad)


def test_blueprints_build_and_validate():
    assert blueprints.one_policy("A") is not None
    assert blueprints.instruction_ab("A", "B", instruction_a="pick carrot", instruction_b="grab the carrot")
    assert blueprints.side_by_side(["A", "B"], branches=["A", "B"])
    with pytest.raises(ValueError, match="one branch per policy"):
        blueprints.side_by_side(["A", "B"], branches=["A"])


def test_overlay_draws_in_policy_and_ground_truth_colours():
    r = make_record(0, policies=("A",))
    out = overlay.draw_step(r, scale=2, caption=False)
    assert out.shape == (448, 448, 3) and out.dtype == np.uint8
    # the ground-truth carrot box's left edge (x=80, y=60..100, scaled x2) is drawn green
    edge = out[124:194, 160]
    assert (np.abs(edge.astype(int) - overlay.GROUND_TRUTH).sum(-1) < 60).mean() > 0.8
    # the target (plate) box is drawn in the target colour
    edge = out[280, 310:390]
    assert (np.abs(edge.astype(int) - overlay.TARGET).sum(-1) < 60).mean() > 0.8
    # the rollout trace dots are drawn in slot A's colour
    x, y = 2 * 120, 2 * 102
    assert np.abs(out[y, x].astype(int) - overlay.policy_color(0)).sum() < 60
    with pytest.raises(ValueError, match="uint8"):
        overlay.draw_geometry(np.zeros((4, 4), np.float32), [], (0, 0, 0))


def test_camera_views_are_pinned_to_the_image_when_its_size_is_known():
    pinned = blueprints.camera_view("A", image_size=(224, 168))
    bounds = pinned.properties["VisualBounds2D"].range.as_arrow_array().to_pylist()
    assert bounds == [{"x_range": [0.0, 224.0], "y_range": [0.0, 168.0]}]
    assert "VisualBounds2D" not in blueprints.camera_view("A").properties  # before the first image


def _logged_labels(path) -> dict[str, list[str]]:
    """entity -> the non-empty text labels logged there."""
    return {
        entity: [t for row in rows if row for t in row if t]
        for entity, columns in rrd_columns(path).items()
        for name, rows in columns.items()
        if name.endswith(":labels")
    }


def test_one_label_per_object_and_no_attention_by_default(tmp_path):
    """The carrot is named once (its ground-truth box), not again by its key point or by A's and B's
    boxes; the target's name once; a policy naming something the scene lacks keeps its label."""
    record = make_record(0, policies=("A", "B"))
    record.policies["B"].spatial.geometry.append(Box(10, 10, 20, 20, "unicorn"))
    path = tmp_path / "labels.rrd"
    logger = RerunLogger(rrd_path=path, stream=False)
    logger.write(record)
    logger.close()
    labels = _logged_labels(path)
    every = [t for texts in labels.values() for t in texts]
    assert every.count("carrot") == 1 and every.count("plate") == 1
    assert labels["world/camera/ground_truth/boxes"] == ["carrot", "plate"]
    assert labels["world/camera/B/spatial/boxes"] == ["unicorn"]
    assert "world/camera/A/attention" not in rrd_entities_by_step(path)[0]  # attention is off by default
    with_attention = tmp_path / "attention.rrd"
    logger = RerunLogger(rrd_path=with_attention, stream=False, attention=True)
    logger.write(record)
    logger.close()
    assert "world/camera/A/attention" in rrd_entities_by_step(with_attention)[0]


def test_legend_has_one_colour_per_policy_and_none_shared_with_ground_truth():
    rows = overlay.legend(["st4vla-tiny", "vanilla-tiny"])
    colours = [c for _, c, _ in rows]
    assert len(set(colours)) == len(colours) == 5
    assert {style for what, _, style in rows if what.startswith(("ground", "expert"))} == {"thin"}
    html = overlay.legend_html(["st4vla-tiny", "a<b"])
    assert "st4vla-tiny: its answer and rollout" in html and "a&lt;b" in html


def test_grounding_plot_keeps_counts_off_the_iou_axis():
    from workbench.viz import plots

    records = [make_record(s, policies=("A",)) for s in range(3)]
    for r in records:
        r.policies["A"].metrics = {"box_iou": 0.5, "num_predicted": 2.0, "point_distance": 12.0}
    fig = plots.grounding_error_figure(records)
    axis = {t.name: t.yaxis for t in fig.data}
    assert axis == {"A: box_iou": "y", "A: num_predicted": "y2", "A: point_distance": "y2"}
    assert list(fig.layout.yaxis.range) == [-0.02, 1.05] and fig.layout.yaxis2.overlaying == "y"


def _logged_image(path) -> tuple[list[str], bytes]:
    """(the archetype columns of world/camera/image, its first image's bytes)."""
    columns = rrd_columns(path)["world/camera/image"]
    data = next(n for n in columns if n.endswith((":buffer", ":blob")))
    return list(columns), bytes(columns[data][0][0])


def test_raw_images_are_logged_pixel_for_pixel_and_jpeg_stays_the_default(tmp_path):
    record = make_record(0, policies=("A",))
    pixels = record.observation.images[record.observation.main_camera]
    for name, quality in (("raw", None), ("jpeg", 75)):
        logger = RerunLogger(rrd_path=tmp_path / f"{name}.rrd", stream=False, jpeg_quality=quality)
        logger.write(record)
        logger.close()
    names, data = _logged_image(tmp_path / "raw.rrd")
    assert "Image:buffer" in names and not any(n.startswith("EncodedImage") for n in names)
    assert data == pixels.tobytes()  # lossless: the viewer draws exactly the frame the policy saw
    names, data = _logged_image(tmp_path / "jpeg.rrd")
    assert "EncodedImage:blob" in names and data[:2] == b"\xff\xd8"  # a JPEG stream
    assert RerunLogger(stream=True).jpeg_quality == 75


def _series_names(path, entity: str) -> list[str]:
    return rrd_columns(path)[entity]["SeriesLines:names"][0]


def test_a_recorded_action_is_labelled_as_its_dataset_names_it(tmp_path):
    names = ("x", "y", "z", "roll", "pitch", "yaw", "gripper_open")  # e.g. a dataset's info.json names
    record = make_record(0, policies=("A",))
    record.recorded_action = np.zeros(7)
    for given, expected in ((names, list(names)), (names[:3], list(ACTION_DIMS))):  # 3 names: unusable
        path = tmp_path / f"{len(given)}.rrd"
        logger = RerunLogger(rrd_path=path, stream=False, recorded_action_names=given)
        logger.write(record)
        logger.close()
        assert _series_names(path, "actions/recorded") == expected
        assert _series_names(path, "actions/executed") == list(ACTION_DIMS)  # the workbench's own actions
