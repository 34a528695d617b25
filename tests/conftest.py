"""Shared fixtures: the bundled tiny checkpoint, a headless Chromium for the browser tests.

Plain helpers (paths to test data, statistics, records) live in tests/helpers.py; this file puts tests/ on
sys.path, so test files in any folder import them as `helpers`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import CHECKPOINTS

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (scripts/test.sh installs it as root)
# Without the background-networking flags Chromium keeps dialling out, which this offline machine refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def bundled():
    """The bundled st4vla-tiny checkpoint, loaded once per test module (each module may change its options)."""
    import torch

    from workbench.policy import ST4VLAPolicy

    torch.set_num_threads(1)
    return ST4VLAPolicy.load(CHECKPOINTS / "st4vla-tiny")


@pytest.fixture
def artifacts() -> Path:
    """Where browser tests leave screenshots for a person to look at (git-ignored)."""
    path = Path(__file__).parent / "artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def chromium():
    """A headless Chromium driven by Playwright. Never `playwright install`: it downloads a browser."""
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
