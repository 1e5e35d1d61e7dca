"""The layout is code: no module-level import cycle in ``kiln/``, and the floors' contract holds.

The import-linter contract in ``pyproject.toml`` (run by ``scripts/test.sh`` as ``lint-imports``)
checks that imports point down the floors; it sees imports inside functions too. This test adds
what it cannot say: among the imports executed when a module is imported (its top level and class
bodies, not function bodies), there is no cycle, counting that importing ``a.b.c`` first runs the
``__init__`` of ``a`` and ``a.b`` (except the importer's own packages, already being initialised).
"""
from __future__ import annotations

import ast
import pathlib

import kiln

ROOT = pathlib.Path(kiln.__file__).parent


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _import_time_nodes(tree: ast.AST):
    """Statements run at import: the module's top level and class bodies, never function bodies."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)  # imports for annotations only never run
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def module_graph() -> dict:
    """``{module: set of kiln modules whose import it triggers at import time}``."""
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        package = name if is_pkg else name.rpartition(".")[0]
        deps = set()
        for node in _import_time_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    up = package.split(".")
                    up = up[: len(up) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for t in targets:
                while t.startswith("kiln"):
                    # An importer's own ancestor packages are already being initialised.
                    if t in files and t != name and not name.startswith(t + "."):
                        deps.add(t)
                    t = t.rpartition(".")[0]
        graph[name] = deps
    return graph


def _cycles(graph: dict) -> list:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    group = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        group.append(w)
                        if w == v:
                            break
                    if len(group) > 1:
                        out.append(sorted(group))
    return out


def test_no_module_level_import_cycle():
    assert _cycles(module_graph()) == []


def test_the_checker_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_core_is_re_exports_only():
    # kiln/core holds the mx namespace: imports and names, no function or class of its own.
    for path in (ROOT / "core").rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            assert not isinstance(node, (ast.FunctionDef, ast.ClassDef)), f"{path.name}: {node.name}"
