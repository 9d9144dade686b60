"""The notebook catalogue, presets and the papermill runner behind ``instab``.

Each notebook is ``notebooks/<id>.py`` (a jupytext pair) with a card
``notebooks/<id>.yaml`` (title, figure, presets, claims). :func:`execute` runs a
notebook with papermill into ``_build/executed/<label>/<id>.ipynb`` and skips the
run when a content hash of the notebook, its card, its parameters and the
library's source is unchanged. :func:`verify` checks the card's claims on the
numbers the run recorded. :func:`build_book` executes every notebook of the
table of contents and builds the HTML book with Jupyter Book 1.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import yaml

from . import claims as claims_mod
from . import repo_root

NOTEBOOK_ID = re.compile(r"^[a-z][a-z0-9_]*$")


class NotebookError(RuntimeError):
    """A user-facing failure with a one-line reason (unknown notebook, bad preset, failed cell)."""


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def build_dir() -> Path:
    return repo_root() / "_build"


def notebook_ids() -> list[str]:
    """Every notebook with both a ``.py`` source and a ``.yaml`` card, sorted."""
    d = notebooks_dir()
    return sorted(p.stem for p in d.glob("*.yaml") if (d / f"{p.stem}.py").exists())


def _check_id(notebook_id: str) -> None:
    known = notebook_ids()
    if notebook_id not in known:
        raise NotebookError(f"unknown notebook {notebook_id!r}; known: {', '.join(known)}")


def load_card(notebook_id: str) -> dict[str, Any]:
    """The notebook's card (``notebooks/<id>.yaml``) as a dict."""
    _check_id(notebook_id)
    card = yaml.safe_load((notebooks_dir() / f"{notebook_id}.yaml").read_text()) or {}
    card.setdefault("presets", {}).setdefault("default", {})
    card.setdefault("claims", [])
    return card


def read_notebook(notebook_id: str):
    """The notebook as an ``nbformat`` node, read from its percent-format source."""
    import jupytext

    _check_id(notebook_id)
    nb = jupytext.read(notebooks_dir() / f"{notebook_id}.py")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.setdefault("language_info", {"name": "python"})
    return nb


