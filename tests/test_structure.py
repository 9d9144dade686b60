"""The shape of instab_lib: three layers imported one way, no import cycle, small modules and functions.

Rules (checked on the source, by ``ast``, over every ``.py`` under ``instab_lib/``, recursively):

* a module has at most :data:`MAX_MODULE_LINES` lines;
* a function or method (nested ones included) spans at most :data:`MAX_FUNCTION_LINES` lines,
  from its ``def`` to its last line (decorators not counted, the docstring counted);
* the import graph has an edge ``a → b`` for every ``import``/``from … import`` in ``a`` that
  makes Python run ``b``, **wherever it stands**: at module level, inside ``if``/``try``/``with``
  blocks and inside functions and methods (a deferred import still ties ``a`` to ``b``); only
  imports under ``if TYPE_CHECKING:`` do not count. Relative imports are resolved; ``from p
  import x`` is an edge to ``p.x`` where ``p.x`` is a module, else to ``p``; importing ``p.q.m``
  also runs the packages ``p`` and ``p.q`` (an edge to each), except the importer's own
  ancestors, which are already being imported;
* that graph has no cycle;
* it respects the layers (:func:`layer`): the library (``instab_lib`` and its modules other
  than the two layer packages) imports neither the experiments (``instab_lib.experiments``) nor
  the book machinery (``instab_lib.book``); the experiments do not import the book;
* the library imports no third-party package but torch, numpy, scipy and pandas, reads no
  environment variable, and ``import instab_lib`` followed by the public API loads nothing of
  the other two layers (checked in a fresh interpreter).

The checks themselves are shown to fail on planted examples (a cycle, a wrong-way import inside
a function, a forbidden package).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "instab_lib"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 100
#: layer -> the layers it may import (its own included)
ALLOWED = {"library": {"library"}, "experiments": {"library", "experiments"},
           "book": {"library", "experiments", "book"}}
#: third-party packages the library may import
LIBRARY_DEPENDENCIES = {"torch", "numpy", "scipy", "pandas"}
#: optional packages the library may import only inside a function (``Monitor.plot``'s matplotlib):
#: importing the library never needs them
LAZY_LIBRARY_DEPENDENCIES = {"matplotlib"}


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


def layer(name: str) -> str:
    """``"experiments"``, ``"book"`` or ``"library"`` for the dotted module ``name``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("experiments", "book") else "library"


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of a module, wherever it stands, except under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for s in node.orelse:
                visit(s)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _targets(name: str, stmt: ast.Import | ast.ImportFrom, modules: dict[str, Path] = MODULES) -> set[str]:
    """The ``instab_lib`` modules that ``stmt`` in module ``name`` makes Python run."""
    is_pkg = name in modules and modules[name].name == "__init__.py"
    if isinstance(stmt, ast.Import):
        bases = [a.name for a in stmt.names]
    else:
        if stmt.level:
            pkg = name.split(".") if is_pkg else name.split(".")[:-1]
            pkg = pkg[: len(pkg) - (stmt.level - 1)]
            base = ".".join(pkg + ([stmt.module] if stmt.module else []))
        else:
            base = stmt.module or ""
        bases = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in stmt.names]
    out = set()
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1 + is_pkg)}
    for b in bases:
        parts = b.split(".")
        for i in range(1, len(parts) + 1):  # the packages on the way run too
            mod = ".".join(parts[:i])
            if mod in modules and mod not in ancestors and mod != name:
                out.add(mod)
    return out


def _edges(name: str, source: str, modules: dict[str, Path] = MODULES) -> set[str]:
    return set().union(*(_targets(name, s, modules) for s in _imports(ast.parse(source))))


