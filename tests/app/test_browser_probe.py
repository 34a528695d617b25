"""The probe on the real page in headless Chromium: every failed episode lists its triage reason, and
the heat map is drawn. Needs Debian's chromium at /usr/bin/chromium; never `playwright install`.
The screenshot lands in tests/artifacts/ for a person to look at."""

from __future__ import annotations

import pytest
from helpers import no_demo_config

from panels.probe import COLUMNS
from workbench.triage import DESCRIPTIONS, FAILURES

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def url(tmp_path_factory, launch_app):
    return launch_app(no_demo_config(tmp_path_factory.mktemp("browser-probe"), 7890))


def test_probe_table_lists_a_triage_reason_for_each_failure(chromium, artifacts, url):
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("#load", timeout=30_000)
    page.get_by_role("tab", name="Probe").click()
    page.get_by_label("Seeds (comma separated)").fill("0, 1")
    page.get_by_label("Max steps per episode").fill("3")
    page.click("#probe-run", no_wait_after=True)
    # a random policy in 3 steps fails both episodes: each row names why
    page.wait_for_function(
        "() => document.querySelectorAll('#probe-table [role=row][data-index]').length >= 2", timeout=240_000
    )
    rows = page.eval_on_selector_all(  # Gradio's dataframe draws its rows as a virtual grid
        "#probe-table [role=row][data-index]",
        "rows => rows.map(r => [...r.querySelectorAll('[role=gridcell]')].map(c => c.innerText.trim()))",
    )
    assert len(rows) == 2, rows
    header = page.eval_on_selector_all("#probe-table th[title]", "hs => hs.map(h => h.title)")
    assert "triage" in header and "why" in header, header
    reason, why = COLUMNS.index("triage"), COLUMNS.index("why")
    for row in rows[:2]:
        assert row[reason] in FAILURES, row
        assert row[why].startswith(DESCRIPTIONS[row[reason]]), row
    page.wait_for_selector(".js-plotly-plot .heatmaplayer", timeout=60_000)  # the outcome heat map
    heat = page.evaluate(
        "() => { const d = document.querySelector('.js-plotly-plot').data[0]; return [d.x, d.y]; }"
    )
    assert len(heat[0]) == 1 and "<object>" in heat[0][0] and len(heat[1]) == 2  # one column, not a diagonal
    page.locator("#probe-table").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "probe_triage.png"), full_page=True)