def declared_parameters(notebook_id: str) -> dict[str, Any]:
    """Names and default values of the cell tagged ``parameters`` (plain literal assignments)."""
    nb = read_notebook(notebook_id)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise NotebookError(f"{notebook_id}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    params: dict[str, Any] = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            params[node.targets[0].id] = ast.literal_eval(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            params[node.target.id] = ast.literal_eval(node.value)
        else:
            raise NotebookError(f"{notebook_id}: the parameters cell may only hold literal assignments")
    return params


def parse_value(text: str) -> Any:
    """A command-line parameter value, typed the way papermill's ``-p`` types it (YAML)."""
    return yaml.safe_load(text)


def resolve_parameters(
    notebook_id: str, preset: str = "default", overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Parameters for a run: the preset's values updated by ``overrides``, all of them declared."""
    card = load_card(notebook_id)
    presets = card["presets"]
    if preset not in presets:
        raise NotebookError(f"{notebook_id}: no preset {preset!r}; presets: {', '.join(presets)}")
    params = dict(presets[preset] or {})
    params.update(overrides or {})
    declared = declared_parameters(notebook_id)
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise NotebookError(
            f"{notebook_id}: parameter(s) {', '.join(unknown)} not declared; declared: {', '.join(declared)}"
        )
    return params


def library_hash() -> str:
    """sha256 over the library's source files (a change in ``instab_lib`` re-executes notebooks)."""
    h = hashlib.sha256()
    lib = repo_root() / "instab_lib"
    for path in sorted(lib.rglob("*.py")):  # subpackages too (instab_lib/curvature/)
        h.update(path.relative_to(lib).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def run_key(notebook_id: str, params: Mapping[str, Any]) -> str:
    """Content hash deciding whether an executed notebook is still current."""
    d = notebooks_dir()
    h = hashlib.sha256()
    h.update((d / f"{notebook_id}.py").read_bytes())
    h.update((d / f"{notebook_id}.yaml").read_bytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    h.update(library_hash().encode())
    return h.hexdigest()


def run_label(preset: str, overrides: Mapping[str, Any] | None) -> str:
    if not overrides:
        return preset
    digest = hashlib.sha256(json.dumps([preset, dict(overrides)], sort_keys=True, default=str).encode())
    return f"custom-{digest.hexdigest()[:8]}"


@dataclass(frozen=True)
class RunRecord:
    """Where an executed notebook and its numbers are, and whether it was rerun."""

    notebook_id: str
    label: str
    notebook_path: Path
    numbers_path: Path
    skipped: bool
    seconds: float


def output_paths(notebook_id: str, label: str = "default") -> tuple[Path, Path, Path]:
    out = build_dir() / "executed" / label
    return out / f"{notebook_id}.ipynb", out / f"{notebook_id}.numbers.json", out / f"{notebook_id}.stamp.json"


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _one_line(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None) or type(exc).__name__
    evalue = getattr(exc, "evalue", None) or str(exc)
    line = next((ln for ln in str(evalue).splitlines() if ln.strip()), "")
    return f"{ename}: {line}"


def execute(
    notebook_id: str,
    preset: str = "default",
    overrides: Mapping[str, Any] | None = None,
    force: bool = False,
    progress: bool | None = None,
    log_output: bool = False,
) -> RunRecord:
    """Execute a notebook with papermill, unless an identical run is already on disk.

    Raises :class:`NotebookError` with a one-line reason when the notebook is
    unknown, the preset or a parameter is not declared, or a cell fails.
    ``progress`` (a per-cell bar on stderr) defaults to whether stderr is a terminal.
    """
    import logging

    import papermill

    if progress is None:
        progress = sys.stderr.isatty()
    # papermill logs a warning for every parameters-cell comment it cannot parse; keep stderr for real errors
    logging.getLogger("papermill").setLevel(logging.INFO if log_output else logging.ERROR)
    # a kernel torn down after a failing cell can race zmq's socket close; tornado logs that
    # harmless race as an "uncaught exception" traceback, which would bury the one-line reason
    logging.getLogger("tornado").setLevel(logging.CRITICAL)

    params = resolve_parameters(notebook_id, preset, overrides)
    label = run_label(preset, overrides)
    nb_path, numbers_path, stamp_path = output_paths(notebook_id, label)
    key = run_key(notebook_id, params)
    if not force and stamp_path.exists() and nb_path.exists() and numbers_path.exists():
        stamp = json.loads(stamp_path.read_text())
        if stamp.get("key") == key and stamp.get("status") == "ok":
            return RunRecord(notebook_id, label, nb_path, numbers_path, True, 0.0)
    nb_path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (numbers_path, stamp_path):
        stale.unlink(missing_ok=True)
    start = time.perf_counter()
    status, error = "ok", None
    with _environ(**{claims_mod.NUMBERS_ENV: str(numbers_path), "INSTAB_QUIET": "1", "INSTAB_ROOT": str(repo_root())}):
        try:
            papermill.execute_notebook(
                read_notebook(notebook_id),
                str(nb_path),
                parameters=params,
                kernel_name="python3",
                language="python",
                cwd=str(notebooks_dir()),
                progress_bar=progress,
                log_output=log_output,
                # the kernel's own start-up warnings would otherwise land on the user's stderr
                extra_arguments=["--IPKernelApp.log_level=ERROR"],
            )
        except Exception as exc:  # noqa: BLE001 - turned into a one-line reason
            status, error = "failed", _one_line(exc)
    seconds = time.perf_counter() - start
    stamp = {"key": key, "status": status, "error": error, "preset": preset, "parameters": params,
             "seconds": round(seconds, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    stamp_path.write_text(json.dumps(stamp, indent=1, default=str))
    if error:
        raise NotebookError(f"{notebook_id}: {error} (executed notebook: {nb_path})")
    if not numbers_path.exists():
        raise NotebookError(f"{notebook_id}: ran but recorded no numbers (no Recorder.record call?)")
    return RunRecord(notebook_id, label, nb_path, numbers_path, False, seconds)


def verify(notebook_ids_: Sequence[str] | None = None, label: str = "default") -> list[claims_mod.ClaimResult]:
    """Every claim of the given notebooks (default: all) checked on the numbers of run ``label``."""
    ids = list(notebook_ids_) if notebook_ids_ else notebook_ids()
    results: list[claims_mod.ClaimResult] = []
    for nid in ids:
        card = load_card(nid)
        _, numbers_path, _ = output_paths(nid, label)
        numbers = claims_mod.load_numbers(numbers_path) if numbers_path.exists() else None
        if not card["claims"]:
            results.append(claims_mod.ClaimResult(nid, "-", "card declares no claim", None, False, "no claims"))
        results.extend(claims_mod.evaluate_claims(card["claims"], numbers, nid))
    return results


# --------------------------------------------------------------------------- book


def toc_path() -> Path:
    return repo_root() / "book" / "_toc.yml"


def toc_files() -> list[str]:
    """Every ``file:`` entry of the table of contents, in order (paths relative to ``book/``)."""
    toc = yaml.safe_load(toc_path().read_text())
    files: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    files.append(str(node[key]))
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return files


def toc_notebooks() -> list[str]:
    """Notebook ids that the table of contents includes (entries ``notebooks/<id>``)."""
    return [f.split("/", 1)[1] for f in toc_files() if f.startswith("notebooks/")]


def sync_pairs() -> None:
    """Write the paired ``.ipynb`` next to every ``.py`` (for Jupyter and plain papermill)."""
    import jupytext

    for nid in notebook_ids():
        jupytext.write(read_notebook(nid), notebooks_dir() / f"{nid}.ipynb")


MATHJAX_VERSION = "3.2.2"


def mathjax_tarball() -> Path:
    """Where the set-up script keeps the npm tarball of MathJax (``npm pack mathjax@3.2.2``)."""
    return Path(os.environ.get("INSTAB_MATHJAX", repo_root() / ".venv" / "share" / f"mathjax-{MATHJAX_VERSION}.tgz"))


def stage_mathjax() -> bool:
    """Extract MathJax 3 (one script and its fonts) into ``book/_mathjax/mathjax/es5``.

    The book copies that folder to ``_build/html/mathjax`` (``html_extra_path``) and loads it
    through ``mathjax_path``, so math renders without internet. Returns False when the
    tarball is missing (the set-up script downloads it from the npm registry).
    """
    import tarfile

    target = repo_root() / "book" / "_mathjax" / "mathjax"
    if (target / "es5" / "tex-mml-chtml.js").exists():
        return True
    tarball = mathjax_tarball()
    if not tarball.exists():
        return False
    wanted = ("package/es5/tex-mml-chtml.js", "package/es5/output/chtml/fonts/woff-v2/")
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith(wanted):
                dest = target / member.name.removeprefix("package/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src:  # type: ignore[union-attr]
                    dest.write_bytes(src.read())
    return True


def write_claims_page(results: Sequence[claims_mod.ClaimResult]) -> Path:
    """Write ``book/generated/claims.md``: every claim with the value this build measured."""
    page = repo_root() / "book" / "generated" / "claims.md"
    page.parent.mkdir(parents=True, exist_ok=True)
    n_pass = sum(r.passed for r in results)
    lines = [
        "# Claims checked by this build",
        "",
        f"This page is written by the build from the numbers the notebooks recorded: {n_pass} of {len(results)} "
        "claims pass. The same table is printed by `instab verify`, and CI fails when a claim fails. Each claim's "
        "expressions are in the notebook's card, `notebooks/<id>.yaml`.",
        "",
        "| notebook | claim | statement | measured | result |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        measured = (r.error or r.value_str()).replace("|", "\\|")
        result = "pass" if r.passed else "**FAIL**"
        lines.append(f"| {{doc}}`{r.notebook} <../notebooks/{r.notebook}>` | `{r.claim_id}` | "
                     f"{r.text.replace('|', '∣')} | {measured} | {result} |")
    page.write_text("\n".join(lines) + "\n")
    return page


def build_book(progress: bool | None = None, strict: bool = True) -> Path:
    """Execute every notebook in the table of contents (default preset) and build ``_build/html``.

    ``strict`` makes Sphinx warnings fail the build (``-W --keep-going``).
    """
    root = repo_root()
    staged = root / "book" / "notebooks"
    staged.mkdir(parents=True, exist_ok=True)
    wanted = set(toc_notebooks())
    for old in staged.glob("*.ipynb"):
        if old.stem not in wanted:
            old.unlink()
    for nid in toc_notebooks():
        record = execute(nid, progress=progress)
        print(f"{nid}: {'up to date' if record.skipped else f'executed in {record.seconds:.1f} s'}", flush=True)
        shutil.copy2(record.notebook_path, staged / f"{nid}.ipynb")
    write_claims_page(verify(toc_notebooks()))
    if not stage_mathjax():
        raise NotebookError(f"MathJax not found at {mathjax_tarball()}: run `make setup` (it runs "
                            f"`npm pack mathjax@{MATHJAX_VERSION}`) so math renders offline")
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(root / "book"), "--config", str(root / "_config.yml"),
           "--toc", str(toc_path()), "--path-output", str(root)]
    if strict:
        cmd += ["-W", "--keep-going"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    log = build_dir() / "book-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stdout + "\n" + proc.stderr)
    if proc.returncode != 0:
        warnings = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "WARNING" in ln or "ERROR" in ln]
        detail = "\n".join(warnings[:20]) or proc.stderr[-2000:]
        raise NotebookError(f"jupyter-book build failed (log: {log}):\n{detail}")
    return build_dir() / "html"
