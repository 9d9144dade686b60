"""Build the HTML book: stage the executed notebooks as pages, write the generated pages, run
Jupyter Book 1 with warnings as errors.

:func:`build` executes every notebook of the table of contents at its defaults (skipping
those that are up to date), stages each one through :func:`instab_lib.book.staging.stage_notebook`
(verdict under the title, set-up cells hidden, the paper's scale, the provenance box), writes
the claims, robustness and paper-scale pages and the intro's summary table
(:mod:`instab_lib.book.pages`), stages MathJax for offline math, and runs ``jupyter-book build``.
``execute=False`` (``instab book --no-execute``) builds from what ``_build/executed/default``
already holds, for working on the pages without re-executing anything.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..experiments import repo_root
from . import archive, findings, pages, robustness, staging, summary
from . import claims as claims_mod
from . import notebooks as nbs
from .record import CI, PAPER, Column, Record, build_record

__all__ = ["build", "stage_pages", "run_jupyter_book", "stage_mathjax", "mathjax_tarball", "MATHJAX_VERSION",
           "write_generated", "files_dir", "build_columns"]

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


def stage_pages(execute: bool = True, progress: bool | None = None, label: str = "default",
                jobs: int | None = None) -> Path:
    """Execute (unless ``execute`` is False; ``jobs`` notebooks at a time, :func:`instab_lib.book.notebooks.execute_many`)
    and stage every notebook of the table of contents into ``book/notebooks/``, then write the
    generated pages. Returns ``book/``."""
    root = repo_root()
    staged = root / "book" / "notebooks"
    staged.mkdir(parents=True, exist_ok=True)
    wanted = nbs.toc_notebooks()
    for old in staged.glob("*.ipynb"):
        if old.stem not in wanted:
            old.unlink()
    shutil.rmtree(root / "book" / "generated" / "paper", ignore_errors=True)
    shutil.rmtree(root / "book" / "generated" / "cpu", ignore_errors=True)
    verdicts: dict[str, claims_mod.PageVerdict] = {}
    seconds: dict[str, float] = {}
    stamps: dict[str, dict[str, Any]] = {}
    results: list[claims_mod.ClaimResult] = []
    if execute:  # all of them first, several at a time (nbs.execute_many), then staged in the book's order
        nbs.execute_many(wanted, progress=progress, jobs=jobs)
    table = robustness.load()
    table_stale = robustness_stale(table) is not None
    for nid in wanted:
        nb_path, _, stamp_path = nbs.output_paths(nid, label)
        if not (nb_path.exists() and stamp_path.exists()):
            raise nbs.NotebookError(f"{nid}: no executed notebook at {nb_path}: run `instab book` (it executes "
                                    "what is missing) or `instab run` first")
        stamp = json.loads(stamp_path.read_text())
        stamps[nid] = stamp
        mine = nbs.verify([nid], label=label)
        verdicts[nid] = staging.stage_notebook(nid, nb_path, stamp, mine, staged / f"{nid}.ipynb",
                                               robustness.page_note(table, nid, mine, table_stale))
        seconds[nid] = float(stamp.get("seconds", 0.0))
        results += mine
    rows = archive.status()
    cards = {nid: nbs.load_card(nid) for nid in wanted}
    record = write_generated(results, rows, stamps, label)
    summary.write_summary(verdicts, record, rows, {n: str(c.get("title", n)) for n, c in cards.items()},
                          {n: str(c.get("figure", "")) for n, c in cards.items()}, seconds)
    return root / "book"


def robustness_stale(data: Mapping[str, Any] | None) -> str | None:
    """Why the perturbation table no longer describes the library's code, or None (also when there
    is no table)."""
    from ..experiments import fingerprint

    if not data or data.get("library_fingerprint") == fingerprint.library_fingerprint():
        return None
    return (f"made from commit {str(data.get('commit'))[:12]} on {data.get('processor', '?')} on "
            f"{data.get('created', '?')}; the library has changed since (fingerprint "
            f"{data.get('library_fingerprint')} then, {fingerprint.library_fingerprint()} now)")


def files_dir() -> Path:
    """``book/generated/files/``: what the book serves at its root (``claims.json``, ``claims.csv``,
    ``robustness.csv``; ``html_extra_path`` in ``_config.yml``)."""
    return repo_root() / "book" / "generated" / "files"


def _where(stamps: Sequence[Mapping[str, Any]]) -> tuple[str, str, str]:
    """Commit(s), processor(s) and CPU kernels of a set of stamps, joined where they differ."""
    def join(key: str, n: int = 0) -> str:
        vals = sorted({str(s.get(key) or "?")[: n or None] for s in stamps})
        return ", ".join(vals) if vals else "?"
    return join("commit", 12), join("processor"), join("cpu_capability")


def build_columns(stamps: Mapping[str, Mapping[str, Any]], paper_rows: Sequence[Mapping[str, Any]],
                  data: Mapping[str, Any] | None) -> list[Column]:
    """The book's columns: this build's run, the perturbation columns, the archived paper runs."""
    commit, proc, cap = _where(list(stamps.values()))
    cols = [Column(CI, "this build's run at CI scale (the numbers the pages show)", commit, proc, cap)]
    cols += robustness.columns(data)
    entries = [r["entry"].stamp for r in paper_rows if r["entry"] is not None]
    pc, pp, pcap = _where(entries)
    stale = sum(bool(r["stale"]) for r in paper_rows if r["entry"] is not None)
    cols.append(Column(PAPER, "the archived runs of the pages' paper presets (results/paper/)", pc, pp, pcap,
                       f"{len(entries)} page(s) archived, {stale} stale"))
    return cols


def write_generated(results: Sequence[claims_mod.ClaimResult], paper_rows: Sequence[Mapping[str, Any]],
                    stamps: Mapping[str, Mapping[str, Any]], label: str = "default") -> Record:
    """The pages and files read from the one record of every claim in every column: the claims page,
    the robustness page, the paper-scale page, the intro's bottom line and Findings box, and
    ``claims.json``, ``claims.csv``, ``robustness.csv``. Returns the record."""
    data = robustness.load()
    paper = [r for row in paper_rows if row["entry"] is not None for r in row["entry"].results()]
    record = build_record(results, paper, robustness.outcomes(data), build_columns(stamps, paper_rows, data))
    record.notes = {"verdicts": "paper and reading claims: reproduced / not reproduced / contradicted / not a test; "
                    "beyond and finding: holds / not shown / contradicted / not a test; identity and illustration: "
                    "pass / FAIL; precondition: met / not met (instab_lib.book.verdicts)",
                    "combined": "the same word in every column that has the claim, else 'mixed' (columns named)"}
    pages.write_claims_page(record)
    robustness.write_page(record, data, robustness_stale(data))
    pages.write_paper_page(paper_rows)
    _, lanczos_numbers, _ = nbs.output_paths(findings.FINDING_PAGE, label)
    numbers = claims_mod.load_numbers(lanczos_numbers) if lanczos_numbers.exists() else None
    summary.write_bottom_line(record, findings.lanczos_magnitudes(numbers))
    out = files_dir()
    record.write_json(out / pages.JSON_NAME)
    record.write_csv(out / pages.CSV_NAME)
    if data:
        (out / robustness.CSV_NAME).write_text(robustness.csv_text(data))
    return record


def run_jupyter_book(strict: bool = True) -> Path:
    """``jupyter-book build`` of the staged book into ``_build/html`` (``strict``: ``-W
    --keep-going``, every Sphinx warning fails). Raises with the warnings on failure."""
    root = repo_root()
    if not stage_mathjax():
        raise nbs.NotebookError(f"MathJax not found at {mathjax_tarball()}: run `make setup` (it runs "
                                f"`npm pack mathjax@{MATHJAX_VERSION}`) so math renders offline")
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(root / "book"), "--config",
           str(root / "_config.yml"), "--toc", str(nbs.toc_path()), "--path-output", str(root)]
    if strict:
        cmd += ["-W", "--keep-going"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    log = nbs.build_dir() / "book-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stdout + "\n" + proc.stderr)
    if proc.returncode != 0:
        warnings = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "WARNING" in ln or "ERROR" in ln]
        detail = "\n".join(warnings[:20]) or proc.stderr[-2000:]
        raise nbs.NotebookError(f"jupyter-book build failed (log: {log}):\n{detail}")
    return nbs.build_dir() / "html"


def build(progress: bool | None = None, strict: bool = True, execute: bool = True, jobs: int | None = None) -> Path:
    """Stage the pages (:func:`stage_pages`) and build ``_build/html`` (:func:`run_jupyter_book`)."""
    stage_pages(execute=execute, progress=progress, jobs=jobs)
    return run_jupyter_book(strict=strict)
