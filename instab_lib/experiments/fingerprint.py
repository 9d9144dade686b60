"""What produced a number: fingerprints of the code, the arithmetic and the machine that ran it.

Two things decide whether a cached run or an executed notebook may be served again:

* **the code it executes** — :func:`code_fingerprint` hashes the *syntax tree* of the
  modules involved (``ast.dump`` of each module with every docstring removed), so a change
  to comments, docstrings or line layout keeps the fingerprint while any change that can
  alter a number (a statement, a constant, an argument) changes it. Modules are named
  relative to ``instab_lib``: ``rotation``, ``curvature`` (a subpackage is one unit),
  ``experiments.train``, ``book.claims`` (the modules of the two layer packages,
  :data:`LAYERS`, are units of their own). :func:`run_fingerprint` covers the modules a
  training run imports (the closure of ``experiments.train`` and ``experiments.sweep`` over
  the package's own imports, found by reading the sources); :func:`library_fingerprint`
  covers the library and the experiments layer, every module a notebook's computation may
  execute, and not the book machinery (``instab_lib.book``: editing it re-executes nothing);
* **the arithmetic it ran on** — :func:`numerics_environment`: the torch version, the CPU
  kernels torch dispatches to (``torch.backends.cpu.get_cpu_capability()``, which
  ``ATEN_CPU_CAPABILITY`` can lower), the seed offset of
  :mod:`instab_lib.experiments.seeding` and the fMNIST models' default initialisation
  (``$INSTAB_INIT``, :mod:`instab_lib.experiments.initialisation`).

:func:`stamp_fields` is what every run (its ``result.json``) and every executed page (its
stamp, :mod:`instab_lib.book.provenance`) records: the above plus the commit (and whether
the tree was dirty), Python version, thread count and device.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import platform
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterable

__all__ = ["code_fingerprint", "run_fingerprint", "library_fingerprint", "import_closure", "library_modules",
           "module_digest", "numerics_environment", "cpu_capability", "git_state", "stamp_fields",
           "PRESENTATION_MODULES", "LAYERS", "BOOK_LAYER", "in_book"]

#: Modules that cannot change a computed number (progress bars); left out of run keys.
PRESENTATION_MODULES = frozenset({"experiments.progress"})
#: The layer packages of ``instab_lib``: each of their modules is a unit of its own.
LAYERS = ("experiments", "book")
#: The book's machinery (runner, cards and claims, pages, archive, CLI, …): left out of the
#: library fingerprint, so editing it re-executes no notebook and leaves no archive stale.
BOOK_LAYER = "book"

# CPython 3.11's ast module is not safe to use from several threads at once (a Dask worker
# runs tasks in threads: "SystemError: AST constructor recursion depth mismatch").
_AST_LOCK = threading.Lock()


def _package_dir() -> Path:
    """The ``instab_lib`` folder."""
    return Path(__file__).resolve().parent.parent


def in_book(name: str) -> bool:
    """Whether module ``name`` (relative to ``instab_lib``) belongs to the book machinery."""
    return name.split(".")[0] == BOOK_LAYER


def _module_files(name: str) -> list[Path]:
    """The source files of module ``name``: ``instab_lib/<a>/<b>.py`` for ``a.b``; every ``.py``
    of a subpackage (e.g. ``curvature``); only ``__init__.py`` of a layer package, sorted."""
    base = _package_dir().joinpath(*name.split("."))
    if name in LAYERS:
        return [base / "__init__.py"]
    f = base.parent / f"{base.name}.py"
    if f.is_file():
        return [f]
    if (base / "__init__.py").is_file():
        return sorted(base.rglob("*.py"))
    raise FileNotFoundError(f"no library module {name!r}")


def library_modules() -> list[str]:
    """Every module name (see the module docstring): ``__init__``, the library's modules and
    subpackages, each layer package and each of its modules, sorted."""
    d = _package_dir()
    out: set[str] = set()
    for folder, prefix in [(d, "")] + [(d / layer, layer + ".") for layer in LAYERS]:
        out.update(prefix + p.stem for p in folder.glob("*.py") if not (prefix and p.stem == "__init__"))
        out.update(prefix + p.parent.name for p in folder.glob("*/__init__.py"))
    return sorted(out)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@functools.lru_cache(maxsize=None)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    source = Path(path).read_text()
    with _AST_LOCK:
        tree = _strip_docstrings(ast.parse(source))
        dump = ast.dump(tree, include_attributes=False)
    return hashlib.sha256(dump.encode()).hexdigest()


def module_digest(name: str) -> str:
    """SHA-256 of the docstring-free syntax trees of module ``name`` (all files of a subpackage)."""
    h = hashlib.sha256()
    for p in _module_files(name):
        st = p.stat()
        h.update(p.relative_to(_package_dir()).as_posix().encode())
        h.update(_file_digest(str(p), st.st_mtime_ns, st.st_size).encode())
    return h.hexdigest()


def _imports_of(name: str) -> set[str]:
    """The modules that module ``name`` imports anywhere (also inside functions), relative
    (``from . import a``, ``from ..a import x``) or absolute (``import instab_lib.a``), with
    the layer package of every layer module it reaches (its ``__init__`` runs first)."""
    out: set[str] = set()
    known = tuple(library_modules())
    for p in _module_files(name):
        st = p.stat()
        package = p.relative_to(_package_dir()).parts[:-1]  # e.g. ("experiments",), () for instab_lib/x.py
        out |= _imports_cached(str(p), st.st_mtime_ns, st.st_size, known, package)
    out |= {m.split(".")[0] for m in out | {name} if m.split(".")[0] in LAYERS}
    return out - {name}


def _unit(parts: list[str], known: set[str]) -> str | None:
    """The module (unit) holding the dotted name ``parts`` (relative to ``instab_lib``), if any."""
    if len(parts) > 1 and parts[0] in LAYERS and ".".join(parts[:2]) in known:
        return ".".join(parts[:2])
    return parts[0] if parts and parts[0] in known else None


@functools.lru_cache(maxsize=None)
def _imports_cached(path: str, mtime_ns: int, size: int, modules: tuple[str, ...],
                    package: tuple[str, ...]) -> frozenset[str]:
    with _AST_LOCK:
        tree = ast.parse(Path(path).read_text())
    known = set(modules)
    out: set[str | None] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 > len(package):
                    continue
                base = list(package[:len(package) - (node.level - 1)])
            elif (node.module or "").split(".")[0] == "instab_lib":
                base = []
            else:
                continue
            mod = (node.module or "").split(".")[1:] if not node.level else (node.module or "").split(".")
            target = base + [m for m in mod if m]
            for a in node.names:  # `from p import m` imports the module p.m where there is one, else p
                sub = _unit(target + [a.name], known)
                if sub is not None and sub.split(".") == target + [a.name]:
                    out.add(sub)
                elif target:
                    out.add(_unit(target, known))
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "instab_lib" and len(parts) > 1:
                    out.add(_unit(parts[1:], known))
    return frozenset(m for m in out if m in known)


def import_closure(roots: Iterable[str]) -> list[str]:
    """Every library module reachable from ``roots`` through the package's own imports, plus
    ``__init__`` (sorted)."""
    seen: set[str] = {"__init__"}
    todo = [r for r in roots]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(_imports_of(m) - seen)
    return sorted(seen)


def code_fingerprint(modules: Iterable[str]) -> str:
    """16 hex digits over the docstring-free syntax trees of ``modules`` (names in ``instab_lib``)."""
    h = hashlib.sha256()
    for m in sorted(set(modules)):
        h.update(m.encode())
        h.update(module_digest(m).encode())
    return h.hexdigest()[:16]


def run_fingerprint() -> str:
    """Fingerprint of the code a training run executes: the import closure of
    ``experiments.train`` and ``experiments.sweep`` without :data:`PRESENTATION_MODULES`."""
    mods = [m for m in import_closure(["experiments.train", "experiments.sweep"]) if m not in PRESENTATION_MODULES]
    return code_fingerprint(mods)


def library_fingerprint() -> str:
    """Fingerprint of every module of the library and the experiments layer, the code a
    notebook's computation may execute (not the book machinery, :func:`in_book`)."""
    return code_fingerprint(m for m in library_modules() if not in_book(m))


