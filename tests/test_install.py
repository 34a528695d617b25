"""`pip install .` (not editable) runs the app outside a checkout.

The wheel is built from a copy of the project's packaging inputs (pyproject.toml, README.md, workbench/,
panels/) the way pip builds it, installed with `pip install --target` into a folder of its own, and the
app is started from that folder in another process, in a working folder that is not the checkout, with
its home (--home) holding only a copy of the demo checkpoint. gradio_client then loads and steps it.
Nothing is downloaded: the build uses the setuptools of this environment (the test extra pins it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client
from helpers import CHECKPOINTS, REPO

from panels.app import free_port
from panels.state.config import DEMO_NAME, HOME_ENV

pytestmark = pytest.mark.slow

PACKAGING = ("pyproject.toml", "README.md", "workbench", "panels")
# ckpt, ckpt_b, A/B mode, kind, task, seed, split, object, episode path, SimplerEnv task, ddim, cfg,
# horizon, alpha, instruction (as tests/app/test_app_client.py)
LOAD = ("", "", "shared", "sim", "tabletop_pick", 0, "seen", "", "", None, 2, 1.5, 7, 0.1, "")


def _run(args: list[str], cwd: Path, env: dict | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel installed into its own folder; returns that folder (a site directory)."""
    root = tmp_path_factory.mktemp("install")
    src = root / "src"
    src.mkdir()
    for name in PACKAGING:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(path, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(src)], cwd=root)
    (wheel,) = (root / "dist").glob("st4vla_workbench-*.whl")
    _run([*pip, "install", "--no-deps", "--no-index", "--target", str(root / "site"), str(wheel)], cwd=root)
    return root / "site"


def _env(site: Path, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != HOME_ENV}
    return {**env, "PYTHONPATH": str(site), HOME_ENV: str(home), "OMP_NUM_THREADS": "1"}


def test_the_wheel_holds_the_packages_and_no_checkout_files(installed):
    (wheel,) = installed.parent.glob("dist/*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "panels/app.py" in names and "workbench/cli.py" in names and "workbench/policy/policy.py" in names
    tops = {n.split("/")[0] for n in names}
    assert not tops & {"tests", "assets", "sessions", "research", "scripts", "benchmarks", "app.py"}
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "app = panels.app:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_installed_app_loads_and_steps_outside_a_checkout(installed, tmp_path):
    home, elsewhere = tmp_path / "home", tmp_path / "cwd"
    shutil.copytree(CHECKPOINTS / DEMO_NAME, home / "assets" / "checkpoints" / DEMO_NAME)
    elsewhere.mkdir()
    env = _env(installed, home)
    where = _run([sys.executable, "-c", "import workbench, panels; print(workbench.__file__, panels.__file__)"],
                 cwd=elsewhere, env=env).split()  # fmt: skip
    assert all(Path(p).is_relative_to(installed) for p in where), where  # not the checkout's packages

    port = free_port("127.0.0.1", 7930)
    app = subprocess.Popen(
        [sys.executable, "-c", "import sys; from workbench.cli import main; sys.exit(main(sys.argv[1:]))",
         "app", "--port", str(port)],
        cwd=elsewhere, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        client = _connect(f"http://127.0.0.1:{port}/", app)
        status, summary, _, _, _ = client.predict(*LOAD, api_name="/load")
        assert "Step 0" in status and set(summary["policies"]) == {DEMO_NAME}
        _, summary, _, _ = client.predict(api_name="/step")
        assert summary["step"] == 1 and len(summary["executed_action"]) == 7
    finally:
        app.terminate()
        out = app.communicate(timeout=60)[0]
    assert "Traceback" not in out, out[-3000:]


def _connect(url: str, app: subprocess.Popen, timeout_s: float = 180.0) -> Client:
    """A client once the app answers; fails with the app's output if it exits first."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if app.poll() is not None:
            pytest.fail(f"the installed app exited with {app.returncode}:\n{app.stdout.read()[-3000:]}")
        try:
            return Client(url, verbose=False)
        except Exception:
            time.sleep(1.0)
    pytest.fail(f"the installed app did not answer at {url} within {timeout_s:.0f} s")
