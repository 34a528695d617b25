"""The recording the viewer opens on (workbench.viz.welcome), read back with Rerun's own reader."""

from __future__ import annotations

from helpers import rrd_columns

from workbench.viz.rerun_log import APPLICATION_ID
from workbench.viz.welcome import MESSAGE, WELCOME_ID, welcome_recording


def test_the_welcome_draws_each_kind_of_thing_a_step_draws_and_says_nothing_is_loaded(tmp_path):
    path = tmp_path / "welcome.rrd"
    path.write_bytes(welcome_recording())
    columns = rrd_columns(path)
    labels = [t for c in columns.values() for row in c.get("Boxes2D:labels", []) for t in row]
    logs = [t for c in columns.values() for row in c.get("TextLog:text", []) for t in row]
    kinds = {name for c in columns.values() for name in c}
    for kind in ("Image:buffer", "Boxes2D:half_sizes", "Points2D:positions", "LineStrips2D:strips", "Scalars:scalars",
                 "TextLog:text"):  # fmt: skip
        assert kind in kinds, (kind, sorted(kinds))
    assert labels == [MESSAGE] and all("nothing is loaded" in line for line in logs)
    assert WELCOME_ID != APPLICATION_ID  # its own application: the app's blueprints are not touched


def test_the_page_sends_the_welcome_to_the_viewer_when_it_opens(tmp_path):
    from panels import app
    from panels.state import AppConfig

    config = app.build_app(AppConfig(sessions_dir=tmp_path / "sessions")).get_config_file()
    ids = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
    on_open = [d for d in config["dependencies"] if any(t[1] == "load" for t in d["targets"])]
    assert any([ids.get(o) for o in d["outputs"]] == ["viewer"] for d in on_open)
    demo_mode = app.build_app(
        AppConfig(sessions_dir=tmp_path / "s2", demo_session="sample")
    ).get_config_file()
    ids = {c["id"]: c.get("props", {}).get("elem_id") for c in demo_mode["components"]}
    opens = [d for d in demo_mode["dependencies"] if any(t[1] == "load" for t in d["targets"])]
    assert not any(
        [ids.get(o) for o in d["outputs"]] == ["viewer"] for d in opens
    )  # the session plays instead
