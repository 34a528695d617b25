"""The recording the page's viewer opens on, before anything is loaded: a blank camera image that says
to press Load, with one of each kind of thing a step draws (a labelled box, a point, a path, a line
series, a text log line), laid out like the one-policy view.

Why it exists: the web viewer sets up its drawing of each kind of thing the first time it draws one.
With software WebGL (a machine without a GPU) that set-up kept the page from repainting for about 6 s,
and it fell on the first Load. Drawn while the page opens, it is paid before anyone presses anything
(benchmarks/bench_app.py measures Load -> first frame). Nothing in it is about a model or a scene: it
names no policy and no object, and it is its own application, so no blueprint of the app's is touched.
"""

from __future__ import annotations

import functools

import numpy as np
import rerun as rr
import rerun.blueprint as rrb

from workbench.viz.rerun_log import APPLICATION_ID, TIMELINE

WELCOME_ID = f"{APPLICATION_ID}-welcome"
MESSAGE = "Press Load to start"
GREY = (110, 110, 110)


@functools.lru_cache(maxsize=1)
def welcome_recording(width: int = 320, height: int = 240) -> bytes:
    """The welcome recording as the bytes a streaming viewer reads (built once per process)."""
    rec = rr.RecordingStream(WELCOME_ID, recording_id=WELCOME_ID)
    stream = rec.binary_stream()
    rr.set_sinks(stream, recording=rec)
    camera = rrb.Spatial2DView(
        origin="/world/camera",
        name="nothing loaded",
        visual_bounds=rrb.VisualBounds2D(x_range=[0, width], y_range=[0, height]),
    )
    bottom = rrb.Tabs(
        rrb.TimeSeriesView(origin="/actions", name="actions"), rrb.TextLogView(origin="/log", name="log")
    )
    rec.send_blueprint(rrb.Blueprint(rrb.Vertical(camera, bottom, row_shares=[3, 2]), collapse_panels=True))
    rec.set_time(TIMELINE, sequence=0)
    w, h = width, height  # every mark grey: nothing here is an answer, a rollout or ground truth
    rec.log("world/camera/image", rr.Image(np.full((h, w, 3), 230, np.uint8), color_model="RGB"))
    box = [[0.25 * w, 0.42 * h, 0.75 * w, 0.58 * h]]  # a frame around the message
    rec.log("world/camera/box", rr.Boxes2D(array=box, array_format=rr.Box2DFormat.XYXY, labels=[MESSAGE],
                                           colors=[GREY], radii=0.5))  # fmt: skip
    rec.log("world/camera/point", rr.Points2D([[0.5 * w, 0.5 * h]], colors=[GREY], radii=1.5))
    rec.log("world/camera/path", rr.LineStrips2D([[[0.3 * w, 0.65 * h], [0.7 * w, 0.65 * h]]], colors=[GREY],
                                                 radii=0.5))  # fmt: skip
    rec.log("actions", rr.SeriesLines(names=["no actions yet"], colors=[GREY]), static=True)
    rec.log("actions", rr.Scalars([0.0]))
    rec.log("log", rr.TextLog(f"{MESSAGE}: nothing is loaded yet.", level="INFO"))
    rec.flush()
    data = bytes(stream.read() or b"")
    rr.disconnect(recording=rec)
    return data
