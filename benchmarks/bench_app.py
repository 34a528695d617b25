"""The app as a person feels it, in headless Chromium (software WebGL, 2 shared CPU cores):

    python benchmarks/bench_app.py [--steps 15]

page open       page opened -> the viewer drawn (its welcome recording, workbench.viz.welcome)
cold start      python process start -> app imported and serving -> page open -> the viewer drawn
                and still for 3 s -> Load pressed -> the first camera frame drawn in full
click->drawn    Step pressed -> the step's camera view drawn in full (the new camera image and its
                overlays, as they stay), and the whole viewer (the actions plot below it too), per
                step; also the first visible change

How it sees the screen: Chromium's own compositor frames, pushed as they are drawn (the DevTools
screencast, each with its draw time), cropped to the viewer. A step is "drawn in full" at the first
frame from which the viewer (or its camera view: the viewer's top 55%) stays within 0.3% of its pixels
of how it looks 6 s later; its "first change" is the first frame more than 0.3% away from how it
looked before the click. (A person sees the overlays move at the first change and the whole new frame
when it is drawn in full: with JPEG images the new overlays are drawn over a blank image for a few
frames while the viewer decodes it.)

Where a step's time goes, per step (the table's last rows): click -> the server's step handler
starts (the page and Gradio's queue), the handler itself (simulator, policy, logging), handler end ->
the viewer's bytes fetched by the page (the chained refresh and the stream), and bytes fetched ->
drawn in full (the Rerun viewer ingesting and drawing, software WebGL). Uses the page's default
checkpoint A (the bundled demo checkpoint when present; the table says which, as the page reports it);
`--b NAME` also loads a checkpoint B to compare (shared A/B, side-by-side views); `--viewer-images
jpeg` measures the app with JPEG camera images. Prints a table and writes
benchmarks/results/bench_app.json (bench_app_ab.json with --b, bench_app_jpeg.json with jpeg).
"""

from __future__ import annotations

import time

T_PROCESS = time.time()  # before the heavy imports: they are part of a cold start

import argparse  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
RESULTS = Path(__file__).parent / "results" / "bench_app.json"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]  # fmt: skip
SETTLE_S = 6.0  # a step's frame is compared with the viewer this long after the click
CHANGED = 0.003  # fraction of the viewer's pixels that counts as a visible change
# The camera view: the viewer's top rows. The blueprints give it 3/5 of the viewer below Rerun's top
# bar (workbench.viz.blueprints); the plots below it start lower than this.
CAMERA_SHARE = 0.55


class Screencast:
    """Chromium's compositor frames as they are drawn (DevTools Page.startScreencast): (draw time in
    epoch seconds, PNG bytes). Nothing polls the page, so measuring takes no frames from the viewer."""

    def __init__(self, page):
        self.frames: list[tuple[float, str]] = []
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.on("Page.screencastFrame", self._frame)
        self.cdp.send("Page.startScreencast", {"format": "png", "everyNthFrame": 1})

    def _frame(self, event: dict) -> None:
        self.cdp.send("Page.screencastFrameAck", {"sessionId": event["sessionId"]})
        self.frames.append((event["metadata"]["timestamp"], event["data"]))

    def stop(self) -> None:
        self.cdp.send("Page.stopScreencast")


def _crop(png_b64: str, box: dict) -> np.ndarray:
    """A frame's viewer region, grayscale int16 [h, w] (box: the viewer's bounding box, CSS pixels = frame
    pixels at device scale 1)."""
    import cv2

    a = cv2.imdecode(np.frombuffer(base64.b64decode(png_b64), np.uint8), cv2.IMREAD_GRAYSCALE)
    y0, x0 = max(0, int(box["y"])), max(0, int(box["x"]))
    return a[y0 : y0 + int(box["height"]), x0 : x0 + int(box["width"])].astype(np.int16)


def _differs(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.abs(a - b) > 12).mean()) if a.shape == b.shape else 1.0


