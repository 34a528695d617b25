"""ST4VLA Workbench: `workbench app` (or `python app.py` in a checkout) opens the web app on the demo
checkpoint and the built-in simulator, bound to 127.0.0.1 (pass --host to bind elsewhere, on purpose).

Folders come from the flags, else from --home / $WORKBENCH_HOME (a folder with assets/ and sessions/),
else from the source checkout the app runs from when it has assets/, else from the current folder.

Layout: Source (folded after Load) / Controls / Instruction on the left; on the right the status line,
the Rerun viewer with its legend, and the plots, step data, probe and sessions in tabs under it (one
screen, nothing far below the fold). Each browser tab keeps its own TabState in a gr.State.
Errors show as a message (toast), never as a red badge over the status line or an input.
`workbench app --demo sample` opens in demo mode: controls hidden, the saved session played (no model).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

# The workbench runs offline: no usage reports leave the machine (set before gradio is imported).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr

from panels import controls, episodes, instruction, plots, probe, sessions, source, viewer
from panels.common import UI, release_on_unload, release_tab
from panels.state import AppConfig, AppError
from panels.state.config import DEMO_NAME, HOME_ENV, VIEWER_IMAGES, default_home, home_folders
from panels.state.core import Workbench
from panels.state.sessions import session_path
from panels.state.summary import point_markdown

# The page never dials out: the embedded Rerun viewer checks GitHub for a newer release on start
# (api.github.com/repos/rerun-io/rerun/releases/latest), which an offline machine answers with
# net::ERR_NAME_NOT_RESOLVED in the console. Requests to other origins are answered here instead,
# with "503 offline", which the viewer treats as "no update known"; same-origin, data: and blob: go on.
OFFLINE_HEAD = """<script>
(() => {
  const send = window.fetch.bind(window);
  const away = (u) => {
    try {
      const url = new URL(u, location.href);
      return /^(https?|wss?):$/.test(url.protocol) && url.origin !== location.origin;
    } catch (e) { return false; }
  };
  window.fetch = (input, init) => {
    const url = typeof input === "string" ? input : (input && input.url) || String(input);
    if (away(url)) return Promise.resolve(new Response("", {status: 503, statusText: "offline"}));
    return send(input, init);
  };
})();
</script>"""


# A failed event's outputs get Gradio's red "Error" badge over them (the status line, the instruction
# box); the message is already in the toast, so the badge is hidden and the widgets stay readable.
# A busy Step button (panels.controls) is dimmed and ends in "…", drawn once: nothing animates (Gradio's
# buttons fade between states, which redraws the page for 0.2 s).
PAGE_CSS = """
[data-testid="status-tracker"]:has(.error), [data-testid="status-tracker"].error { display: none !important; }
#status { min-height: 4.5em; }
#step { transition: none !important; }
#step[aria-busy="true"] { opacity: 0.6; cursor: progress; }
#step[aria-busy="true"]::after { content: " …"; }
"""


def build_app(config: AppConfig, workbench: Workbench | None = None) -> gr.Blocks:
    """The page. `workbench` is the server's state (checkpoint cache, listings); one is made from
    `config` when none is given (a caller that wants to look at the cache passes its own)."""
    workbench = workbench or Workbench(config)
    with gr.Blocks(title="ST4VLA Workbench", analytics_enabled=False) as demo:
        ui = UI(workbench=workbench, state=gr.State(None, delete_callback=release_tab))
        gr.Markdown(
            "# ST4VLA Workbench\nStep a spatially guided VLA: its spatial prompt, action chunk and rollout."
        )
        if not workbench.default_checkpoint():
            found = workbench.list_checkpoints()
            what = (f"A starts on {Path(found[0]).name}" if found
                    else "Load uses a tiny policy with RANDOM weights")  # fmt: skip
            gr.Markdown(f"⚠️ **No demo checkpoint found** ({config.demo_checkpoint.name}): {what}.",
                        elem_id="random-weights-warning")  # fmt: skip
        sessions.render_demo_switch(ui)
        demo_mode = bool(config.demo_session)
        with gr.Row():
            with gr.Column(scale=1, min_width=340, visible=not demo_mode) as control_column:
                source.render(ui)
                episodes.render(ui)
                controls.render(ui)
                instruction.render(ui)
            with gr.Column(scale=3):
                status = gr.Markdown("**Nothing loaded.** Pick a checkpoint and a source, then press **Load**.",
                                     elem_id="status")  # fmt: skip
                viewer.render(ui)
                with gr.Tabs():
                    plots.render(ui)  # one tab per figure
                    with gr.Tab("Step data"):
                        summary = gr.JSON(label="this step as data")
                    with gr.Tab("Probe"):
                        probe.render(ui)
                    with gr.Tab("Sessions"):
                        sessions.render(ui)
        ui.add(control_column=control_column, status=status, summary=summary)
        # Wire after everything is rendered: panels send outputs to each other's widgets.
        for panel in (source, episodes, controls, instruction, sessions, probe):
            panel.wire(ui)
        if demo_mode:  # --demo: play the session as soon as the page opens
            ui.after_step(demo.load(*ui["demo_play"]))
        else:
            demo.load(lambda: point_markdown(workbench.new_tab()), None, ui["point_info"])
            # the viewer's one-time drawing set-up, while the page opens (workbench.viz.welcome)
            demo.load(viewer.welcome, None, ui["viewer"], show_progress="hidden")
        viewer.wire(ui)  # chains the viewer refresh after every step event
        plots.wire(ui)
        release_on_unload(demo)  # a closed page's tab frees its runner, recording and threads
    return demo


def preload(workbench: Workbench | None) -> threading.Thread | None:
    """Warm the server up in the background while the page opens (Workbench.warm_up: the demo
    checkpoint read and stepped once), so the first Load and Step do not wait for one-time costs (a
    Load meanwhile waits on the cache's lock). Prints a line when done. Not in demo mode: no model."""
    if workbench is None or workbench.config.demo_session or not workbench.default_checkpoint():
        return None

    def warm() -> None:
        t0 = time.perf_counter()
        try:
            name = workbench.warm_up()
        except AppError:
            return  # Load will say why, in the page
        except Exception as e:  # the page's own Load reports a real problem; the server stays up
            print(f"workbench app: warm-up failed ({type(e).__name__}: {e})", file=sys.stderr, flush=True)
            return
        print(f"workbench app: ready ({name} read and stepped once in {time.perf_counter() - t0:.1f} s)",
              flush=True)  # fmt: skip

    thread = threading.Thread(target=warm, name="warm-up", daemon=True)
    thread.start()
    return thread


def free_port(host: str, start: int, tries: int = 50) -> int:
    """`start` if nothing listens there, else the next free port."""
    for port in range(start, start + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {start}..{start + tries - 1} on {host}: pass --port")


def parse_args(argv: list[str] | None = None, prog: str = "workbench app") -> AppConfig:
    """The app's flags into an AppConfig; a folder flag not given comes from --home (see the doc above)."""
    defaults = AppConfig(**home_folders(Path(".")))  # only the non-folder defaults are read from it
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--host", default=defaults.host, help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument(
        "--port", type=int, default=defaults.port, help="first port to try (the next free one is used)"
    )
    p.add_argument("--home", type=Path, default=None,
                   help=f"folder with assets/ and sessions/ (default: ${HOME_ENV}, else the checkout, else .)")  # fmt: skip
    p.add_argument("--checkpoint-dirs", nargs="+", type=Path, default=None,
                   help="folders checkpoints may be loaded from (default HOME/assets/checkpoints)")  # fmt: skip
    p.add_argument("--demo-checkpoint", type=Path, default=None,
                   help=f"the checkpoint Load uses when none is picked (default HOME/assets/checkpoints/{DEMO_NAME})")  # fmt: skip
    p.add_argument("--data-dirs", nargs="+", type=Path, default=None,
                   help="folders recorded episodes and sessions may be read from (default HOME/assets HOME/sessions)")  # fmt: skip
    p.add_argument(
        "--sessions-dir", type=Path, default=None, help="where sessions are saved (default HOME/sessions)"
    )
    p.add_argument("--max-steps", type=int, default=defaults.max_steps, help="'Run to end' stops here")
    p.add_argument("--viewer-images", choices=VIEWER_IMAGES, default=defaults.viewer_images,
                   help="camera images in the viewer: raw (drawn with the step's overlays) or jpeg (smaller "
                   "for long real-camera episodes; each step's image blanks while it decodes)")  # fmt: skip
    p.add_argument("--demo", dest="demo_session", default="", metavar="SESSION",
                   help="demo mode: hide the controls and play this saved session (e.g. 'sample'); no model")  # fmt: skip
    args = vars(p.parse_args(argv))
    folders = home_folders(args.pop("home") or default_home())
    values = {k: (folders[k] if v is None and k in folders else v) for k, v in args.items()}
    names = {f.name for f in fields(AppConfig)}
    return AppConfig(**{k: v for k, v in values.items() if k in names})


def launch(
    config: AppConfig, *, block: bool = True, workbench: Workbench | None = None
) -> tuple[gr.Blocks, str]:
    """Start the server; returns (blocks, local url). block=False returns at once (tests, benchmarks).
    `workbench`: the server's state, made from `config` when not given."""
    port = free_port(config.host, config.port)
    if config.demo_session:  # fail at start with a clear message, not in the page later
        session_path(config, config.demo_session)
    workbench = workbench or Workbench(config)
    demo = build_app(config, workbench)
    preload(workbench)
    demo.queue(default_concurrency_limit=4)
    config.sessions_dir.mkdir(parents=True, exist_ok=True)
    _, url, _ = demo.launch(
        server_name=config.host, server_port=port, prevent_thread_lock=not block, show_error=True,
        allowed_paths=[str(config.sessions_dir)], quiet=not block, head=OFFLINE_HEAD, css=PAGE_CSS,
    )  # fmt: skip
    return demo, url


def main(argv: list[str] | None = None, prog: str = "workbench app") -> int:
    """The app's entry point (`workbench app`, `python app.py`): parse the flags, serve until stopped."""
    import torch

    torch.set_num_threads(1)  # the machine is shared; one thread per inference keeps the UI responsive
    try:
        launch(parse_args(argv, prog), block=True)
    except AppError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
