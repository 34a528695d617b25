"""The app's A/B, sources, run/pause/branch, demo mode and probe paths through gradio_client, against
the app launched in-process on a free port (real runner, real pybullet sim, real tiny models).

Checkpoint B is a second tiny checkpoint saved here with random weights, so nothing depends on the
bundled demo checkpoints: the wiring, per-tab state and messages are what is checked.
"""

from __future__ import annotations

import shutil
import time

import pytest
import torch
from gradio_client import Client
from helpers import REPO, run_together

from panels import app
from panels.state import AppConfig
from panels.state.core import Workbench
from workbench.sessions import load_session

pytestmark = pytest.mark.slow
SAMPLE_EPISODE = REPO / "assets" / "episodes" / "sample"
SAMPLE_SESSION = REPO / "sessions" / "sample"


def load_args(**kw):
    """Arguments of /load in the page's order, with test defaults (2 DDIM steps keeps it quick)."""
    args = dict(ckpt="", ckpt_b="", mode="shared", kind="sim", task="tabletop_pick", seed=0, split="seen",
                obj="", episode="", simpler_task=None, ddim=2, cfg=1.5, horizon=7, alpha=0.1, instruction="")  # fmt: skip
    args.update(kw)
    return list(args.values())


@pytest.fixture(scope="module")
def server_state():
    """The server's state, made here and handed to the app, so tests can look at its model cache."""
    return {}


@pytest.fixture(scope="module")
def server(tmp_path_factory, server_state):
    from workbench.policy import ST4VLAPolicy, tiny_config

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("features")
    torch.manual_seed(1)
    ST4VLAPolicy.from_config(tiny_config()).save(root / "ckpts" / "tiny-b")
    shutil.copytree(SAMPLE_EPISODE, root / "data" / "episodes" / "sample")
    shutil.copytree(SAMPLE_SESSION, root / "sessions" / "sample")
    config = AppConfig(port=7900, checkpoint_dirs=[root / "ckpts"], data_dirs=[root / "data"],
                       sessions_dir=root / "sessions", demo_checkpoint=root / "no-demo", max_steps=6,
                       demo_step_seconds=0.0)  # fmt: skip
    server_state["workbench"] = workbench = Workbench(config)
    demo, url = app.launch(config, block=False, workbench=workbench)
    yield url, config, root
    demo.close()


@pytest.mark.parametrize("mode", ["shared", "independent"])
def test_ab_both_policies_at_every_step(server, mode):
    url, _, _ = server
    c = Client(url, verbose=False)
    status, summary, _, _, _ = c.predict(*load_args(ckpt_b="tiny-b", mode=mode), api_name="/load")
    assert set(summary["policies"]) == {"random-tiny", "tiny-b"} and summary["mode"] == mode
    assert len(summary["lanes"]) == (2 if mode == "independent" else 1)
    for step in (1, 2):
        _, summary, _, _ = c.predict(api_name="/step")
        assert summary["step"] == step
        for name in ("random-tiny", "tiny-b"):
            p = summary["policies"][name]
            assert p["chunk_first_action"] is not None and len(p["executed"]) == 7
        assert all(lane["step"] == step for lane in summary["lanes"].values())
    if mode == "independent":  # each checkpoint drives its own copy: two lanes, two branches
        assert set(summary["lanes"]) == {"random-tiny", "tiny-b"}
        assert "Lane `tiny-b`" in c.predict("", api_name="/reask")[0]


def test_recorded_episode_source_plays_recorded_actions(server):
    url, _, root = server
    c = Client(url, verbose=False)
    path = str(root / "data" / "episodes" / "sample")
    _, summary, instruction, _, _ = c.predict(*load_args(kind="episode", episode=path), api_name="/load")
    assert summary["step"] == 0 and instruction  # the episode's own task text
    _, summary, _, _ = c.predict(api_name="/step")
    assert summary["step"] == 1 and summary["lanes"]
    with pytest.raises(Exception, match="recording: its future cannot change"):
        c.predict("b", "", api_name="/branch")
    with pytest.raises(Exception, match="outside the folders allowed"):
        c.predict(*load_args(kind="episode", episode="/etc"), api_name="/load")


def test_saved_session_as_a_source(server):
    url, _, root = server
    c = Client(url, verbose=False)
    _, summary, _, _, _ = c.predict(*load_args(kind="episode", episode="sample"), api_name="/load")
    assert summary["step"] == 0
    _, summary, _, _ = c.predict(api_name="/step")
    assert summary["step"] == 1


