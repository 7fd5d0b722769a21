"""The layers run one way (issue 12): marketdata <- trading -> liveguard, the dashboard on top.

The contracts themselves are in pyproject.toml ([tool.importlinter]); this runs them, and checks
with the same import graph (grimp) what a contract cannot say: no cycle between the apps, no
cycle between the modules inside one app, and no module grown past the size we split at.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
# The apps are the layers. arbproject is configuration, not a layer: it wires every app (ASGI
# routing, the Celery app) and its environment helpers are read by them.
APPS = ("marketdata", "trading", "liveguard", "dashboard")
MAX_LINES = 600


def contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    """The apps' import graph, less the imports a contract ignores for now (pyproject.toml)."""
    graph = grimp.build_graph(*APPS, cache_dir=None)
    for contract in contracts():
        for ignored in contract.get("ignore_imports", []):
            importer, imported = (part.strip() for part in ignored.split("->"))
            if graph.direct_import_exists(importer=importer, imported=imported):
                graph.remove_import(importer=importer, imported=imported)
    return graph


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in edges[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache", "--no-logo", "--config", "pyproject.toml"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_import_cycle_between_the_apps(graph):
    edges = {app: {other for other in APPS if other != app
                   and graph.direct_import_exists(importer=app, imported=other, as_packages=True)} for app in APPS}
    assert cycles(edges) == []


@pytest.mark.parametrize("app", APPS)
def test_no_import_cycle_inside_an_app(graph, app):
    modules = graph.find_descendants(app) | {app}
    edges = {module: graph.find_modules_directly_imported_by(module) & modules for module in modules}
    assert cycles(edges) == []


def first_party_modules() -> list[Path]:
    """Our Python files, tests and migrations aside (nothing under a dot folder or node_modules)."""
    tops = [top for top in ROOT.iterdir() if top.is_dir() and not top.name.startswith(".")
            and top.name not in {"tests", "node_modules"}]
    files = [*ROOT.glob("*.py"), *(path for top in tops for path in top.rglob("*.py"))]
    return [path for path in files if "migrations" not in path.relative_to(ROOT).parts]


def test_no_module_is_longer_than_we_split_at():
    too_long = {}
    for path in first_party_modules():
        name = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            too_long[name] = lines
    assert too_long == {}
