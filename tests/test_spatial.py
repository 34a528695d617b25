"""The spatial grammar: parse/format round trips, robustness on arbitrary text, frames and metrics."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.records import GroundTruth
from workbench.spatial import (
    MAX_ANSWER_CHARS,
    Box,
    Frame,
    Point,
    SpatialAnswer,
    Trace,
    format,
    parse,
    to_model,
    to_original,
)
from workbench.spatial_metrics import (
    box_iou,
    centre_offset,
    discrete_frechet,
    grounding_metrics,
    object_centre,
    point_distance,
    point_in_box,
    resample_trace,
    trace_final_distance,
    trace_mean_distance,
)

# ---------------------------------------------------------------------------------------------
# Strategies: geometry on the integer grid of the model frame, mapped to the original image
# ---------------------------------------------------------------------------------------------

LABELS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(['say "cheese"', "ünïcödé 🥕", "back\\slash", "```json", "[]", "{}", "a\nb", ""]),
)
frames = st.builds(
    Frame,
    width=st.integers(28, 1400),
    height=st.integers(28, 1400),
    orig_width=st.integers(1, 4000),
    orig_height=st.integers(1, 4000),
)


@st.composite
def model_geometry(draw, frame: Frame, scale: int = 1):
    """One Point/Box/Trace with coordinates k/scale, k integers inside the model frame."""
    xs = st.integers(0, frame.width * scale).map(lambda k: k / scale if scale > 1 else k)
    ys = st.integers(0, frame.height * scale).map(lambda k: k / scale if scale > 1 else k)
    label = draw(LABELS)
    kind = draw(st.sampled_from(["point", "box", "trace"]))
    if kind == "point":
        return Point(draw(xs), draw(ys), label)
    if kind == "box":
        x1, x2 = sorted((draw(xs), draw(xs)))
        y1, y2 = sorted((draw(ys), draw(ys)))
        return Box(x1, y1, x2, y2, label)
    pts = draw(st.lists(st.tuples(xs, ys), min_size=1, max_size=8))
    return Trace(tuple(pts), label)


@st.composite
def frame_and_geometry(draw, scale: int = 1):
    frame = draw(frames)
    geometry = draw(st.lists(model_geometry(frame, scale), min_size=1, max_size=5))
    return frame, to_original(geometry, frame)  # pixels of the original image


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


@given(frame_and_geometry(), st.booleans())
@settings(max_examples=300, deadline=None)
def test_format_parse_round_trip_is_exact(fg, fence):
    frame, geometry = fg
    text = format(geometry, frame, fence=fence)
    answer = parse(text, frame)
    assert answer.problems == []
    assert answer.geometry == geometry  # exact, not approximate
    assert answer.frame == frame


@given(frame_and_geometry(scale=100))
@settings(max_examples=150, deadline=None)
def test_round_trip_with_decimals_is_exact(fg):
    frame, geometry = fg
    answer = parse(format(geometry, frame, decimals=2), frame)
    assert answer.problems == []
    assert answer.geometry == geometry


@given(st.data())
@settings(max_examples=100, deadline=None)
def test_round_trip_without_frame_keeps_pixels(data):
    geometry = data.draw(st.lists(model_geometry(Frame(640, 480, 640, 480)), min_size=1, max_size=4))
    answer = parse(format(geometry))  # no frame: integer pixels written and read as they are
    assert answer.problems == [] and answer.geometry == geometry


@given(frames, st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 1000)), min_size=1, max_size=6))
@settings(max_examples=100, deadline=None)
def test_normalized_1000_round_trip(frame, xy):
    text = json.dumps([{"label": "t", "trace_2d": [list(p) for p in xy]}], ensure_ascii=False)
    answer = parse(text, frame, normalized_1000=True)  # 0..1000 of the image -> original pixels
    assert answer.problems == []
    assert format(answer.geometry, frame, normalized_1000=True) == text


def test_format_writes_integers_in_the_model_frame():
    frame = Frame.fixed(640, 480)  # 224x224 model frame
    text = format([Box(320.0, 120.0, 480.0, 480.0, "carrot")], frame)
    assert text == '[{"label": "carrot", "bbox_2d": [112, 56, 168, 224]}]'
    assert format([Point(3.4, 4.6)]) == '[{"point_2d": [3, 5]}]'


def test_format_rejects_bad_geometry():
    with pytest.raises(ValueError, match="non-finite"):
        format([Point(math.nan, 1.0)])
    with pytest.raises(ValueError, match="empty Trace"):
        format([Trace(())])
    with pytest.raises(ValueError, match="needs the frame"):
        format([Point(1, 1)], normalized_1000=True)


# ---------------------------------------------------------------------------------------------
# Robustness: parse never raises, and what it returns is always sane
# ---------------------------------------------------------------------------------------------

PROSE = st.sampled_from(["", "Sure! ", "The answer is:\n", "}{ [oops] ", "```json\n", "\n```", " Done."])


def _answer_pool(n: int = 200, seed: int = 0) -> list[str]:
    """Valid answers built once (cheap for hypothesis to pick from, so 10,000 examples stay fast)."""
    rng = random.Random(seed)
    labels = ['say "cheese"', "ünïcödé 🥕", "back\\slash", "```", "[]", "{}", "a\nb", "", "carrot"]
    pool = []
    for _ in range(n):
        geometry = []
        for _ in range(rng.randint(0, 4)):
            label, kind = rng.choice(labels), rng.choice("pbt")
            x1, x2 = sorted(rng.randint(0, 640) for _ in range(2))
            y1, y2 = sorted(rng.randint(0, 480) for _ in range(2))
            if kind == "p":
                geometry.append(Point(x1, y1, label))
            elif kind == "b":
                geometry.append(Box(x1, y1, x2, y2, label))
            else:
                pts = [(rng.randint(0, 640), rng.randint(0, 480)) for _ in range(rng.randint(1, 6))]
                geometry.append(Trace(tuple(pts), label))
        pool.append(format(geometry, fence=rng.random() < 0.5))
    return pool


ANSWERS = _answer_pool()


CHARS = list('[]{},:"0-.eENaInfity \\') + ["\x00", "é"]
PROSE = ["", "Sure! ", "The answer is:\n", "}{ [oops] ", "```json\n", "\n```", " Done."]


def mutate(seed: int) -> str:
    """A valid answer from the pool with 1-3 random edits: cuts, prose, inserted/replaced/deleted chars.

    Driven by one seed so hypothesis draws one value per example (10,000 examples stay fast).
    """
    rng = random.Random(seed)
    text = rng.choice(ANSWERS)
    for _ in range(rng.randint(1, 3)):
        op, i = rng.choice(["truncate", "prose", "insert", "replace", "delete"]), rng.randint(0, len(text))
        if op == "truncate":
            text = text[:i]
        elif op == "prose":
            text = rng.choice(PROSE) + text + rng.choice(PROSE)
        elif op == "insert":
            text = text[:i] + rng.choice(CHARS) + text[i:]
        elif op == "replace":
            text = text[:i] + rng.choice(CHARS) + text[i + 1 :]
        else:
            text = text[:i] + text[i + 1 :]
    return text


@given(st.one_of(st.text(), st.integers(0, 2**32).map(mutate)))
@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
def test_parse_never_raises_and_output_is_sane(text):
    answer = parse(text, Frame.fixed(640, 480))
    assert isinstance(answer, SpatialAnswer) and answer.text == text
    assert answer.geometry or answer.problems  # nothing read is always explained
    assert all(isinstance(p, str) and p for p in answer.problems)
    for g in answer.geometry:
        coords = (
            [g.x, g.y]
            if isinstance(g, Point)
            else [v for p in g.points for v in p]
            if isinstance(g, Trace)
            else [g.x1, g.y1, g.x2, g.y2]
        )
        assert all(math.isfinite(v) for v in coords)
        if isinstance(g, Box):
            assert g.x1 <= g.x2 and g.y1 <= g.y2


@given(frame_and_geometry(), st.data())
@settings(max_examples=300, deadline=None)
def test_truncated_answer_keeps_a_prefix_of_complete_items(fg, data):
    frame, geometry = fg
    text = format(geometry, frame)
    cut = data.draw(st.integers(0, len(text) - 1))
    answer = parse(text[:cut], frame)
    assert answer.geometry == geometry[: len(answer.geometry)]
    assert answer.problems  # a cut answer is never reported clean


@pytest.mark.parametrize("text", [None, 3, b"[]"])
def test_parse_of_non_text_reports_it(text):
    answer = parse(text)
    assert answer.geometry == [] and "not text" in answer.problems[0]


# ---------------------------------------------------------------------------------------------
# Known model outputs
# ---------------------------------------------------------------------------------------------

QWEN_FENCED = '```json\n[\n\t{"bbox_2d": [304, 226, 345, 267], "label": "apple"},\n\t{"bbox_2d": [28, 56, 84, 112], "label": "plate"}\n]\n```'


def test_qwen_fenced_answer_maps_to_the_original_image():
    frame = Frame.smart_resize(640, 480)  # 644x476 model frame
    answer = parse(QWEN_FENCED, frame)
    assert answer.ok
    apple, plate = answer.geometry
    assert apple.label == "apple" and plate.label == "plate"
    assert apple.x1 == pytest.approx(304 * 640 / 644) and apple.y2 == pytest.approx(267 * 480 / 476)
    assert plate == Box(28 * 640 / 644, 56 * 480 / 476, 84 * 640 / 644, 112 * 480 / 476, "plate")


def test_answer_with_prose_and_a_single_object():
    text = 'Sure, the carrot is here: {"label": "carrot", "point_2d": [112, 56]}. Anything else?'
    answer = parse(text, Frame.fixed(448, 448))
    assert answer.ok and answer.geometry == [Point(224.0, 112.0, "carrot")]


def test_truncated_answer_keeps_complete_items_and_reports_the_cut():
    text = '[{"label": "a", "bbox_2d": [1, 2, 3, 4]}, {"label": "b", "trace_2d": [[1, 2], [3, 4], [5'
    answer = parse(text)
    assert answer.geometry == [Box(1, 2, 3, 4, "a")]
    assert len(answer.problems) == 1 and "truncated" in answer.problems[0]
    assert "kept 1" in answer.problems[0]


def test_truncated_fence_without_closing():
    answer = parse('```json\n[{"point_2d": [10, 20]}, {"point_2d": [30, 40]}')
    assert answer.geometry == [Point(10, 20), Point(30, 40)] and "truncated" in answer.problems[0]


def test_brackets_in_prose_after_the_answer_are_not_a_cut():
    answer = parse('[{"point_2d": [1, 2]}] (see [1] above)')
    assert answer.ok and answer.geometry == [Point(1, 2)]
    cut = parse('{"point_2d": [1, 2]}\n{"point_2d": [3,')
    assert cut.geometry == [Point(1, 2)] and "truncated" in cut.problems[0]


def test_several_top_level_objects_in_a_row():
    answer = parse('{"point_2d": [1, 2]}\n{"point_2d": [3, 4], "label": "x"}')
    assert answer.ok and answer.geometry == [Point(1, 2), Point(3, 4, "x")]


def test_normalized_1000_answer():
    frame = Frame.fixed(640, 480)
    answer = parse('[{"bbox_2d": [500, 250, 750, 1000], "label": "cup"}]', frame, normalized_1000=True)
    assert answer.ok and answer.geometry == [Box(320, 120, 480, 480, "cup")]
    unmapped = parse('{"point_2d": [500, 500]}', normalized_1000=True)
    assert unmapped.geometry == [Point(500, 500)] and "needs a frame" in unmapped.problems[0]


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "empty answer"),
        ("   \n", "empty answer"),
        ("I cannot see a carrot.", "no JSON"),
        ("[]", "empty list"),
        ('{"label": "a", "box": [1, 2, 3, 4]}', "no bbox_2d/point_2d/trace_2d (keys: label, box)"),
        ('{"bbox_2d": [1, 2, 3]}', "has 3 numbers, expected 4"),
        ('{"point_2d": [1, 2, 3]}', "has 3 numbers, expected 2"),
        ('{"bbox_2d": [1, "two", 3, 4]}', 'non-number "two"'),
        ('{"bbox_2d": [1, true, 3, 4]}', "non-number true"),
        ('{"point_2d": [NaN, 2]}', "non-finite"),
        ('{"point_2d": [Infinity, 2]}', "non-finite"),
        ('{"point_2d": [1e999, 2]}', "non-finite"),
        ('{"point_2d": "12, 30"}', "is not a list"),
        ('{"trace_2d": []}', "not a non-empty list"),
        ('{"trace_2d": [[1, 2], [3]]}', "trace_2d point 1 has 1 numbers"),
        ("[1, 2, 3, 4]", "no JSON answer"),
        ('{"bbox_2d": [1, 2, 3, ', "truncated or malformed"),
        ('[{"bbox_2d": [1, 2, 3, 4]}, 7]', "item 1 is not an object"),
    ],
)
def test_unreadable_answers_are_reported(text, problem):
    answer = parse(text)
    assert answer.geometry == [] or "not an object" in problem
    assert any(problem in p for p in answer.problems), answer.problems
    assert not answer.ok


def test_a_huge_answer_is_read_up_to_the_cap_and_says_so():
    """A 1 MB answer of nested brackets (the parser's worst shape) is read only up to MAX_ANSWER_CHARS;
    an answer at the start of a long text is still found. (Timing: benchmarks/bench_spatial.py.)"""
    body = ",".join(["[1,2]"] * 150_000)
    nested = "[" * 64 + body + "]" * 64
    assert len(nested) > 800_000
    a = parse(nested)
    assert a.geometry == [] and a.text == nested
    assert (
        a.problems[0]
        == f"answer is {len(nested)} characters long: read only its first {MAX_ANSWER_CHARS} (truncated)"
    )
    answer = '[{"label": "carrot", "bbox_2d": [10, 20, 30, 40]}]'
    b = parse(answer + " [" * 500_000)
    assert b.geometry == [Box(10, 20, 30, 40, "carrot")] and "truncated" in b.problems[0]
    c = parse(answer + " " * (MAX_ANSWER_CHARS - len(answer)))  # exactly at the cap: nothing said
    assert c.geometry == b.geometry and c.problems == []


def test_swapped_box_corners_are_normalised_and_reported():
    answer = parse('{"bbox_2d": [30, 40, 10, 20], "label": "x"}')
    assert answer.geometry == [Box(10, 20, 30, 40, "x")]
    assert "swapped corners" in answer.problems[0]


def test_non_string_label_is_kept_as_text_and_reported():
    answer = parse('{"point_2d": [1, 2], "label": 7}')
    assert answer.geometry == [Point(1, 2, "7")] and "label is not a string" in answer.problems[0]


# ---------------------------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------------------------


@given(st.integers(1, 5000), st.integers(1, 5000))
@settings(max_examples=300, deadline=None)
def test_smart_resize_matches_transformers(w, h):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    if max(w, h) / min(w, h) > 200:
        with pytest.raises(ValueError, match="aspect ratio"):
            Frame.smart_resize(w, h)
        return
    frame = Frame.smart_resize(w, h)
    assert (frame.height, frame.width) == smart_resize(h, w)
    assert frame.width % 28 == 0 and frame.height % 28 == 0
    small = Frame.smart_resize(w, h, factor=14, min_pixels=1000, max_pixels=50_000)
    if max(w, h) / min(w, h) <= 50:  # extreme aspect ratios may exceed max_pixels by design
        assert (small.height, small.width) == smart_resize(h, w, 14, 1000, 50_000)


def test_fixed_frame_and_invalid_frames():
    frame = Frame.fixed(640, 480)
    assert (frame.width, frame.height, frame.scale_x, frame.scale_y) == (224, 224, 640 / 224, 480 / 224)
    assert Frame.fixed(640, 480, size=(320, 240)).scale_x == 2.0
    with pytest.raises(ValueError, match="positive integers"):
        Frame(0, 224, 640, 480)
    with pytest.raises(ValueError, match="positive"):
        Frame.smart_resize(0, 10)


@given(frame_and_geometry())
@settings(max_examples=200, deadline=None)
def test_to_model_inverts_to_original(fg):
    frame, geometry = fg
    back = to_original(to_model(geometry, frame), frame)
    for a, b in zip(back, geometry, strict=True):
        assert type(a) is type(b) and a.label == b.label
        assert flat(a) == pytest.approx(flat(b), rel=1e-9, abs=1e-9)
    assert to_model(geometry, None) is geometry


def flat(g) -> list[float]:
    if isinstance(g, Point):
        return [g.x, g.y]
    if isinstance(g, Box):
        return [g.x1, g.y1, g.x2, g.y2]
    return [v for p in g.points for v in p]


def test_frame_conversion_rejects_other_types():
    with pytest.raises(TypeError, match="Point, Box, Trace"):
        to_original([(1, 2)], Frame.fixed(10, 10))


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------

boxes = st.builds(
    lambda x, y, w, h: Box(x, y, x + w, y + h),
    st.floats(-100, 100),
    st.floats(-100, 100),
    st.floats(0.1, 100),
    st.floats(0.1, 100),
)


@given(boxes, boxes)
def test_iou_properties(a, b):
    assert box_iou(a, a) == pytest.approx(1.0)
    assert box_iou(a, b) == pytest.approx(box_iou(b, a))
    assert 0.0 <= box_iou(a, b) <= 1.0


def test_iou_known_values():
    assert box_iou(Box(0, 0, 10, 10), Box(20, 20, 30, 30)) == 0.0  # disjoint
    assert box_iou(Box(0, 0, 10, 10), Box(10, 0, 20, 10)) == 0.0  # touching edges
    assert box_iou(Box(0, 0, 10, 10), Box(5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou(None, Box(0, 0, 1, 1)) == 0.0  # missing box
    assert box_iou(Box(1, 1, 1, 1), Box(1, 1, 1, 1)) == 0.0  # no area: no union


def test_point_metrics():
    box = Box(0, 0, 10, 10)
    assert point_in_box(Point(10, 5), box) and point_in_box((0, 0), box)
    assert not point_in_box(Point(10.01, 5), box) and not point_in_box(None, box)
    assert point_distance(Point(0, 0), (3, 4)) == 5.0
    assert point_distance(None, Point(0, 0)) == math.inf


traces = st.lists(st.tuples(st.floats(-50, 50), st.floats(-50, 50)), min_size=1, max_size=12).map(
    lambda p: Trace(tuple(p))
)


@given(traces, traces)
def test_trace_metric_properties(a, b):
    assert discrete_frechet(a, a) == 0.0
    assert trace_mean_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert discrete_frechet(a, b) == pytest.approx(discrete_frechet(b, a))
    # Fréchet bounds the end-point distances from above.
    assert discrete_frechet(a, b) >= trace_final_distance(a, b) - 1e-9
    assert discrete_frechet(a, b) >= point_distance(a.points[0], b.points[0]) - 1e-9


def test_trace_metric_known_values():
    a = Trace(((0, 0), (10, 0)))
    b = Trace(((0, 3), (5, 3), (10, 3)))
    assert discrete_frechet(a, b) == pytest.approx(math.hypot(5, 3))  # b's middle point pairs with an end
    assert trace_mean_distance(a, b) == pytest.approx(3.0)  # parallel lines, resampled by arc length
    assert trace_final_distance(a, b) == 3.0
    fast = Trace(((0, 0), (1, 0), (10, 0)))  # same path, uneven sampling: arc length resampling fixes it
    assert trace_mean_distance(a, fast, n=11) == pytest.approx(0.0, abs=1e-12)
    assert resample_trace(Trace(((2, 2),)), 3).tolist() == [[2, 2], [2, 2], [2, 2]]


def test_trace_metrics_on_empty_input():
    empty, some = Trace(()), Trace(((0, 0),))
    for metric in (trace_mean_distance, trace_final_distance, discrete_frechet):
        assert metric(empty, empty) == 0.0
        assert metric(None, some) == math.inf and metric(some, empty) == math.inf
    with pytest.raises(ValueError, match="non-empty trace"):
        resample_trace(empty, 4)


def test_grounding_metrics_for_the_labelled_object():
    truth = GroundTruth(
        objects=[Box(0, 0, 10, 10, "carrot"), Box(50, 50, 60, 60, "plate")],
        key_points=[Point(5, 5, "carrot")],
        object_label="carrot",
        expert_trace=Trace(((0, 0), (10, 0))),
    )
    answer = parse(
        '[{"label": "carrot", "bbox_2d": [0, 0, 10, 5]}, {"label": "plate", "bbox_2d": [50, 50, 60, 60]},'
        ' {"label": "carrot", "point_2d": [8, 9]}, {"label": "gripper", "trace_2d": [[0, 3], [10, 3]]}]'
    )
    m = grounding_metrics(answer, truth)
    assert m["box_iou"] == pytest.approx(0.5)  # the plate box is ignored: it is not the carrot
    assert m["box_center_in_box"] == 1.0 and m["point_in_box"] == 1.0
    assert m["point_distance"] == pytest.approx(5.0)  # (8, 9) to the key point (5, 5)
    assert m["trace_mean_distance"] == pytest.approx(3.0) and m["trace_frechet"] == pytest.approx(3.0)
    assert m["num_predicted"] == 4.0
    assert grounding_metrics(answer, truth, label="plate")["box_iou"] == pytest.approx(1.0)


def test_grounding_metrics_when_nothing_was_predicted():
    truth = GroundTruth(objects=[Box(0, 0, 10, 10, "carrot")], expert_trace=Trace(((0, 0),)))
    m = grounding_metrics(parse("no idea"), truth, label="carrot")
    assert m == {
        "num_predicted": 0.0,
        "box_iou": 0.0,
        "box_center_in_box": 0.0,
        "point_in_box": 0.0,
        "point_distance": math.inf,  # to the truth box centre, nothing to measure from
        "trace_mean_distance": math.inf,
        "trace_final_distance": math.inf,
        "trace_frechet": math.inf,
    }
    assert grounding_metrics(parse("no idea"), GroundTruth()) == {"num_predicted": 0.0}


def test_centre_offset_is_a_fraction_of_the_image_from_the_first_box_or_point():
    answer = parse('[{"label": "a", "bbox_2d": [10, 20, 30, 40]}, {"label": "b", "point_2d": [0, 0]}]')
    assert centre_offset(answer, (40.0, 10.0), 200, 100) == pytest.approx((-0.1, 0.2))  # from (20, 30)
    assert centre_offset(parse('{"point_2d": [50, 50]}'), (50.0, 0.0), 100, 100) == pytest.approx((0.0, 0.5))
    assert centre_offset(parse("no idea"), (0.0, 0.0), 100, 100) is None


def test_object_centre_prefers_the_key_point_then_the_box():
    boxes = [Box(0, 0, 10, 10, "carrot"), Box(50, 50, 60, 70, "plate")]
    truth = GroundTruth(objects=boxes, key_points=[Point(3, 4, "Carrot")], object_label="carrot")
    assert object_centre(truth) == (3, 4)
    assert object_centre(GroundTruth(objects=boxes, object_label="plate")) == (55, 60)
    assert object_centre(GroundTruth(objects=boxes, object_label="duck")) is None
