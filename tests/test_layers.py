"""The import graph of kit, counting imports inside functions (docs/architecture.md, "Data flows one way").

An AST walk over kit/: every ``import`` and ``from ... import`` wherever it sits. A
cycle is a group of modules that import each other, directly or around a loop. The
one allowed is the proxy's mode pair (``NetworkProxy(isolate=True)`` returns the child
process subclass built on the in-process class). ``from . import x`` is an edge to
``x``, not to the package that holds it; the package facade ``kit`` itself is not an
edge (modules read ``kit._version``, not the facade).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import kit

ROOT = Path(kit.__file__).parent
ALLOWED = [{"kit.proxy._api", "kit.proxy._isolated"}]


def module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            subs = {f"{base}.{a.name}" for a in node.names} & known
            found.update(subs if subs else {base})
    return {m for m in found if m in known and m not in (name, "kit")}


def cycles() -> list[set[str]]:
    names = module_names()
    graph = {n: imports(n, p, set(names)) for n, p in names.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(group)

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in graph:
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def test_no_import_cycle_but_the_proxy_mode_pair():
    assert [c for c in cycles() if c not in ALLOWED] == []


def test_the_walk_sees_imports_inside_functions():
    names = module_names()
    deps = imports("kit.experiment._worker", names["kit.experiment._worker"], set(names))
    assert "kit.experiment._pool" in deps  # imported inside run_chunk
