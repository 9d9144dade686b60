"""What produced a number: fingerprints of the library code and the machine that ran it.

Two things decide whether a cached run or an executed notebook may be served again:

* **the code it executes** — :func:`code_fingerprint` hashes the *syntax tree* of the
  library modules involved (``ast.dump`` of each module with every docstring removed),
  so a change to comments, docstrings or line layout keeps the fingerprint while any
  change that can alter a number (a statement, a constant, an argument) changes it.
  :func:`run_fingerprint` covers the modules a training run imports (the closure of
  ``instab_lib.train`` over the package's own imports, found by reading the sources);
  :func:`library_fingerprint` covers every module (a notebook may use any of them);
* **the arithmetic it ran on** — :func:`numerics_environment`: the torch version, the CPU
  kernels torch dispatches to (``torch.backends.cpu.get_cpu_capability()``, which
  ``ATEN_CPU_CAPABILITY`` can lower) and the seed offset of :mod:`instab_lib.seeding`.

:func:`stamp_fields` is what every run and every executed page records: the above plus
the commit (and whether the tree was dirty), Python version, thread count and device.
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

__all__ = ["code_fingerprint", "run_fingerprint", "library_fingerprint", "import_closure",
           "numerics_environment", "git_state", "stamp_fields", "PRESENTATION_MODULES", "BOOK_MODULES"]

#: Modules that cannot change a computed number (progress bars); left out of run keys.
PRESENTATION_MODULES = frozenset({"progress"})
#: The book's machinery, which runs outside the notebooks' kernels (the CLI, the page
#: writers, the paper-scale archive, the browser check, the perturbation driver): left out of
#: the library fingerprint, so editing it re-executes no notebook and leaves no archive stale.
#: tests/test_provenance.py checks that no notebook imports one of them.
BOOK_MODULES = frozenset({"cli", "pages", "staging", "book", "archive", "browser", "perturb"})

# CPython 3.11's ast module is not safe to use from several threads at once (a Dask worker
# runs tasks in threads: "SystemError: AST constructor recursion depth mismatch").
_AST_LOCK = threading.Lock()


def _package_dir() -> Path:
    return Path(__file__).resolve().parent


def _module_files(name: str) -> list[Path]:
    """The source files of library module ``name``: ``instab_lib/<name>.py``, or every ``.py`` of the
    subpackage ``instab_lib/<name>/`` (e.g. ``curvature``), sorted."""
    f = _package_dir() / f"{name}.py"
    if f.is_file():
        return [f]
    d = _package_dir() / name
    if (d / "__init__.py").is_file():
        return sorted(d.rglob("*.py"))
    raise FileNotFoundError(f"no library module {name!r}")


def library_modules() -> list[str]:
    """Names of the library's modules (``instab_lib/<name>.py`` and subpackages ``instab_lib/<name>/``), sorted."""
    d = _package_dir()
    return sorted({p.stem for p in d.glob("*.py")} | {p.parent.name for p in d.glob("*/__init__.py")})


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
    """The library's modules that module ``name`` imports anywhere (also inside functions):
    ``from . import a, b``, ``from .a import x``, ``import instab_lib.a``; inside a subpackage,
    ``from .. import a`` and ``from ..a import x`` (its own ``from .x`` are internal)."""
    out: set[str] = set()
    known = tuple(library_modules())
    for p in _module_files(name):
        st = p.stat()
        depth = len(p.relative_to(_package_dir()).parts)  # 1: instab_lib/x.py, 2: instab_lib/pkg/x.py
        out |= _imports_cached(str(p), st.st_mtime_ns, st.st_size, known, depth)
    return out - {name}


@functools.lru_cache(maxsize=None)
def _imports_cached(path: str, mtime_ns: int, size: int, modules: tuple[str, ...], depth: int) -> frozenset[str]:
    with _AST_LOCK:
        tree = ast.parse(Path(path).read_text())
    known = set(modules)
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == depth and node.module is None:
                out.update(a.name for a in node.names if a.name in known)
            elif node.level == depth and node.module:
                out.add(node.module.split(".")[0])
            elif node.level == 0 and node.module and node.module.split(".")[0] == "instab_lib":
                parts = node.module.split(".")
                if len(parts) > 1:
                    out.add(parts[1])
                else:
                    out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "instab_lib" and len(parts) > 1:
                    out.add(parts[1])
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
    """Fingerprint of the code a training run executes: the import closure of ``train`` and
    ``sweep`` without :data:`PRESENTATION_MODULES`."""
    mods = [m for m in import_closure(["train", "sweep"]) if m not in PRESENTATION_MODULES]
    return code_fingerprint(mods)


def library_fingerprint() -> str:
    """Fingerprint of every module of the library that a notebook may execute (all but
    :data:`BOOK_MODULES`)."""
    return code_fingerprint(m for m in library_modules() if m not in BOOK_MODULES)


def cpu_capability() -> str:
    """The instruction set torch's CPU kernels use here (``DEFAULT``, ``AVX2``, ``AVX512``, …)."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - very old or exotic builds
        return "unknown"


def numerics_environment() -> dict[str, Any]:
    """What, besides code and configuration, can change a float: torch version, CPU kernel
    capability, the ``ATEN_CPU_CAPABILITY`` request, and the seed offset."""
    import torch

    from .seeding import seed_offset

    return {"torch": torch.__version__, "cpu_capability": cpu_capability(),
            "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY", ""), "seed_offset": seed_offset()}


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
