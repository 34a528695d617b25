"""The page shows the truth at a glance, in headless Chromium against the bundled demo checkpoint:

- Branch at step 3 with a new instruction, step twice: the status and the viewer's camera view name
  the branch (the viewer's blueprint reads the branch's entities), and the branch's instruction;
- typing a new instruction and pressing Re-ask asks that instruction;
- changing the object and pressing Reset shows the new object (its instruction);
- a typed box gives the counterfactual chunk of st4vla-tiny (it acts on its own answer), drawn in white;
- Pause during Run to end stops at the step on screen (at most the one step in progress);
- the page makes no request to another host (the Rerun viewer's update check is answered locally).

Screenshots land in tests/artifacts/ (truth_branch.png, truth_viewer_branch.png, truth_reset.png,
truth_counterfactual.png, truth_paused.png,
truth_layers_no_ground_truth.png) for a person to look at. Needs Debian's chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest

from panels.state import AppConfig

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def url(tmp_path_factory, launch_app):
    root = tmp_path_factory.mktemp("browser-truth")
    config = AppConfig(port=7910, sessions_dir=root / "sessions", max_steps=60)
    if not config.demo_checkpoint.is_dir():
        pytest.skip("the bundled demo checkpoint assets/checkpoints/st4vla-tiny is not here")
    return launch_app(config)


def wait_status(page, text: str, timeout: int = 120_000) -> None:
    """Wait until the status line's visible text contains `text` (Markdown code marks are not text)."""
    page.wait_for_function("t => document.querySelector('#status').innerText.includes(t)", arg=text,
                           timeout=timeout)  # fmt: skip


def status_step(page) -> int:
    return int(re.search(r"Step (\d+)", page.inner_text("#status")).group(1))


def test_branch_reask_reset_pause_and_no_external_requests(chromium, artifacts, url):
    page = chromium.new_page(viewport={"width": 1500, "height": 1100})
    origin = urlparse(url).netloc
    away: list[str] = []
    page.on(
        "request",
        lambda r: (
            away.append(r.url) if r.url.startswith("http") and urlparse(r.url).netloc != origin else None
        ),
    )
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("#load", timeout=30_000)
    page.click("#load", no_wait_after=True)
    wait_status(page, "Step 0", timeout=120_000)
    page.wait_for_selector("#viewer canvas", timeout=60_000)
    page.wait_for_timeout(3_000)
    # the source panel folds after Load, and the plots sit in tabs under the viewer: the one on screen
    # (the actions over time, 900 px tall) is drawn at Load, the others are not stacked under it
    page.wait_for_selector("#load", state="hidden", timeout=30_000)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    assert page.locator(".js-plotly-plot:visible").count() == 1
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 2500, height
    assert "st4vla-tiny: its answer and rollout" in page.inner_text("#legend")
    assert not page.locator("#attention input").is_checked()  # the heatmap is off until asked for

    # 1. branch at step 3 with a new instruction, then step to 5
    page.fill("#run-n-count input", "3")
    page.click("#run-n", no_wait_after=True)
    wait_status(page, "ran 3/3 steps", timeout=180_000)
    page.fill("#branch-name :is(input, textarea)", "yellow")
    page.fill("#branch-instruction :is(input, textarea)", "move the yellow cube near the red can")
    page.click("#branch", no_wait_after=True)
    wait_status(page, "branch yellow", timeout=120_000)
    for step in (4, 5):
        page.click("#step", no_wait_after=True)
        wait_status(page, f"Step {step}", timeout=120_000)
    status = page.inner_text("#status")
    assert "branch yellow, from main at step 3" in status.replace("`", ""), status
    assert "move the yellow cube near the red can" in status
    assert "[st4vla-tiny · branch yellow]" in status  # the viewer's camera view reads the branch
    page.wait_for_timeout(12_000)  # software WebGL: let the viewer draw the streamed frames
    page.locator("#viewer").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "truth_branch.png"))
    page.locator("#viewer").screenshot(path=str(artifacts / "truth_viewer_branch.png"))

    # 2. Re-ask asks what the box says
    page.fill("#instruction textarea", "pick up the red can")
    page.click("#reask", no_wait_after=True)
    wait_status(page, "Instruction: pick up the red can", timeout=120_000)
    assert status_step(page) == 5

    # 3. another object, then Reset: the new scene comes back, not the old one
    page.locator("#source-box").get_by_text("Source (folds after Load").click()  # Load folded it
    page.wait_for_selector("#object input", timeout=30_000)
    page.fill("#object input", "lego brick")
    page.keyboard.press("Enter")
    page.click("#reset", no_wait_after=True)
    wait_status(page, "Step 0", timeout=120_000)
    page.wait_for_function(
        "document.querySelector('#status').innerText.includes('lego brick')", timeout=60_000
    )
    assert "lego brick" in page.input_value("#instruction textarea")
    page.wait_for_timeout(8_000)
    page.locator("#viewer").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "truth_reset.png"))

    # 3b. counterfactual: the model's chunk if it had answered the typed box, beside its own (white)
    page.locator("#counterfactual-box").get_by_text("Counterfactual").click()
    page.fill("#cf-box :is(input, textarea)", "10, 10, 60, 60")
    page.click("#cf-run", no_wait_after=True)
    page.wait_for_function(
        "document.querySelector('#cf-result').innerText.includes('first action moved by')", timeout=120_000
    )
    page.wait_for_timeout(8_000)
    page.locator("#viewer").screenshot(path=str(artifacts / "truth_counterfactual.png"))

    # 4. Pause stops at the step on screen
    page.click("#run-end", no_wait_after=True)
    wait_status(page, "running: 4/", timeout=180_000)
    # read the screen and press Pause in one page task: the step the user sees when the click lands
    seen = page.evaluate(
        "() => { const s = document.querySelector('#status').innerText;"
        " document.querySelector('#pause').click(); return s; }"
    )
    shown = int(re.search(r"Step (\d+)", seen).group(1))
    wait_status(page, "paused after", timeout=120_000)
    final = status_step(page)
    assert shown <= final <= shown + 1, (shown, final)  # at most the step that was in progress
    page.wait_for_timeout(5_000)
    assert status_step(page) == final  # and nothing arrives after the pause
    page.locator("#viewer").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "truth_paused.png"))

    # 4b. layers: ground truth off in the camera view (the page's switch; Rerun's own panels also can)
    page.locator("#layers").get_by_label("ground truth").uncheck()
    page.wait_for_timeout(8_000)
    page.locator("#viewer").screenshot(path=str(artifacts / "truth_layers_no_ground_truth.png"))

    # 5. nothing left the machine
    assert away == [], away
    assert not [m for m in console if "ERR_NAME_NOT_RESOLVED" in m or "Failed to fetch" in m], console
