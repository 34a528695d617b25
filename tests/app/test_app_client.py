"""The app driven through its HTTP API with gradio_client, launched in-process on a free port.

Uses a tiny policy with random weights (the demo checkpoint is hidden on purpose, so the tests do
not depend on it): what is checked is the wiring, per-tab state and error messages, not skill.
"""

from __future__ import annotations

import json

import pytest
from gradio_client import Client
from helpers import no_demo_config, run_together

from panels.probe import COLUMNS

pytestmark = pytest.mark.slow

# ckpt, ckpt_b, A/B mode, kind, task, seed, split, object, episode path, SimplerEnv task, ddim, cfg,
# horizon, alpha, instruction
LOAD = ("", "", "shared", "sim", "tabletop_pick", 0, "seen", "", "", None, 2, 1.5, 7, 0.1, "")
SEED = 5
RESET = LOAD[
    3:10
]  # the source widgets Reset reads: kind, task, seed, split, object, episode, SimplerEnv task


@pytest.fixture(scope="module")
def server(tmp_path_factory, launch_app):
    root = tmp_path_factory.mktemp("app")
    (root / "ckpts").mkdir()
    config = no_demo_config(root, 7870, checkpoint_dirs=[root / "ckpts"], data_dirs=[root / "data"])
    return launch_app(config), config


def _load(client: Client, seed: int = 0):
    args = list(LOAD)
    args[SEED] = seed
    return client.predict(*args, api_name="/load")


def test_reset_step_edit_reask_save(server):
    url, config = server
    c = Client(url, verbose=False)
    status, summary, instruction, _, _ = _load(c)
    assert summary["step"] == 0 and "Step 0" in status and instruction == summary["instruction"]
    assert set(summary["policies"]) == {"random-tiny"}

    _, summary, _, viewer = c.predict(api_name="/step")
    assert summary["step"] == 1 and len(summary["executed_action"]) == 7
    assert str(viewer).endswith("playlist.m3u8")  # the viewer's bytes come with Step's own reply

    c.predict("  lift   the purple ball ", api_name="/set_instruction")
    status, summary, _ = c.predict("", api_name="/reask")  # an empty box re-asks what is set
    assert summary["step"] == 1  # re-ask does not step
    assert summary["instruction"] == "lift the purple ball"
    assert summary["policies"]["random-tiny"]["instruction"] == "lift the purple ball"
    assert "lift the purple ball" in status

    _, summary, _, _ = c.predict(api_name="/step")
    assert summary["step"] == 2 and summary["instruction"] == "lift the purple ball"
    status, summary, _ = c.predict("raise the purple ball", api_name="/reask")  # the box's text is asked
    assert summary["step"] == 2 and summary["instruction"] == "raise the purple ball"

    status, summary, _, instruction = c.predict(*RESET, api_name="/reset")
    assert summary["step"] == 0 and instruction == summary["instruction"]
    other = list(RESET)
    other[1] = "tabletop_stack"  # another task: Reset says to press Load and changes nothing
    status, summary, _, _ = c.predict(*other, api_name="/reset")
    assert "press **Load**" in status and summary["step"] == 0
    c.predict(api_name="/step")
    name, _ = c.predict(api_name="/save_session")
    saved = config.sessions_dir / name
    lines = (saved / "steps.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [0, 1]
    assert (saved / "recording.rrd").stat().st_size > 1000


def test_bad_input_is_a_message_and_the_app_lives_on(server):
    url, _ = server
    c = Client(url, verbose=False)
    with pytest.raises(Exception, match="press Load"):
        c.predict(api_name="/step")
    args = list(LOAD)
    args[0] = "/etc"
    with pytest.raises(Exception, match="outside the folders allowed"):
        c.predict(*args, api_name="/load")
    args[0] = "../../etc"
    with pytest.raises(Exception, match="inside the allowed folders"):
        c.predict(*args, api_name="/load")
    _load(c)
    with pytest.raises(Exception, match="instruction is empty"):
        c.predict("   ", api_name="/set_instruction")
    with pytest.raises(Exception, match="keep it under"):
        c.predict("go " * 200, api_name="/set_instruction")
    _, summary, _, _ = c.predict(api_name="/step")  # still alive, state intact
    assert summary["step"] == 1


def test_two_clients_at_once_do_not_see_each_other(server):
    url, _ = server
    a, b = Client(url, verbose=False), Client(url, verbose=False)
    results: dict[str, object] = {}

    def drive_a():
        _load(a, seed=0)
        a.predict("put the ball in the basket", api_name="/set_instruction")
        for _ in range(3):
            results["a"] = a.predict(api_name="/step")[1]

    def drive_b():
        _load(b, seed=5)
        results["b"] = b.predict(api_name="/step")[1]

    run_together(drive_a, drive_b)
    assert results["a"]["step"] == 3 and results["a"]["instruction"] == "put the ball in the basket"
    assert results["b"]["step"] == 1 and results["b"]["instruction"] != "put the ball in the basket"
    _, again, _ = b.predict("", api_name="/reask")  # b's tab is still at its own step
    assert again["step"] == 1


def test_probe_through_the_api_fills_the_table_and_saves_each_episode(server):
    """The Probe panel's /probe event: one episode, its row in the table's columns, its session saved;
    /cancel_probe and the page's /shown echo with nothing running change nothing."""
    url, config = server
    c = Client(url, verbose=False)
    _load(c)
    # objects, instructions, seeds, max steps, task, split, checkpoint, on Ray, Ray address, workers
    table, _ = c.predict([], "", "3", 2, "tabletop_pick", "seen", "A", False, "", 1, api_name="/probe")
    assert table["headers"] == COLUMNS and len(table["data"]) == 1
    row = dict(zip(COLUMNS, table["data"][0], strict=True))
    assert row["seed"] == 3 and 1 <= row["steps"] <= 2 and row["success"] in (True, False)
    assert (config.sessions_dir / row["session"] / "steps.jsonl").is_file()
    c.predict(api_name="/cancel_probe")
    c.predict(7, api_name="/shown")
    _, summary, _, _ = c.predict(api_name="/step")  # the tab's own episode went on untouched by the probe
    assert summary["step"] == 1