def import_graph() -> dict[str, set[str]]:
    return {name: _edges(name, path.read_text()) for name, path in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (as a path ``a → … → a``), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(u: str) -> list[str] | None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
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


def wrong_way(graph: dict[str, set[str]]) -> list[str]:
    """The edges ``a → b`` against the layering (``b``'s layer not allowed for ``a``'s), as text."""
    return sorted(f"{a} → {b}" for a, targets in graph.items() for b in targets
                  if layer(b) not in ALLOWED[layer(a)])


def foreign_packages(tree: ast.AST) -> set[str]:
    """Top-level packages a module imports that are neither the standard library, ``instab_lib``,
    relative, nor :data:`LIBRARY_DEPENDENCIES`."""
    out = set()
    for s in _imports(tree):
        names = [a.name for a in s.names] if isinstance(s, ast.Import) else ([] if s.level else [s.module or ""])
        for n in names:
            top = n.split(".")[0]
            if top not in sys.stdlib_module_names and top != "instab_lib" and top not in LIBRARY_DEPENDENCIES:
                out.add(top)
    return out


def environment_reads(tree: ast.AST) -> set[str]:
    """What in a module reads the environment: ``os.environ``/``environ``, ``getenv``, or a string
    naming one of the book's variables (``"INSTAB_…"``)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
            out.add(node.attr)
        elif isinstance(node, ast.Name) and node.id in ("environ", "getenv"):
            out.add(node.id)
        elif isinstance(node, ast.alias) and node.name in ("environ", "getenv"):
            out.add(node.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("INSTAB_"):
            out.add("INSTAB_")
    return out


# --------------------------------------------------------------------------- size
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


# --------------------------------------------------------------------------- cycles
def test_no_import_cycle_counting_imports_inside_functions() -> None:
    graph = import_graph()
    # edges the finder must see: module level, a package on the way, a function-level import
    assert graph["instab_lib.experiments.landscape"] >= {"instab_lib.curvature", "instab_lib.curvature.operators",
                                                          "instab_lib.experiments.loop"}
    assert "instab_lib.curvature" not in graph["instab_lib.curvature.krylov"]  # own package: not an edge
    cycle = _cycle(graph)
    assert cycle is None, " → ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    # the cycle the move broke: loop.init_run reached back to train inside a function
    planted = dict(import_graph())
    planted["instab_lib.experiments.loop"] = planted["instab_lib.experiments.loop"] | _edges(
        "instab_lib.experiments.loop", "def init_run():\n    from .train import final_parameters\n")
    assert _cycle(planted) is not None


@pytest.mark.parametrize("source, expected", [
    ("import torch\nfrom .. import curvature\n", {"instab_lib.curvature"}),
    ("from ..curvature.operators import LinearOperator\n", {"instab_lib.curvature", "instab_lib.curvature.operators"}),
    ("def f():\n    from . import landscape\n", {"instab_lib.experiments.landscape"}),
    ("class A:\n    def m(self):\n        from .. import rotation\n", {"instab_lib.rotation"}),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import landscape\n", set()),
    ("try:\n    from . import stats\nexcept ImportError:\n    pass\n", {"instab_lib.experiments.stats"}),
    ("from ..book import claims\n", {"instab_lib.book", "instab_lib.book.claims"}),
    ("from . import repo_root\n", set()),  # the importer's own package is already running
])
def test_imports_of_a_module(source: str, expected: set[str]) -> None:
    assert _edges("instab_lib.experiments.hooks", source) == expected


# --------------------------------------------------------------------------- layers
def test_every_module_has_its_layer() -> None:
    layers = {n: layer(n) for n in MODULES}
    assert layers["instab_lib"] == layers["instab_lib.curvature.krylov"] == layers["instab_lib.optim"] == "library"
    assert layers["instab_lib.experiments"] == layers["instab_lib.experiments.train"] == "experiments"
    assert layers["instab_lib.book"] == layers["instab_lib.book.claims"] == "book"


def test_imports_follow_the_layers_counting_imports_inside_functions() -> None:
    assert wrong_way(import_graph()) == []


@pytest.mark.parametrize("name, source", [
    ("instab_lib.rotation", "def f():\n    from .experiments import train\n"),         # library → experiments
    ("instab_lib.curvature.results", "from ..experiments.seeding import shifted\n"),  # library → experiments
    ("instab_lib.optim", "import instab_lib.book.claims\n"),                          # library → book
    ("instab_lib.experiments.stats", "def f():\n    from ..book import claims\n"),     # experiments → book
])
def test_the_layering_check_fails_on_a_wrong_way_import(name: str, source: str) -> None:
    graph = dict(import_graph())
    graph[name] = graph[name] | _edges(name, source)
    assert wrong_way(graph), f"{name}: {source!r} was not caught"


def test_the_library_imports_only_its_dependencies_and_reads_no_environment() -> None:
    library = {n: p for n, p in MODULES.items() if layer(n) == "library"}
    assert {"instab_lib.curvature.hessian", "instab_lib.rotation", "instab_lib.preconditioned"} <= set(library)
    foreign = {n: foreign_packages(ast.parse(p.read_text())) - LAZY_LIBRARY_DEPENDENCIES for n, p in library.items()}
    assert {n: f for n, f in foreign.items() if f} == {}
    eager = {n: f for n, p in library.items()
             if (f := foreign_packages(ast.Module(body=[s for s in ast.parse(p.read_text()).body
                                                         if isinstance(s, (ast.Import, ast.ImportFrom))],
                                                   type_ignores=[])))}
    assert eager == {}  # the optional ones only inside functions
    reads = {n: r for n, p in library.items() if (r := environment_reads(ast.parse(p.read_text())))}
    assert reads == {}
    assert environment_reads(ast.parse("import os\nx = os.environ.get('INSTAB_SEED_OFFSET')\n")) == {"environ", "INSTAB_"}
    assert environment_reads(ast.parse("from os import getenv\n")) == {"getenv"}
    assert foreign_packages(ast.parse("import yaml\nimport numpy\nfrom os import path\nfrom . import x\n")) == {"yaml"}


def test_importing_the_library_loads_nothing_of_the_other_layers() -> None:
    """``import instab_lib; instab_lib.lanczos`` (and every public name) in a fresh interpreter."""
    code = ("import sys, json, instab_lib\n"
            "first = sorted(m for m in sys.modules if m.startswith('instab_lib'))\n"
            "instab_lib.lanczos\n"
            "for name in instab_lib.__all__:\n"
            "    getattr(instab_lib, name)\n"
            "print(json.dumps([first, sorted(m for m in sys.modules if m.startswith('instab_lib'))]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT.parent, timeout=300,
                         check=True)
    first, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert first == ["instab_lib"]  # importing the package itself imports nothing
    assert "instab_lib.curvature" in loaded and "instab_lib.optim" in loaded
    assert [m for m in loaded if layer(m) != "library"] == []
