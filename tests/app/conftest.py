"""Fixtures for the app tests: the app launched in this process, on its own port, closed after the module.

The app is imported from panels.app, not as `app`: with tests/ on sys.path, `import app` finds this folder
wherever app.py (a checkout-only shim) is not importable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from panels.app import launch as launch_in_process
from panels.state import AppConfig


@pytest.fixture(scope="module")
def launch_app() -> Iterator[Callable[..., str]]:
    """Call it with an AppConfig (and app.launch's keywords): launches the app without blocking and returns its
    URL. Every app it launched is closed once the module's tests are done. Torch runs on one thread."""
    torch.set_num_threads(1)
    demos = []

    def launch(config: AppConfig, **kwargs) -> str:
        demo, url = launch_in_process(config, block=False, **kwargs)
        demos.append(demo)
        return url

    yield launch
    for demo in demos:
        demo.close()
