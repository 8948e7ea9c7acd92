"""No import cycles among the modules of pipelines/, counting imports inside functions too (they hide cycles
at import time but not at run time), and pipelines/ imports no web framework."""
from __future__ import annotations

import ast
from pathlib import Path

from pipelines.settings import REPO_ROOT

PKG = "pipelines"
WEB = ("fastapi", "starlette", "uvicorn", "app")


def modules() -> dict[str, Path]:
    out = {}
    for f in (REPO_ROOT / PKG).rglob("*.py"):
        parts = f.relative_to(REPO_ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imported_names(tree: ast.AST) -> list[str]:
    """Every absolute import in the module, at any depth; ``from a.b import c`` gives a.b and a.b.c."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return names


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    mods = modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    foreign: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        for name in imported_names(ast.parse(f.read_text(encoding="utf-8"))):
            top = name.split(".")[0]
            if top == PKG:
                target = resolve(name)
                if target and target != m:
                    graph[m].add(target)
            else:
                foreign[m].add(top)
    return graph, foreign


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_in_pipelines():
    graph, _ = import_graph()
    assert len(graph) > 30 and graph["pipelines.session"]  # the scan sees the package
    assert cycles(graph) == []


def test_the_scan_finds_a_cycle_hidden_in_a_function():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    tree = ast.parse("import os\ndef f():\n    from pipelines.session import CallState\n")
    assert "pipelines.session.CallState" in imported_names(tree)


def test_pipelines_imports_no_web_framework():
    _, foreign = import_graph()
    offenders = {m: sorted(set(names) & set(WEB)) for m, names in foreign.items() if set(names) & set(WEB)}
    assert offenders == {}
