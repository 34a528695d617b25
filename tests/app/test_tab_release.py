"""A closed browser tab lets go of everything it held: runner, simulator, Rerun recording, threads.

The app's per-tab gr.State has a delete callback (`panels.common.release_tab`), and closing the page
deletes that state at once (`release_on_unload`). The callback is called directly here.
"""

from __future__ import annotations

import gc
import os
import time
import weakref

import gradio as gr
import pytest
import torch

from panels import app
from panels.common import release_tab
from panels.state import AppConfig
from panels.state.core import Workbench
from panels.state.specs import PolicySettings, SourceSpec
from panels.state.viewer import BLUEPRINTS


def os_threads() -> int:
    """Threads of this process, native ones included (Rerun's are not Python threads)."""
    return len(os.listdir("/proc/self/task"))


def settle(want: int, timeout: float = 10.0) -> int:
    """The thread count once it is back to `want` (threads exit asynchronously), or after `timeout`."""
    deadline = time.monotonic() + timeout
    while os_threads() > want and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    return os_threads()


def used_tab(wb: Workbench):
    tab = wb.new_tab()
    tab.load(SourceSpec(task="tabletop_pick"), [""], PolicySettings(num_ddim_steps=2))
    tab.step(2)
    tab.send_blueprint(BLUEPRINTS[0])  # a layout change builds a blueprint stream too
    tab.viewer_bytes()
    return tab


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc")
def test_the_delete_callback_frees_the_tab(tmp_path):
    torch.set_num_threads(1)
    wb = Workbench(AppConfig(sessions_dir=tmp_path / "sessions"))
    release_tab(used_tab(wb))  # the first tab starts the process-wide pools (torch, Rerun's runtime)
    baseline = settle(0, timeout=1.0)
    tab = used_tab(wb)
    held = {
        "runner": weakref.ref(tab.runner),
        "logger": weakref.ref(tab.logger),
        "recording": weakref.ref(tab.logger.rec),
        "simulator": weakref.ref(tab.runner.lanes[0].source),
    }
    assert os_threads() > baseline and tab.records
    release_tab(tab)
    gc.collect()
    assert {name: ref() is None for name, ref in held.items()} == dict.fromkeys(held, True)
    assert tab.runner is None and tab.logger is None and tab.records == []
    assert settle(baseline) == baseline
    release_tab(None)  # a tab that never had an event: nothing to free, no error


def test_the_app_state_has_the_callback_and_an_unload_event(tmp_path):
    demo = app.build_app(AppConfig(sessions_dir=tmp_path / "sessions"))
    states = [b for b in demo.blocks.values() if isinstance(b, gr.State) and b.delete_callback is release_tab]
    assert len(states) == 1
    assert any(t[1] == "unload" for dep in demo.fns.values() for t in dep.targets)