def cpu_capability() -> str:
    """The instruction set torch's CPU kernels use here (``DEFAULT``, ``AVX2``, ``AVX512``, …)."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - very old or exotic builds
        return "unknown"


def numerics_environment() -> dict[str, Any]:
    """What, besides code and configuration, can change a float: torch version, CPU kernel
    capability, the ``ATEN_CPU_CAPABILITY`` request, the seed offset and the fMNIST models'
    default initialisation (``$INSTAB_INIT``, :mod:`instab_lib.experiments.initialisation`)."""
    import torch

    from .initialisation import default_init
    from .seeding import seed_offset

    return {"torch": torch.__version__, "cpu_capability": cpu_capability(),
            "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY", ""), "seed_offset": seed_offset(),
            "init": default_init()}


def git_state(root: Path | None = None) -> dict[str, Any]:
    """``{"commit": <hash or None>, "dirty": bool or None}`` of the repository at ``root``; dirty
    means tracked files outside ``results/`` differ from the commit."""
    from . import repo_root

    root = root or repo_root()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        # results/ holds outputs (the paper-scale archive, the robustness table), not code:
        # writing an archive entry must not make the next run's tree "dirty"
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                 ":(exclude)results"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"commit": commit, "dirty": dirty}


def stamp_fields(device: str = "cpu") -> dict[str, Any]:
    """The provenance every stamp records: commit and dirty flag, library and run
    fingerprints, :func:`numerics_environment`, Python version, torch threads, device
    (with the GPU name where one is used), platform and processor."""
    import torch

    fields: dict[str, Any] = dict(git_state())
    fields.update({"library_fingerprint": library_fingerprint(), "run_fingerprint": run_fingerprint()})
    fields.update(numerics_environment())
    fields.update({"python": platform.python_version(), "threads": torch.get_num_threads(), "device": device,
                   "platform": platform.platform(), "machine": platform.machine(),
                   "processor": _processor_name()})
    if device.startswith("cuda") and torch.cuda.is_available():
        fields["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return fields


@functools.lru_cache(maxsize=1)
def _processor_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or sys.platform
