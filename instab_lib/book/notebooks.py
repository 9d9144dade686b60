"""The notebook catalogue, presets and the papermill runner behind ``instab``.

Each notebook is ``notebooks/<id>.py`` (a jupytext pair) with a card
``notebooks/<id>.yaml`` (title, figure, presets, claims; read by :mod:`instab_lib.book.cards`).
:func:`execute` runs a notebook with papermill into ``_build/executed/<label>/<id>.ipynb``
and skips the run when a content hash of the notebook, its card, its parameters and the
code of the library and the experiments
(:func:`instab_lib.experiments.fingerprint.library_fingerprint`) is unchanged; it writes
the page's stamp (:mod:`instab_lib.book.provenance`). :func:`verify` checks the card's
claims on the numbers the run recorded. :mod:`instab_lib.book.build` builds the HTML book
from the executed notebooks.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import yaml

from ..experiments import repo_root
from . import claims as claims_mod
from .cards import (NotebookError, check_constraints, check_parameters, declared_parameters, load_card,
                    notebook_ids, notebooks_dir, read_notebook)
from .provenance import add_provenance_cell, make_stamp, recorded_data_source, recorded_seeds

NOTEBOOK_ID = re.compile(r"^[a-z][a-z0-9_]*$")


def build_dir() -> Path:
    return repo_root() / "_build"


def parse_value(text: str) -> Any:
    """A command-line parameter value, typed the way papermill's ``-p`` types it (YAML)."""
    return yaml.safe_load(text)


def resolve_parameters(
    notebook_id: str, preset: str = "default", overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Parameters for a run: the preset's values updated by ``overrides``, all of them declared
    and, together with the notebook's defaults, valid by the card's ``parameters:`` specs and
    ``constraints:`` (:mod:`instab_lib.book.cards`). Raises :class:`NotebookError` with a
    one-line reason before any kernel starts."""
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
    full = {**declared, **params}
    try:
        check_parameters(card.get("parameters") or {}, full, notebook_id)
        check_constraints(card.get("constraints") or [], full, notebook_id)
    except ValueError as exc:
        raise NotebookError(str(exc)) from None
    return params


def library_hash() -> str:
    """Fingerprint of the library's code (:func:`instab_lib.experiments.fingerprint.library_fingerprint`:
    docstring- and comment-free syntax trees of every module)."""
    from ..experiments import fingerprint

    return fingerprint.library_fingerprint()


def run_key(notebook_id: str, params: Mapping[str, Any]) -> str:
    """Content hash deciding whether an executed notebook is still current: the notebook's
    source and card, its parameters, the library's code fingerprint and the numerics
    environment (torch version, CPU kernel capability, seed offset)."""
    from ..experiments import fingerprint

    d = notebooks_dir()
    h = hashlib.sha256()
    h.update((d / f"{notebook_id}.py").read_bytes())
    h.update((d / f"{notebook_id}.yaml").read_bytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    h.update(library_hash().encode())
    env = fingerprint.numerics_environment()
    env.pop("aten_cpu_capability")
    h.update(json.dumps(env, sort_keys=True).encode())
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


#: Warnings filtered in the kernel (``PYTHONWARNINGS``): noise from the libraries we use that
#: no page can fix. Anything else a page warns about shows in its output, and the tests fail.
KERNEL_WARNING_FILTERS = (
    # torch 2.14.1, on the first torch.func.jvp call (shared/NOTES.md); pyproject filters it in pytest too
    "ignore:`torch.jit.script` is deprecated:FutureWarning",
)


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
    label: str | None = None,
) -> RunRecord:
    """Execute a notebook with papermill, unless an identical run is already on disk.

    Raises :class:`NotebookError` with a one-line reason when the notebook is
    unknown, the preset or a parameter is not declared, or a cell fails.
    ``progress`` (a per-cell bar on stderr) defaults to whether stderr is a terminal.
    ``label`` overrides the output folder's name (default: :func:`run_label`).
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
    label = label or run_label(preset, overrides)
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
    filters = ",".join([*KERNEL_WARNING_FILTERS, *filter(None, [os.environ.get("PYTHONWARNINGS")])])
    with _environ(**{claims_mod.NUMBERS_ENV: str(numbers_path), "INSTAB_QUIET": "1", "INSTAB_ROOT": str(repo_root()),
                     "PYTHONWARNINGS": filters}):
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
    numbers = claims_mod.load_numbers(numbers_path) if numbers_path.exists() else {}
    stamp = make_stamp(notebook_id, key=key, status=status, error=error, preset=preset, label=label,
                       params=params, seconds=seconds, data_source=recorded_data_source(numbers),
                       recorded_seeds=recorded_seeds(numbers))
    stamp_path.write_text(json.dumps(stamp, indent=1, default=str))
    if nb_path.exists():
        add_provenance_cell(nb_path, stamp)
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
