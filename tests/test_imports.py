"""Every module of workbench/ imports on its own, and the package's module-level imports form no circle.

`python -c "import workbench.<module>"` must work for each module in a fresh interpreter: a module that
only imports after another one was imported first leans on an import order (the sign of a circle
dodged). The static check reads every module with ast and follows the imports executed at import time
(module level, outside `if TYPE_CHECKING:`); imports inside functions do not count as edges there, and
a second check refuses any import inside a function that would close a circle if it were at module
level (an import moved into a function to dodge one). Lazy imports of heavy dependencies stay allowed.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import cycles, reachable

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "workbench"


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under workbench/ (packages by their __init__)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = module_files()


def _resolve(name: str) -> str | None:
    """The longest prefix of `name` that is a module of the package (None outside it)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The package modules an import statement executes (a name of a package resolves to the package
    unless it is a submodule)."""
    if isinstance(node, ast.Import):
        return {r for a in node.names if (r := _resolve(a.name))}
    base = node.module or ""
    if node.level:  # relative: from the module's package
        package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join(package + ([base] if base else []))
    if not base.startswith("workbench"):
        return set()
    out = set()
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.add(sub if sub in MODULES else _resolve(base))
    return out - {None}


def import_graph() -> tuple[dict[str, set[str]], list[tuple[str, str, int]]]:
    """(module -> the package modules it imports at import time, [(module, target, line)] of the imports
    made inside functions)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    inner: list[tuple[str, str, int]] = []
    for module, path in MODULES.items():

        def walk(node: ast.AST, in_function: bool, module: str = module) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    continue
                deferred = in_function or isinstance(
                    child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
                )
                if isinstance(child, ast.Import | ast.ImportFrom):
                    for target in _targets(module, child) - {module}:
                        if deferred:
                            inner.append((module, target, child.lineno))
                        else:
                            graph[module].add(target)
                walk(child, deferred)

        walk(ast.parse(path.read_text(), str(path)), False)
    return graph, inner


def test_the_static_check_finds_a_circle_and_a_dodge():
    """The checker itself: a made-up graph with a circle is caught, one without is not."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    graph, _ = import_graph()
    assert "workbench.protocols" in graph["workbench.runner"]  # it does read the real imports


def test_no_import_circle_at_module_level():
    graph, _ = import_graph()
    assert cycles(graph) == [], "module-level import circles among workbench modules"


def test_no_import_inside_a_function_dodges_a_circle():
    """Counting the imports made inside functions too, there is still no circle: a lazy import is for a
    heavy dependency, never to break a loop between workbench modules."""
    graph, inner = import_graph()
    dodges = sorted({(m, t, line) for m, t, line in inner if m in reachable(graph, t)})
    assert dodges == [], (
        "imports inside functions that would close a circle at module level (move the shared names "
        f"down, e.g. to workbench/protocols.py): {dodges}"
    )
    for module, target, _ in inner:
        graph[module].add(target)
    assert cycles(graph) == [], "circles through imports made inside functions"


def test_the_interfaces_sit_below_the_runner_and_the_sources():
    graph, _ = import_graph()
    below = reachable(graph, "workbench.protocols")
    assert below <= {"workbench", "workbench.records", "workbench.spatial"}, below
    for user in ("workbench.runner", "workbench.sources"):
        assert "workbench.protocols" in graph[user]
    assert "workbench.sources" not in reachable(graph, "workbench.runner")


def test_the_library_knows_nothing_of_the_app_or_gradio():
    """workbench/ is the library under the app: no module of it imports the app layer (panels, app) or
    Gradio, at module level or inside a function."""
    app_layer = ("panels", "app", "gradio", "gradio_client", "gradio_rerun")
    found = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            found += [(module, n, node.lineno) for n in names if n.split(".")[0] in app_layer]
    assert found == [], f"library modules importing the app layer or Gradio: {found}"
    assert not (PACKAGE / "appcore").exists(), "the app's state lives in panels/state/, not in workbench/"


def _import_alone(module: str) -> tuple[str, int, str]:
    proc = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
    )
    return module, proc.returncode, proc.stderr[-2000:]


@pytest.mark.slow
def test_every_module_imports_in_a_fresh_interpreter():
    """One new interpreter per module (two at a time): none needs another module imported first."""
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(_import_alone, sorted(MODULES)))
    failed = {m: err for m, rc, err in results if rc != 0}
    assert not failed, "\n\n".join(f"import {m} failed:\n{err}" for m, err in failed.items())
