"""Video export: H.264 MP4 at the camera's resolution, readable labels, the source's control rate,
decoded back with PyAV and played by headless Chromium."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import REPO

from workbench.records import GroundTruth, Observation, PolicyStep, StepRecord
from workbench.spatial import Box, SpatialAnswer, Trace
from workbench.viz import video
from workbench.viz.video import Style, compose_frame, control_rate, read_frames, write_mp4

SAMPLE = REPO / "sessions" / "sample"


def record(step: int, width: int = 224, height: int = 168, *, truncated: bool = False, tcp: float = 0.2):
    """A step with a textured image, two objects' truth, and two policies' answers."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([(xx * 2 + step) % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
    gt = GroundTruth(objects=[Box(40, 30, 90, 80, "carrot"), Box(120, 90, 180, 150, "plate")],
                     object_label="carrot", target_label="plate",
                     expert_trace=Trace(((60.0, 50.0), (150.0, 120.0)), "gripper"))  # fmt: skip
    obs = Observation({"cam": image}, "put the carrot on the plate", ground_truth=gt)
    policies = {
        name: PolicyStep(name, obs.instruction, SpatialAnswer("", [Box(42.0 + 3 * i, 32, 88, 78, "carrot")]))
        for i, name in enumerate(("st4vla-tiny", "vanilla-tiny"))
    }
    info = {"tcp_to_object": tcp, "object_to_goal": 0.3, "success": False}
    return StepRecord(step, obs, policies, info=info, truncated=truncated)


def stream_facts(path: Path) -> dict:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = sum(1 for _ in c.decode(video=0))
        return {"codec": s.codec_context.name, "size": (s.width, s.height), "pix_fmt": s.pix_fmt,
                "rate": s.average_rate, "frames": frames}  # fmt: skip


def test_h264_at_the_cameras_resolution_and_control_rate(tmp_path):
    records = [record(s) for s in range(5)]
    path = write_mp4(records, tmp_path / "ep.mp4", fps=5)
    facts = stream_facts(path)
    assert facts["codec"] == "h264" and facts["pix_fmt"] == "yuv420p"
    assert facts["frames"] == 5 and facts["rate"] == 5
    w, h = facts["size"]
    assert w == 3 * 224 and h > 3 * 168 and h % 2 == 0  # upscaled x3 to >= 480 px, plus the caption band
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart: the index comes first
    assert stream_facts(write_mp4(records, tmp_path / "slow.mp4", fps=3))["rate"] == 3


def test_never_downscaled_and_always_even(tmp_path):
    big = stream_facts(write_mp4([record(0, 640, 480)], tmp_path / "big.mp4"))
    assert big["size"][0] == 640  # a 640x480 camera is kept as is
    odd = stream_facts(write_mp4([record(0, 225, 167)], tmp_path / "odd.mp4"))
    assert odd["size"][0] == 676 and odd["size"][1] % 2 == 0  # 3 x 225 = 675, padded to even
    assert (
        video.upscale_factor(168) == 3 and video.upscale_factor(480) == 1 and video.upscale_factor(1080) == 1
    )


def test_overlays_survive_encoding(tmp_path):
    records = [record(s) for s in range(3)]
    frames = read_frames(write_mp4(records, tmp_path / "ep.mp4"))
    drawn = compose_frame(records[0]).astype(int)
    assert frames[0].shape == drawn.shape
    assert np.abs(frames[0].astype(int) - drawn).mean() < 4  # close to the drawn frame
    # the answer box (policy A's colour) is on the frame, 3x upscaled
    edge = frames[0][3 * 40 : 3 * 70, 3 * 42 - 1 : 3 * 42 + 2].astype(int)
    assert (np.abs(edge - video.policy_color(0)).sum(-1) < 90).any(axis=1).mean() > 0.8


def test_labels_scale_with_the_frame():
    small, large = Style.for_height(480), Style.for_height(960)
    assert large.font_scale == pytest.approx(2 * small.font_scale) and large.line > small.line
    assert small.text_size("carrot")[1] >= 12  # pixels tall at the smallest frame height
    band = video.caption_band(record(0), 672, Style.for_height(504))
    rows = np.flatnonzero((band.astype(int) - video.BAND).any(axis=(1, 2)))
    assert rows.max() - rows.min() >= 30  # caption and legend are two readable lines, not a 9-px strip


