"""The app layer's imports: panels/ modules form no import circle, at module level or through an import
made inside a function (tests/test_imports.py checks the same of workbench/, and that workbench/ never
imports panels/). The parts of `TabState` (panels/state/stepping.py, edits.py, viewer.py) sit below
panels/state/tab.py, which mixes them in: none of them imports it back.
"""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import cycles, reachable

ROOT = Path(__file__).resolve().parents[2]
PANELS = ROOT / "panels"


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under panels/ (packages by their __init__)."""
    out = {}
    for path in sorted(PANELS.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = module_files()


def _targets(node: ast.Import | ast.ImportFrom) -> set[str]:
    """The panels modules an import statement executes ('from panels.state import sessions' imports the
    submodule; 'from panels.state import AppError' the package)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in MODULES}
    base = node.module or ""
    if node.level or base not in MODULES:
        return set()
    return {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names}


def import_graph(with_inner: bool) -> dict[str, set[str]]:
    """Module -> the panels modules it imports at import time (and inside functions, with_inner)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        nodes = ast.walk(tree) if with_inner else iter(tree.body)
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                graph[module] |= _targets(node) - {module}
    return graph


def test_the_checker_reads_the_real_imports_and_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    graph = import_graph(with_inner=False)
    assert {"panels.state.stepping", "panels.state.edits", "panels.state.viewer"} <= graph["panels.state.tab"]
    assert "panels.state.sessions" in graph["panels.probe"]  # 'from panels.state import sessions'


def test_no_import_circle_in_the_app_layer():
    assert cycles(import_graph(with_inner=False)) == [], "module-level import circles among panels modules"
    assert cycles(import_graph(with_inner=True)) == [], "circles through imports made inside functions"


def test_the_parts_of_the_tab_sit_below_it():
    graph = import_graph(with_inner=True)
    for part in ("specs", "stepping", "edits", "viewer", "clicks", "config", "counterfactual"):
        assert "panels.state.tab" not in reachable(graph, f"panels.state.{part}"), part
