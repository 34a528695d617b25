"""A/B side by side in the real page (headless Chromium): pick checkpoint B, run a few steps, let the
Rerun viewer draw both camera views, then click on the camera image and see the point reported.

Screenshots land in tests/artifacts/ (ab_side_by_side.png, ab_after_click.png) for a person to look
at. Needs Debian's chromium at /usr/bin/chromium; never `playwright install`.
"""

from __future__ import annotations

import pytest
import torch
from helpers import REPO, no_demo_config
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from panels import app
from panels.state import AppConfig
from workbench.sessions import load_session

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def url(tmp_path_factory, launch_app):
    from workbench.policy import ST4VLAPolicy, tiny_config

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("browser-ab")
    for seed, name in enumerate(("tiny-a", "tiny-b")):  # A is the first listed, B is picked in the page
        torch.manual_seed(seed)
        ST4VLAPolicy.from_config(tiny_config()).save(root / "ckpts" / name)
    return launch_app(no_demo_config(root, 7885, checkpoint_dirs=[root / "ckpts"]))


def click_until_reported(page, x: float, y: float, tries: int = 3) -> None:
    """Click the viewer until the app reports the point. On a loaded machine the software-rendered
    viewer can drop the first click; Escape clears its selection so the next click is a new one."""
    for attempt in range(tries):
        page.mouse.click(x, y)
        try:
            page.wait_for_selector("#point-info :text('Your point')", timeout=30_000)
            return
        except PlaywrightTimeout:
            if attempt == tries - 1:
                raise
            page.keyboard.press("Escape")


def test_ab_side_by_side_and_click_to_prompt(chromium, artifacts, url):
    page = chromium.new_page(viewport={"width": 1500, "height": 1100})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("#ckpt-b input", timeout=30_000)
    page.fill("#ckpt-b input", "tiny-b")
    page.keyboard.press("Enter")
    page.click("#load", no_wait_after=True)
    page.wait_for_selector("#status :text('Step 0')", timeout=120_000)
    page.wait_for_selector("#viewer canvas", timeout=60_000)
    page.wait_for_timeout(3_000)
    page.fill("#run-n-count input", "3")
    page.click("#run-n", no_wait_after=True)
    page.wait_for_selector("#status :text('ran 3/3 steps')", timeout=180_000)
    status = page.inner_text("#status")
    # both policies answered (random weights: often with empty text, which the status says in words)
    assert all(f"\n{name} said" in status or f"\n{name} wrote no" in status for name in ("tiny-a", "tiny-b"))
    assert "Viewer: [tiny-a] · [tiny-b]" in status  # one camera view per policy, each titled once
    assert page.locator("#layout input[value='side by side']").is_checked()
    page.wait_for_timeout(12_000)  # software WebGL: let the viewer draw the streamed frames
    page.locator("#viewer").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "ab_side_by_side.png"), full_page=True)
    page.locator("#viewer").screenshot(path=str(artifacts / "ab_viewer.png"))
    # click-to-prompt: the middle of the left camera view (upper part of the viewer)
    box = page.locator("#viewer canvas").bounding_box()
    click_until_reported(page, box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.3)
    page.wait_for_timeout(6_000)
    page.screenshot(path=str(artifacts / "ab_after_click.png"), full_page=True)
    assert not [e for e in errors if "WebGL" not in e], errors


def test_demo_mode_hides_controls_and_plays_the_sample(chromium, artifacts, tmp_path):
    """`app.py --demo sample`: the page opens with no controls and plays the shipped session."""
    import shutil

    sample = REPO / "sessions" / "sample"
    shutil.copytree(sample, tmp_path / "sessions" / "sample")
    config = AppConfig(port=7887, sessions_dir=tmp_path / "sessions", checkpoint_dirs=[tmp_path / "none"],
                       demo_checkpoint=tmp_path / "none", demo_session="sample", demo_step_seconds=0.1)  # fmt: skip
    demo, url = app.launch(config, block=False)
    try:
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector("#status :text('Replaying saved session')", timeout=120_000)
        last = load_session(sample).branch()[-1].step
        page.wait_for_selector(f"#status :text('Step {last}')", timeout=120_000)  # played to its end
        assert page.locator("#load").count() == 0 or not page.locator("#load").is_visible()
        assert page.locator("#demo-mode input").is_checked()
        page.wait_for_selector("#viewer canvas", timeout=60_000)
        page.wait_for_timeout(10_000)
        page.screenshot(path=str(artifacts / "demo_mode.png"), full_page=True)
    finally:
        demo.close()
