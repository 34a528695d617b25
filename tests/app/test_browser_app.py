"""The real page in headless Chromium: load, step, and the Rerun viewer draws (SwiftShader WebGL).

Needs Debian's chromium at /usr/bin/chromium (scripts/test.sh installs it as root); never
`playwright install`. The screenshot lands in tests/artifacts/ for a person to look at.
"""

from __future__ import annotations

import pytest
from helpers import no_demo_config

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
]


# Records, from here on, the Step button's aria-busy values and the classes of Gradio's progress
# displays ("status-tracker"; a shown one lacks the class "hide").
WATCH_STEP = """() => {
  window.__busy = []; window.__trackers = [];
  const step = document.getElementById('step');
  new MutationObserver(() => window.__busy.push(step.getAttribute('aria-busy')))
    .observe(step, {attributes: true, attributeFilter: ['aria-busy']});
  new MutationObserver(ms => { for (const m of ms) {
    const t = m.target.nodeType === 1 ? m.target : m.target.parentElement;
    const tracker = t && t.closest('[data-testid="status-tracker"]');
    if (tracker) window.__trackers.push(tracker.className);
  } }).observe(document.body, {subtree: true, attributes: true, childList: true, characterData: true});
}"""


@pytest.fixture(scope="module")
def url(tmp_path_factory, launch_app):
    return launch_app(no_demo_config(tmp_path_factory.mktemp("browser"), 7880))


def test_page_steps_and_viewer_draws(chromium, artifacts, url):
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("#load", timeout=30_000)
    page.click("#load", no_wait_after=True)
    page.wait_for_selector("#status :text('Step 0')", timeout=120_000)
    page.wait_for_selector("#viewer canvas", timeout=60_000)
    page.wait_for_timeout(3_000)  # the viewer's wasm starts on the page's main thread
    page.evaluate(WATCH_STEP)
    page.evaluate("window.stepBusyDelayMs = 0")  # the busy mark at once (a slow model's step)
    page.click("#step", timeout=120_000, no_wait_after=True)
    page.wait_for_selector("#status :text('Step 1')", timeout=120_000)
    page.wait_for_function("() => !document.getElementById('step').hasAttribute('aria-busy')")
    # the button said it was busy, and no progress display was drawn over the outputs meanwhile
    assert page.evaluate("window.__busy") == ["true", None]
    shown = page.evaluate("window.__trackers")
    assert shown and not [c for c in shown if "hide" not in c.split()], shown
    page.wait_for_timeout(12_000)  # software WebGL: let the viewer draw the streamed frames
    shot = artifacts / "app_after_step.png"
    page.locator("#viewer").scroll_into_view_if_needed()
    page.screenshot(path=str(shot), full_page=True)
    page.locator("#viewer").screenshot(path=str(artifacts / "viewer_after_step.png"))
    assert shot.stat().st_size > 20_000
    # after a step only the figure on screen is drawn; choosing another figure's tab draws that one
    assert page.locator(".js-plotly-plot:visible").count() == 1
    page.get_by_role("tab", name="Timings").click()
    page.wait_for_selector(".js-plotly-plot:visible :text('Stage timings')", timeout=60_000)
    assert page.locator(".js-plotly-plot:visible :text('no timings yet')").count() == 0  # the step's timings
    # an error shows in the page, the app lives on
    page.click("#reask", no_wait_after=True)
    page.fill("#instruction textarea", "   ")
    page.click("#set-instruction", no_wait_after=True)
    page.wait_for_selector(":text('instruction is empty')", timeout=30_000)
    page.screenshot(path=str(artifacts / "app_error_message.png"))
    assert not [e for e in errors if "WebGL" not in e], errors
