"""The diagnostics kept under research/experiments/ still start against today's library.

They are not part of the product (nothing in workbench/ imports them), but docs/results.md rests on
their figures, so each must at least import the library pieces it uses and parse its options.
One interpreter runs them all (`runpy` with `--help`), so torch is imported once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("oracle_points.py", "grounding_breakdown.py", "linear_probe.py")

RUNNER = """
import runpy, sys
for path in sys.argv[1:]:
    sys.argv = [path, "--help"]
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exit:
        if exit.code not in (0, None):
            raise
    print("SMOKE-OK", path, flush=True)
"""


def test_research_scripts_parse_help() -> None:
    paths = [str(ROOT / "research" / "experiments" / name) for name in SCRIPTS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, *paths], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for path in paths:
        assert f"SMOKE-OK {path}" in done.stdout, done.stdout[-3000:]
    assert done.stdout.count("usage:") == len(paths)


def test_product_does_not_import_research() -> None:
    for folder in ("workbench", "panels"):
        for source in (ROOT / folder).rglob("*.py"):
            text = source.read_text()
            assert "import research" not in text and "from research" not in text, source