def test_last_frame_says_how_the_episode_ended(tmp_path):
    records = [record(s, tcp=0.2) for s in range(4)] + [record(4, truncated=True, tcp=0.19)]
    frames = read_frames(write_mp4(records, tmp_path / "ep.mp4"))
    assert len({f.shape for f in frames}) == 1  # the outcome row is kept blank before the end
    band_first, band_last = frames[0][3 * 168 :], frames[-1][3 * 168 :]
    changed = np.abs(band_last.astype(int) - band_first.astype(int)).sum(-1) > 100
    assert changed[-band_last.shape[0] // 3 :].sum() > 200  # text in the last row of the last frame only


def test_long_outcomes_wrap_within_the_frame():
    style = Style.for_height(480)
    text = "failed at step 40: time (4.2 cm closer over the last 5 steps) " * 2
    lines = video._wrap(text, style, 400, 2)
    assert len(lines) == 2 and all(style.text_size(line)[0] <= 400 for line in lines)
    assert lines[0].startswith("failed at step 40") and lines[1].endswith("~")  # the rest is cut, visibly
    assert video._wrap("", style, 400, 2) == ["", ""]


def test_bad_paths_and_rates(tmp_path):
    with pytest.raises(ValueError, match=".mp4"):
        write_mp4([record(0)], tmp_path / "ep.avi")
    with pytest.raises(ValueError, match="fps must be a positive"):
        write_mp4([record(0)], tmp_path / "ep.mp4", fps=0)
    with pytest.raises(ValueError, match="at least one"):
        write_mp4([], tmp_path / "ep.mp4")
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        read_frames(tmp_path / "nope.mp4")


def test_control_rate_of_each_source(tmp_path):
    assert control_rate({"kind": "sim", "task": "tabletop_pick"}) == 5.0
    assert control_rate({"kind": "simpler", "task": "google_robot_pick_coke_can"}) == 3.0
    assert control_rate({"kind": "simpler", "task": "widowx_carrot_on_plate"}) == 5.0
    dataset = tmp_path / "ds"
    (dataset / "meta").mkdir(parents=True)
    (dataset / "meta" / "info.json").write_text(json.dumps({"fps": 10}))
    assert control_rate({"kind": "episode", "path": str(dataset)}) == 10.0
    session = tmp_path / "sess"
    session.mkdir()
    (session / "session.json").write_text(
        json.dumps({"loaded": {"source": {"kind": "episode", "path": str(dataset)}}})
    )
    assert control_rate({"kind": "episode", "path": str(session)}) == 10.0  # a replayed session: its source's
    assert control_rate(None) == video.DEFAULT_RATE


@pytest.mark.slow
def test_session_export_is_h264_at_the_sims_rate(tmp_path):
    from workbench.sessions import export_mp4, load_session

    session = load_session(SAMPLE)
    facts = stream_facts(export_mp4(session, tmp_path / "sample.mp4"))
    assert facts["codec"] == "h264" and facts["rate"] == 5 and facts["frames"] == len(session.branch("main"))


@pytest.mark.browser
@pytest.mark.slow
def test_chromium_plays_the_export(chromium, tmp_path):
    """Debian's Chromium decodes the H.264 MP4 in a <video> element (and plays it forward)."""
    write_mp4([record(s, 320, 240) for s in range(10)], tmp_path / "ep.mp4", fps=5)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = chromium.new_page()
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        got = page.evaluate(
            """async () => {
                const v = document.createElement('video');
                v.muted = true; v.src = '/ep.mp4'; document.body.appendChild(v);
                const how = await new Promise(done => {
                    v.oncanplay = () => done('canplay');
                    v.onerror = () => done('error ' + (v.error && v.error.code));
                    setTimeout(() => done('timeout'), 20000);
                });
                if (how === 'canplay') {
                    await v.play();
                    await new Promise(done => setTimeout(done, 1000));
                }
                return {how, readyState: v.readyState, width: v.videoWidth, height: v.videoHeight,
                        duration: v.duration, time: v.currentTime};
            }"""
        )
    finally:
        server.shutdown()
    assert got["how"] == "canplay", got
    assert (
        got["readyState"] >= 2 and (got["width"], got["height"]) == stream_facts(tmp_path / "ep.mp4")["size"]
    )
    assert got["duration"] == pytest.approx(2.0, abs=0.25) and got["time"] > 0  # 10 frames at 5 fps, playing