def _settled_from(frames: list[tuple[float, np.ndarray]]) -> int:
    """The index k (>= 1) from which frames[k:] all look like the last frame (the settled viewer)."""
    k = len(frames)
    while k > 1 and _differs(frames[k - 1][1], frames[-1][1]) <= CHANGED:
        k -= 1
    return k


def _drawn_at(frames: list[tuple[float, np.ndarray]]) -> float:
    """The time of the first frame from which the frames stay as they end (NaN: still changing)."""
    k = _settled_from(frames)
    return frames[k][0] if k < len(frames) else float("nan")


def timed_click(
    page, cast: Screencast, selector: str, wait_for: str = ""
) -> tuple[float, float, float, float]:
    """Click, wait for `wait_for` (a selector) and SETTLE_S more, and return (click time, seconds to the
    first change, to the whole viewer drawn in full, to its camera view drawn in full) from the frames
    drawn meanwhile (the frame before the click is the reference). The viewer is cropped where it is at
    the end: a page that scrolls meanwhile (Load folds the source form) counts as changed until it is
    back in place."""
    n0 = len(cast.frames)
    t_click = time.time()
    page.click(selector, no_wait_after=True)
    if wait_for:
        page.wait_for_selector(wait_for, timeout=120_000)
    page.wait_for_timeout(SETTLE_S * 1000)
    box = page.locator("#viewer").bounding_box()
    frames = [(t - t_click, _crop(png, box)) for t, png in cast.frames[max(0, n0 - 1) :]]
    before = frames[0][1]
    first = next((t for t, a in frames[1:] if _differs(a, before) > CHANGED), float("nan"))
    rows = int(CAMERA_SHARE * frames[0][1].shape[0])
    camera = [(t, a[:rows]) for t, a in frames]
    return t_click, first, _drawn_at(frames), _drawn_at(camera)


def until_still(page, cast: Screencast, t0: float, still_s: float = 3.0, timeout_s: float = 120.0) -> float:
    """Wait until the viewer has not changed for still_s; seconds from t0 to its last change."""
    while time.time() - t0 < timeout_s:
        page.wait_for_timeout(500)
        box = page.locator("#viewer").bounding_box()
        frames = [(t, _crop(png, box)) for t, png in cast.frames if t >= t0]
        if not frames:
            continue
        k = _settled_from(frames)
        if time.time() - frames[k - 1][0] >= still_s:
            return frames[k - 1][0] - t0
    raise TimeoutError(f"the viewer kept changing for {timeout_s} s")


def mark(marks: list, what: str) -> None:
    marks.append((time.time(), what))


def trace_server(tab_class) -> list:
    """Wrap the tab's load and step so their starts and ends are marked (this process runs the server)."""
    marks: list = []

    def traced(name: str, method):
        def wrapper(self, *a, **kw):
            mark(marks, "handler start")
            try:
                return method(self, *a, **kw)
            finally:
                mark(marks, "handler end")

        wrapper.__name__ = name
        return wrapper

    for name in ("load", "step"):
        setattr(tab_class, name, traced(name, getattr(tab_class, name)))
    return marks


