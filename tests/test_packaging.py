"""How the project installs.

* The library (``instab_lib`` without its ``experiments`` and ``book`` layers) declares, in
  ``[project].dependencies``, a range with a floor for every third-party package it imports, and
  nothing else: read from the sources, and checked by importing it in an interpreter that can see
  only those packages and what they require. A package it imports only inside a function, for one
  optional feature, may instead be in a library extra (a range too: ``plot``).
* The book's environment is pinned: the ``book`` and ``dev`` extras pin every direct dependency
  exactly (the library's own included, inside the library's ranges); ``scripts/setup.sh`` (what
  ``make book`` and ``make test`` run) installs ``.[book,dev]``, and ``environment.yml`` lists the
  same pins for conda.
* CI runs the README's test command.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from test_structure import MODULES, layer

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
LIBRARY = [Requirement(s) for s in PROJECT["dependencies"]]
EXTRAS = {name: [Requirement(s) for s in reqs] for name, reqs in PROJECT["optional-dependencies"].items()}
#: the extras that pin the book's environment (scripts/setup.sh installs exactly these)
PINNED_EXTRAS = ("book", "dev")
#: the library's own extras: ranges, for packages it imports only inside a function (one feature each)
LIBRARY_EXTRAS = {name: reqs for name, reqs in EXTRAS.items() if name not in PINNED_EXTRAS}
#: Dependencies declared before the library's first import of them, with the reason (empty now that
#: the Monitor imports pandas and matplotlib). Once a library module imports one, the test below asks
#: for its entry to go.
DECLARED_AHEAD: dict[str, str] = {}


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _distributions_of_modules() -> dict[str, set[str]]:
    """Top-level import name -> the installed distributions that provide it."""
    return {mod: {canonical(d) for d in dists} for mod, dists in md.packages_distributions().items()}


def third_party_imports(source: str) -> dict[str, bool]:
    """Top-level names of the packages a module imports that are neither the standard library,
    ``instab_lib`` nor relative, wherever the import stands (not under ``if TYPE_CHECKING:``), each
    with whether it is *deferred*: imported only inside functions, so importing the module does not
    need it."""
    deferred_of: dict[str, bool] = {}

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for child in node.orelse:
                visit(child, in_function)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [] if node.level else [node.module or ""])
            for n in names:
                top = n.split(".")[0]
                if top and top not in sys.stdlib_module_names and top != "instab_lib":
                    deferred_of[top] = deferred_of.get(top, True) and in_function
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(source), False)
    return deferred_of


def library_imports() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """``(eager, deferred)``: distribution -> the library modules importing it, at import time
    (anywhere outside a function) or only inside functions. An import nothing installed provides
    keeps its own name."""
    provides = _distributions_of_modules()
    eager: dict[str, set[str]] = {}
    deferred: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        if layer(name) != "library":
            continue
        for top, late in third_party_imports(path.read_text()).items():
            for dist in provides.get(top, {canonical(top)}):
                (deferred if late else eager).setdefault(dist, set()).add(name)
    for dist in eager:
        deferred.pop(dist, None)
    return eager, deferred


def _pin(req: Requirement) -> str:
    specs = list(req.specifier)
    assert len(specs) == 1 and specs[0].operator == "==", f"{req}: the book's environment pins exactly (==)"
    return specs[0].version


# --------------------------------------------------------------------------- ranges and pins
def test_the_library_declares_ranges_with_a_floor_not_pins() -> None:
    for req in LIBRARY + [r for reqs in LIBRARY_EXTRAS.values() for r in reqs]:
        ops = sorted(s.operator for s in req.specifier)
        assert ops == [">="], f"{req}: the library declares a floor (>=), no pin and no cap"
        assert not req.extras and req.marker is None, f"{req}: plain requirements only"
    assert PROJECT["requires-python"] == ">=3.10"  # torch >= 2.13 needs 3.10; the code itself runs on 3.9


def test_the_book_and_dev_extras_pin_every_package_and_the_library_inside_its_ranges() -> None:
    assert set(PINNED_EXTRAS) <= set(EXTRAS)
    pins = {canonical(r.name): _pin(r) for extra in PINNED_EXTRAS for r in EXTRAS[extra]}
    for req in LIBRARY + [r for reqs in LIBRARY_EXTRAS.values() for r in reqs]:
        name = canonical(req.name)
        assert name in pins, f"the book's environment leaves {name} unpinned"
        assert req.specifier.contains(pins[name]), f"the book pins {name}=={pins[name]}, outside {req}"
    assert pins["torch"] == "2.14.1"  # the release on this machine's disk (shared/NOTES.md): never a CUDA download


def test_setup_installs_the_pinned_extras() -> None:
    """``make book`` and ``make test`` run scripts/setup.sh, which installs the library with the
    pinned extras (an editable install: the checkout is what runs)."""
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    installs = re.findall(r"pip install -q -e '([^']*)'", setup)
    assert installs == [f".[{','.join(PINNED_EXTRAS)}]"]
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^book:\n\tbash scripts/setup.sh\n", make, flags=re.M)
    assert re.search(r"^test:\n\tbash scripts/setup.sh --browser\n", make, flags=re.M)


def test_pyproject_and_environment_yml_list_the_same_pins() -> None:
    pip_side = {canonical(r.name): _pin(r) for extra in PINNED_EXTRAS for r in EXTRAS[extra]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert {canonical(Requirement(s).name): _pin(Requirement(s)) for s in conda_pip} == pip_side
    assert "python=3.11" in env["dependencies"] and "pip" in env["dependencies"]


# --------------------------------------------------------------------------- what the library imports
def test_the_import_reader_tells_deferred_imports() -> None:
    src = ("import os\nimport numpy as np\ntry:\n    import scipy\nexcept ImportError:\n    pass\n"
           "def f():\n    import matplotlib.pyplot as plt\n    import numpy\n    from . import x\n"
           "if TYPE_CHECKING:\n    import pandas\n")
    assert third_party_imports(src) == {"numpy": False, "scipy": False, "matplotlib": True}


def test_the_library_dependencies_cover_its_imports_and_nothing_of_the_books() -> None:
    eager, deferred = library_imports()
    core = {canonical(r.name) for r in LIBRARY}
    optional = {canonical(r.name) for reqs in LIBRARY_EXTRAS.values() for r in reqs}
    assert {"torch", "numpy"} <= set(eager)
    undeclared = {d: sorted(m) for d, m in eager.items() if d not in core}
    assert undeclared == {}, "imported when the library is imported: declare it in [project].dependencies"
    undeclared = {d: sorted(m) for d, m in deferred.items() if d not in core | optional}
    assert undeclared == {}, "imported inside a function: declare it in [project].dependencies or a library extra"
    imported = set(eager) | set(deferred)
    landed = sorted(set(DECLARED_AHEAD) & imported)
    assert not landed, f"{landed} imported by the library now: remove from DECLARED_AHEAD"
    # nothing else: no package of the experiments or the book (torchvision, jupyter-book, papermill, …)
    assert (core | optional) - imported == set(DECLARED_AHEAD)
    assert {canonical(r.name) for r in LIBRARY_EXTRAS.get("plot", [])} == {"matplotlib"}


def _allowed_modules() -> list[str]:
    """Top-level modules of the library's declared distributions and of everything they require
    (their own requirements' markers evaluated here; extras not taken)."""
    todo = [canonical(r.name) for r in LIBRARY]
    dists: set[str] = set()
    while todo:
        name = todo.pop()
        if name in dists:
            continue
        try:
            requires = md.distribution(name).requires or []
        except md.PackageNotFoundError:
            continue
        dists.add(name)
        for spec in requires:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonical(req.name))
    return sorted(m for m, ds in _distributions_of_modules().items() if ds & dists)


