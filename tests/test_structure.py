"""The shape of the library: small modules, small functions, no import cycle.

Rules (checked on the source, by ``ast``, over every ``.py`` under ``instab_lib/``, recursively):

* a module has at most :data:`MAX_MODULE_LINES` lines;
* a function or method (nested ones included) spans at most :data:`MAX_FUNCTION_LINES` lines,
  from its ``def`` to its last line (decorators not counted, the docstring counted);
* the modules of ``instab_lib`` import one another without a cycle. The graph has an edge
  ``a → b`` for every ``import``/``from … import`` that runs when ``a`` is imported: statements at
  module level, also inside module-level ``if``/``try``/``with`` blocks, but not inside
  ``if TYPE_CHECKING:`` and not inside functions or classes' methods (a function-level import is
  deferred to the call; it is how a module reaches one that imports it). Relative imports are
  resolved; ``from p import x`` is an edge to ``p.x`` where ``p.x`` is a module, else to ``p``;
  importing ``p.q.m`` also runs the packages ``p`` and ``p.q`` (an edge to each), except the
  importer's own ancestors, which are already being imported (a package's ``__init__`` importing
  its submodules, and they their siblings, is the ordinary layout, not a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "instab_lib"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 100


def _modules() -> dict[str, Path]:
    """``dotted name -> path`` for every module of the package (packages by their ``__init__``)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run at import time (module level, outside ``if TYPE_CHECKING``)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(stmts: list[ast.stmt]) -> None:
        for s in stmts:
            if isinstance(s, (ast.Import, ast.ImportFrom)):
                found.append(s)
            elif isinstance(s, ast.If):
                test = ast.unparse(s.test)
                if test not in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                    visit(s.body)
                visit(s.orelse)
            elif isinstance(s, (ast.Try, ast.With)):
                visit(s.body)
                for h in getattr(s, "handlers", []):
                    visit(h.body)
                visit(getattr(s, "orelse", []))
                visit(getattr(s, "finalbody", []))

    visit(tree.body)
    return found


def _targets(name: str, stmt: ast.Import | ast.ImportFrom) -> set[str]:
    """The ``instab_lib`` modules that ``stmt`` in module ``name`` makes Python run."""
    is_pkg = MODULES[name].name == "__init__.py"
    if isinstance(stmt, ast.Import):
        bases = [a.name for a in stmt.names]
    else:
        if stmt.level:
            pkg = name.split(".") if is_pkg else name.split(".")[:-1]
            pkg = pkg[: len(pkg) - (stmt.level - 1)]
            base = ".".join(pkg + ([stmt.module] if stmt.module else []))
        else:
            base = stmt.module or ""
        bases = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in stmt.names]
    out = set()
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1 + is_pkg)}
    for b in bases:
        parts = b.split(".")
        for i in range(1, len(parts) + 1):  # the packages on the way run too
            mod = ".".join(parts[:i])
            if mod in MODULES and mod not in ancestors and mod != name:
                out.add(mod)
    return out


def import_graph() -> dict[str, set[str]]:
    return {name: set().union(*(_targets(name, s) for s in _runtime_imports(ast.parse(path.read_text()))))
            for name, path in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (as a path ``a → … → a``), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(u: str) -> list[str] | None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if v not in state and (c := dfs(v)):
                return c
        stack.pop()
        state[u] = 2
        return None

    for u in sorted(graph):
        if u not in state and (c := dfs(u)):
            return c
    return None


def test_modules_are_at_most_600_lines() -> None:
    long = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()}
    assert {n: k for n, k in long.items() if k > MAX_MODULE_LINES} == {}


def test_functions_are_at_most_100_lines() -> None:
    long = {}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{name}.{node.name} (line {node.lineno})"] = n
    assert long == {}


def test_no_import_cycle() -> None:
    graph = import_graph()
    assert graph["instab_lib.slices"] >= {"instab_lib.curvature", "instab_lib.curvature.operators"}
    assert "instab_lib.curvature" not in graph["instab_lib.curvature.krylov"]  # own package: not an edge
    cycle = _cycle(graph)
    assert cycle is None, " → ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


@pytest.mark.parametrize("source, expected", [
    ("import torch\nfrom . import curvature\n", {"instab_lib.curvature"}),
    ("from .curvature.operators import LinearOperator\n", {"instab_lib.curvature", "instab_lib.curvature.operators"}),
    ("def f():\n    from . import landscape\n", set()),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import landscape\n", set()),
    ("try:\n    from . import stats\nexcept ImportError:\n    pass\n", {"instab_lib.stats"}),
])
def test_runtime_imports_of_a_module(source: str, expected: set[str]) -> None:
    tree = ast.parse(source)
    assert set().union(*(_targets("instab_lib.preconditioned", s) for s in _runtime_imports(tree))) == expected