def parts(marks: list, t_click: float, t_drawn: float, what: str) -> dict:
    """A Load's or a step's latency in four parts, from the marks (seconds; NaN where a mark is missing):
    the first handler start, the last handler end (Load steps nothing: one load), the first bytes after it."""
    nan = float("nan")
    starts = [t for t, m in marks if m == "handler start"]
    ends = [t for t, m in marks if m == "handler end"]
    start, end = (starts[0] if starts else nan), (ends[-1] if ends else nan)
    got = next((t for t, m in marks if m == "bytes" and t >= end), nan)
    return {
        f"click -> {what} handler starts": start - t_click,
        f"{what} handler": end - start,
        "handler end -> viewer bytes fetched": got - end,
        "bytes fetched -> drawn in full": t_drawn - got,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--port", type=int, default=7890)
    p.add_argument("--b", default="", help="checkpoint B to compare (a name in assets/checkpoints)")
    p.add_argument(
        "--viewer-images", choices=("raw", "jpeg"), default="raw", help="the app's --viewer-images"
    )
    p.add_argument(
        "--viewer-height", type=int, default=0, help="the viewer's height in pixels (0: the app's)"
    )
    args = p.parse_args()

    import torch
    from playwright.sync_api import sync_playwright

    from panels import app
    from panels.state import AppConfig
    from panels.state.tab import TabState

    torch.set_num_threads(1)
    marks = trace_server(TabState)
    sessions = Path(tempfile.mkdtemp()) / "sessions"
    config = AppConfig(port=args.port, sessions_dir=sessions, viewer_images=args.viewer_images)
    config.viewer_height = args.viewer_height or config.viewer_height
    demo, url = app.launch(config, block=False)
    t_serving = time.time() - T_PROCESS
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on(
            "requestfinished",
            lambda r: "/stream/" in r.url and "playlist" not in r.url and mark(marks, "bytes"),
        )
        cast = Screencast(page)
        t_open = time.time()
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector("#viewer canvas", timeout=120_000)
        open_drawn = until_still(page, cast, t_open)  # the viewer's welcome drawn (workbench.viz.welcome)
        if args.b:
            page.fill("#ckpt-b input", args.b)
            page.keyboard.press("Enter")
        marks.clear()
        t_load, _, load_drawn, _ = timed_click(page, cast, "#load", wait_for="#status :text('Step 0')")
        load_parts = parts(marks, t_load, t_load + load_drawn, "load")
        status = page.inner_text("#status")
        # each policy's answer line: "NAME said: ..." or "NAME: not asked for a spatial answer ..."
        policy = " vs ".join(re.findall(r"^(.+?)(?: said:|: not asked for)", status, re.M)) or "?"
        firsts, drawn, camera, step_parts = [], [], [], []
        for _ in range(args.steps):
            marks.clear()
            t_click, first, full, camera_full = timed_click(page, cast, "#step")
            firsts.append(first)
            drawn.append(full)
            camera.append(camera_full)
            step_parts.append(parts(marks, t_click, t_click + full, "step"))
        cast.stop()
        browser.close()
    demo.close()

    rows = {
        "process start -> serving (s)": t_serving,
        "page open -> viewer drawn (welcome) (s)": open_drawn,
        "Load click -> first frame drawn in full (s)": load_drawn,
        **{f"  {k} (s)": v for k, v in load_parts.items()},
        "cold start -> first frame drawn in full (s)": t_load + load_drawn - T_PROCESS,
        "Step click -> first change, median (s)": statistics.median(firsts),
        "Step click -> camera view drawn in full, median (s)": statistics.median(camera),
        "Step click -> drawn in full, median (s)": statistics.median(drawn),
        "Step click -> drawn in full, max (s)": max(drawn),
        **{f"  {k}, median (s)": statistics.median(p[k] for p in step_parts) for k in step_parts[0]},
    }
    machine = platform.processor() or platform.machine()
    view = f"{args.viewer_images} images, viewer {config.viewer_height} px tall"
    print(f"\nbench_app: policy={policy}, {args.steps} steps, {view}, {machine}")
    print(f"{'measure':<46} {'value':>8}")
    for k, v in rows.items():
        print(f"{k:<46} {v:>8.2f}")
    name = "bench_app_ab.json" if args.b else "bench_app.json"
    results = RESULTS.with_name(name.replace(".json", "_jpeg.json") if args.viewer_images == "jpeg" else name)
    results.parent.mkdir(parents=True, exist_ok=True)
    out = {
        "policy": policy,
        "steps": args.steps,
        "viewer_images": args.viewer_images,
        "viewer_height": config.viewer_height,
        "step_first_change_s": firsts,
        "step_drawn_s": drawn,
        "step_camera_drawn_s": camera,
        "load_parts_s": load_parts,
        "step_parts_s": step_parts,
        **rows,
    }
    results.write_text(json.dumps(out, indent=2))
    print(f"saved {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
