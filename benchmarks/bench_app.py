"""The app as a person feels it, in headless Chromium (software WebGL, 2 shared CPU cores):

    python benchmarks/bench_app.py [--steps 3]

cold start      python process start -> app imported and serving -> page open -> Load pressed ->
                the first camera frame visible in the Rerun viewer
click->overlay  Step pressed -> the viewer's pixels change (new image + overlays drawn), per step

"Visible" is measured on screenshots of the viewer element: the moment it differs from the
previous screenshot in more than 2% of its pixels (0.3% for a step).

Where a step's time goes, per step (the table's last rows): click -> the server's step handler
starts (the page and Gradio's queue), the handler itself (simulator, policy, logging), handler end ->
the viewer's bytes fetched by the page (the chained refresh and the stream), and bytes fetched ->
pixels changed (the Rerun viewer decoding and drawing, software WebGL). Uses the page's default checkpoint A (the bundled
demo checkpoint when present; the table says which, as the page reports it); `--b NAME` also loads a
checkpoint B to compare (shared A/B, side-by-side views). Prints a table and writes
benchmarks/results/bench_app.json (bench_app_ab.json with --b).
"""

from __future__ import annotations

import time

T_PROCESS = time.perf_counter()  # before the heavy imports: they are part of a cold start

import argparse  # noqa: E402
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


def _pixels(page) -> np.ndarray:
    import cv2

    png = page.locator("#viewer").screenshot()
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.int16)


def wait_for_change(page, before: np.ndarray, timeout_s: float = 120.0, frac: float = 0.02) -> float:
    """Seconds until the viewer differs from `before` in more than `frac` of its pixels."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        now = _pixels(page)
        if now.shape == before.shape and (np.abs(now - before) > 12).mean() > frac:
            return time.perf_counter() - t0
        page.wait_for_timeout(100)
    raise TimeoutError(f"the viewer did not change within {timeout_s} s")


def mark(marks: list, what: str) -> None:
    marks.append((time.perf_counter(), what))


def trace_server(tab_class) -> list:
    """Wrap the tab's step handler so its start and end are marked (this process runs the server)."""
    marks: list = []
    step = tab_class.step

    def traced(self, *a, **kw):
        mark(marks, "step start")
        try:
            return step(self, *a, **kw)
        finally:
            mark(marks, "step end")

    tab_class.step = traced
    return marks


def step_parts(marks: list, t_click: float, t_drawn: float) -> dict:
    """A step's latency in four parts, from the marks (seconds; NaN where a mark is missing)."""
    first = {}
    for t, what in marks:
        first.setdefault(what, t)
    nan = float("nan")
    start, end, got = (first.get(k, nan) for k in ("step start", "step end", "bytes"))
    return {
        "click -> step handler starts": start - t_click,
        "step handler": end - start,
        "handler end -> viewer bytes fetched": got - end,
        "bytes fetched -> pixels changed": t_drawn - got,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--port", type=int, default=7890)
    p.add_argument("--b", default="", help="checkpoint B to compare (a name in assets/checkpoints)")
    args = p.parse_args()

    import torch
    from playwright.sync_api import sync_playwright

    from panels import app
    from panels.state import AppConfig
    from panels.state.tab import TabState

    torch.set_num_threads(1)
    marks = trace_server(TabState)
    config = AppConfig(port=args.port, sessions_dir=Path(tempfile.mkdtemp()) / "sessions")
    demo, url = app.launch(config, block=False)
    t_serving = time.perf_counter() - T_PROCESS
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on(
            "requestfinished",
            lambda r: "/stream/" in r.url and "playlist" not in r.url and mark(marks, "bytes"),
        )
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector("#viewer canvas", timeout=120_000)
        page.wait_for_timeout(2_000)
        if args.b:
            page.fill("#ckpt-b input", args.b)
            page.keyboard.press("Enter")
        blank = _pixels(page)
        t_click = time.perf_counter()
        page.click("#load", no_wait_after=True)
        wait_for_change(page, blank)
        t_first = time.perf_counter() - T_PROCESS
        load_to_frame = time.perf_counter() - t_click
        page.wait_for_selector("#status :text('Step 0')", timeout=120_000)
        status = page.inner_text("#status")
        policy = " vs ".join(re.findall(r"^(.+?) said:", status, re.M)) or "?"
        page.wait_for_timeout(3_000)  # let the first frame settle before timing steps
        latencies, parts = [], []
        for _ in range(args.steps):
            before = _pixels(page)
            marks.clear()
            t_click = time.perf_counter()
            page.click("#step", no_wait_after=True)
            # one control step moves the arm by a few pixels: 2% of the viewer (enough for the first
            # frame) can take longer than the step itself to change, so count a 0.3% change
            latencies.append(wait_for_change(page, before, frac=0.003))
            parts.append(step_parts(marks, t_click, t_click + latencies[-1]))
            page.wait_for_timeout(2_000)
        browser.close()
    demo.close()

    rows = {
        "process start -> serving (s)": t_serving,
        "Load click -> first frame in viewer (s)": load_to_frame,
        "cold start -> first frame in viewer (s)": t_first,
        "Step click -> overlay drawn, median (s)": statistics.median(latencies),
        "Step click -> overlay drawn, max (s)": max(latencies),
        **{f"  {k}, median (s)": statistics.median(p[k] for p in parts) for k in parts[0]},
    }
    print(f"\nbench_app: policy={policy}, {args.steps} steps, {platform.processor() or platform.machine()}")
    print(f"{'measure':<44} {'value':>8}")
    for k, v in rows.items():
        print(f"{k:<44} {v:>8.2f}")
    results = RESULTS.with_name("bench_app_ab.json") if args.b else RESULTS
    results.parent.mkdir(parents=True, exist_ok=True)
    out = {
        "policy": policy,
        "steps": args.steps,
        "step_latencies_s": latencies,
        "step_parts_s": parts,
        **rows,
    }
    results.write_text(json.dumps(out, indent=2))
    print(f"saved {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
