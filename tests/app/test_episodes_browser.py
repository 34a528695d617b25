"""The real page in headless Chromium: pick a recorded LeRobot v3.0 dataset (written by lerobot 0.6.1),
choose its third episode in the Episode picker, load it and run it to its last frame.

Needs Debian's chromium at /usr/bin/chromium (scripts/test.sh installs it as root).
"""

from __future__ import annotations

import shutil

import helpers
import pytest
from helpers import no_demo_config

pytestmark = [pytest.mark.browser, pytest.mark.slow]
FIXTURES = helpers.FIXTURES / "lerobot"


@pytest.fixture(scope="module")
def url(tmp_path_factory, launch_app):
    root = tmp_path_factory.mktemp("episodes_browser")
    shutil.copytree(FIXTURES / "v30_av1", root / "data" / "v30_av1")
    return launch_app(no_demo_config(root, 7950, data_dirs=[root / "data"], max_steps=3))


def test_pick_an_episode_and_play_it_to_the_end(chromium, artifacts, url):
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("#load", timeout=30_000)
    page.get_by_label("recorded episode / session").check()
    picker = page.locator("#episode-pick")
    picker.wait_for(state="visible", timeout=30_000)
    picker.locator("input").click()
    page.get_by_role("option", name="#2 · pick up the red cube · 9 frames").click()
    page.click("#load", no_wait_after=True)
    page.wait_for_selector("#status :text('Step 0')", timeout=120_000)
    page.click("#run-end", no_wait_after=True)
    page.wait_for_selector("#status :text('Step 8')", timeout=120_000)  # --max-steps 3 does not cut it
    page.wait_for_timeout(3000)  # let the viewer draw the last step
    page.screenshot(path=str(artifacts / "episodes_v30_episode2_end.png"), full_page=True)
    page.close()