def test_simpler_unavailable_shows_the_reason_in_the_page(server, monkeypatch):
    import json
    import urllib.request

    from panels.state import AppError
    from panels.state.core import Workbench
    from panels.state.specs import SourceSpec

    url, config, _ = server
    page = json.loads(urllib.request.urlopen(f"{url.rstrip('/')}/config", timeout=30).read())
    note = next(c for c in page["components"] if c.get("props", {}).get("elem_id") == "simpler-status")
    kinds = next(c for c in page["components"] if c.get("props", {}).get("elem_id") == "source-kind")
    assert "simpler" not in [v for _, v in kinds["props"]["choices"]]  # not offered...
    assert "SimplerEnv is not offered" in note["props"]["value"]  # ...and the page says exactly why
    assert "WORKBENCH_SIMPLER_PYTHON" in note["props"]["value"]
    monkeypatch.setenv("WORKBENCH_SIMPLER_PYTHON", "/nonexistent/python")
    wb = Workbench(config)
    ok, why = wb.simpler_status()
    assert not ok and "/nonexistent/python" in why and "not an executable file" in why
    with pytest.raises(AppError, match="SimplerEnv is not available here: .*not an executable"):
        wb.make_source(SourceSpec(kind="simpler", task="widowx_carrot_on_plate"))
    c = Client(url, verbose=False)
    with pytest.raises(Exception, match="simpler"):  # the API refuses what the page does not offer
        c.predict(*load_args(kind="simpler", simpler_task="widowx_carrot_on_plate"), api_name="/load")
    _, summary, _, _, _ = c.predict(*load_args(), api_name="/load")  # the app lives on
    assert summary["step"] == 0


def test_run_n_run_to_end_and_branch(server):
    url, config, _ = server
    c = Client(url, verbose=False)
    c.predict(*load_args(), api_name="/load")
    status, summary, _, _, _ = c.predict(3, api_name="/run_n")
    assert summary["step"] == 3 and "ran 3/3 steps" in status
    _, summary, _, _, _ = c.predict(api_name="/run_to_end")  # bounded by --max-steps (6 here)
    assert summary["step"] == config.max_steps
    _, summary, _, box = c.predict("lift", "lift the purple ball up", api_name="/branch")
    assert summary["branch"] == "lift" and summary["step"] == config.max_steps
    assert summary["instruction"] == "lift the purple ball up"
    assert box == "lift the purple ball up"  # the instruction box (what Re-ask asks) follows the branch
    with pytest.raises(Exception, match="taken"):
        c.predict("lift", "", api_name="/branch")


def test_pause_stops_a_run_in_progress(server, monkeypatch):
    url, config, _ = server
    monkeypatch.setattr(config, "max_steps", 60)  # a long run: Pause has to stop it, not the limit
    c = Client(url, verbose=False)
    c.predict(*load_args(), api_name="/load")
    job = c.submit(api_name="/run_to_end")
    t0 = time.time()
    while len(job.outputs()) < 2 and time.time() - t0 < 120:  # the run is streaming steps
        time.sleep(0.05)
    c.predict(api_name="/pause")
    status, summary, _, _, _ = job.result(timeout=120)
    assert 0 < summary["step"] < 60 and "paused after" in status
    _, again, _, _ = c.predict(api_name="/step")  # the tab goes on from where the run stopped
    assert again["step"] == summary["step"] + 1


def test_demo_mode_plays_the_sample_session_with_no_model(server, server_state):
    url, config, _ = server
    c = Client(url, verbose=False)
    policies = server_state["workbench"]._policies
    before = set(policies)
    status, summary, point, _ = c.predict(True, "sample", api_name="/demo_play")
    last = load_session(SAMPLE_SESSION).branch()[-1].step
    assert "Replaying saved session `sample`" in status and summary["step"] == last > 0
    assert "Your point" in point  # the click saved in the sample session is shown again
    assert set(policies) == before  # no model was loaded for it
    with pytest.raises(Exception, match="not a saved session|inside the allowed"):
        c.predict(True, "no-such-session", api_name="/demo_play")


def test_two_tabs_with_new_features_keep_apart(server):
    url, _, root = server
    a, b = Client(url, verbose=False), Client(url, verbose=False)
    out: dict[str, object] = {}

    def drive_a():
        a.predict(*load_args(ckpt_b="tiny-b", mode="independent"), api_name="/load")
        out["a"] = a.predict(2, api_name="/run_n")[1]

    def drive_b():
        b.predict(*load_args(kind="episode", episode=str(root / "data" / "episodes" / "sample")),
                  api_name="/load")  # fmt: skip
        out["b"] = b.predict(api_name="/step")[1]

    run_together(drive_a, drive_b)
    assert out["a"]["mode"] == "independent" and set(out["a"]["policies"]) == {"random-tiny", "tiny-b"}
    assert out["a"]["step"] == 2 and len(out["a"]["lanes"]) == 2
    assert out["b"]["mode"] == "shared" and set(out["b"]["policies"]) == {"random-tiny"}
    assert out["b"]["step"] == 1
    c = Client(url, verbose=False)
    with pytest.raises(Exception, match="press Load"):
        c.predict(api_name="/step")  # a third tab sees neither
