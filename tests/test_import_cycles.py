"""No import cycles among the first-party modules (``app``, ``pipelines``, and ``training`` when present).

Every ``import`` statement counts, wherever it is: module level, inside a function (a deferred import
hides a cycle, it does not remove it), under ``if TYPE_CHECKING``.  Edges, read with ``ast``:

* ``import a.b.c`` → ``a.b.c``;
* ``from a.b import c`` → ``a.b`` (it runs and reads ``a.b``; so ``from pkg import sub`` inside ``pkg`` while
  ``pkg/__init__`` imports that module is a cycle, as ``app.store`` ↔ ``app.store.redis`` was), and also
  ``a.b.c`` when that is a module;
* the implicit import of parent packages (``import a.b.c`` runs ``a/__init__``) is not an edge;
* relative imports are resolved against the importing module's package.

Cycles are the strongly connected components of that graph.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "pipelines", "training")

def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}

    def resolve(name: str) -> str | None:
        """The longest first-party module that ``name`` names or lies in."""
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            cand = ".".join(parts[:i])
            if cand in mods:
                return cand
        return None

    for mod, path in mods.items():
        own_pkg = mod if _is_package(path) else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [t for a in node.names if (t := resolve(a.name))]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = own_pkg.split(".")
                    base_parts = base_parts[:len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                target = resolve(base)
                if target is None:
                    continue
                targets.append(target)  # ``from X import ...`` runs X and reads its namespace
                targets += [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
            graph[mod].update(t for t in targets if t != mod)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[frozenset[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = set()
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.add(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(frozenset(comp))
    return out


def _describe(comp: frozenset[str], graph: dict[str, set[str]]) -> str:
    return "; ".join(f"{m} → {', '.join(sorted(graph[m] & comp))}" for m in sorted(comp))


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_graph_sees_imports_inside_functions(graph):
    """The detector itself: a function-level import is an edge (cli.py defers its heavy stacks)."""
    assert "pipelines.analyze" in graph["app.cli"]
    assert "app.store.base" in graph["app.store.redis"] and "app.store.codec" in graph["app.store.redis"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]


def test_no_import_cycles_involving_app(graph):
    bad = [c for c in cycles(graph) if any(m == "app" or m.startswith("app.") for m in c)]
    assert not bad, "\n".join(_describe(c, graph) for c in bad)


def test_no_import_cycles_outside_app(graph):
    bad = [c for c in cycles(graph) if not any(m == "app" or m.startswith("app.") for m in c)]
    assert not bad, "\n".join(_describe(c, graph) for c in bad)


def _imports_of(graph: dict[str, set[str]], package: str) -> dict[str, set[str]]:
    return {m: deps for m, deps in graph.items() if m == package or m.startswith(package + ".")}


def test_pipelines_imports_no_web_framework_and_serving_no_training(graph):
    """pipelines/ is analysis only (no app/, FastAPI, Starlette, uvicorn); neither app/ nor pipelines/ imports
    training/ (the service is installed without it)."""
    web = ("fastapi", "starlette", "uvicorn", "app")
    for m, path in _modules().items():
        if not m.startswith("pipelines"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            bad = [n for n in names if n.split(".")[0] in web]
            assert not bad, f"{m} imports {bad}"
    for package in ("app", "pipelines"):
        for m, deps in _imports_of(graph, package).items():
            assert not [d for d in deps if d == "training" or d.startswith("training.")], f"{m} imports training"