#: Run in a fresh interpreter that can import only the standard library, instab_lib and the
#: library's declared dependencies with what they require: a library-only environment.
_ONLY_DECLARED = """
import importlib.abc, json, sys
allowed = set(json.loads(sys.argv[1])) | {"instab_lib"}
class OnlyDeclared(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in allowed or top in sys.stdlib_module_names or top.startswith("_"):
            return None
        raise ModuleNotFoundError(f"No module named {name!r} (not a dependency of the library)", name=name)
sys.meta_path.insert(0, OnlyDeclared())
import torch
import instab_lib
for name in instab_lib.__all__:
    getattr(instab_lib, name)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
data = (torch.randn(8, 3), torch.randint(0, 2, (8,)))
op = instab_lib.HessianOperator(model, torch.nn.functional.cross_entropy, data)
top = instab_lib.lanczos(op, k=1)
op.to_scipy()  # the deferred scipy import
print(json.dumps({"lambda": float(top.eigenvalues[0]), "modules": sorted(sys.modules)}))
"""


def test_the_library_imports_and_runs_with_only_its_declared_dependencies() -> None:
    """``import instab_lib`` and every public name, a Lanczos run on a tiny Hessian and its SciPy
    view, where every package but the library's declared dependencies (and what they require) is
    hidden; nothing of the experiments or the book machinery is loaded."""
    allowed = _allowed_modules()
    for book_only in ("matplotlib", "torchvision", "yaml", "papermill", "jupyter_book", "IPython", "tqdm"):
        assert book_only not in allowed
    out = subprocess.run([sys.executable, "-c", _ONLY_DECLARED, json.dumps(allowed)], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["lambda"] > 0
    loaded = result["modules"]
    assert [m for m in loaded if m.startswith(("instab_lib.experiments", "instab_lib.book"))] == []
    assert {m.split(".")[0] for m in loaded} & {"matplotlib", "IPython", "jupyter_core", "yaml"} == set()


@pytest.mark.parametrize("hidden", ["scipy"])
def test_the_library_only_check_fails_when_a_dependency_is_hidden(hidden: str) -> None:
    """The check above can fail: hide one declared dependency and the library does not import."""
    allowed = [m for m in _allowed_modules() if m != hidden]
    out = subprocess.run([sys.executable, "-c", _ONLY_DECLARED, json.dumps(allowed)], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert out.returncode != 0 and f"No module named '{hidden}" in out.stderr


# --------------------------------------------------------------------------- the README's commands
def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(make \w+)$", quick, flags=re.M)
    assert commands == ["make book", "make test"]
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith(("#", "set ", "cd "))]
    assert ci == ["make test"]


def test_notebooks_are_paired_and_ipynb_not_committed() -> None:
    assert 'formats = "ipynb,py:percent"' in (ROOT / "notebooks" / "jupytext.toml").read_text()
    assert "notebooks/*.ipynb" in (ROOT / ".gitignore").read_text()


def test_pyproject_installs_every_package_and_the_cli() -> None:
    """Every folder of instab_lib with an ``__init__.py`` (the library, its layers, curvature) is installed,
    and the ``instab`` entry point names the book's CLI."""
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "instab_lib").rglob("__init__.py")}
    assert set(PYPROJECT["tool"]["setuptools"]["packages"]) == found
    assert PROJECT["scripts"]["instab"] == "instab_lib.book.cli:main"
