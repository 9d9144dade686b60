"""The notebook catalogue, presets and the papermill runner behind ``instab``.

Each notebook is ``notebooks/<id>.py`` (a jupytext pair) with a card
``notebooks/<id>.yaml`` (title, figure, presets, claims; read by :mod:`instab_lib.book.cards`).
:func:`execute` runs a notebook with papermill into ``_build/executed/<label>/<id>.ipynb``
and skips the run when a content hash of the notebook, its card, its parameters and the
code of the library and the experiments
(:func:`instab_lib.experiments.fingerprint.library_fingerprint`) is unchanged; it writes
the page's stamp (:mod:`instab_lib.book.provenance`) last, with the SHA-256 digest of the
executed notebook and of its numbers. An entry that cannot be read (a file missing,
truncated, emptied or garbled) is treated as missing: one warning line naming the file, and
the notebook is executed again (:mod:`instab_lib.experiments.cache_files`). A damage notice
raised inside the kernel (the run cache) is printed by the runner, not left on the page.
:func:`verify` checks the card's
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
from ..experiments.cache_files import (CACHE_LOG_ENV, Damaged, atomic_write_bytes, check_digest, file_digest,
                                       read_json, warn_damaged)
from . import claims as claims_mod
from .cards import (NotebookError, check_constraints, check_parameters, declared_parameters, load_card,
                    notebook_ids, notebooks_dir, read_notebook)
from . import provenance
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
    environment (torch version, CPU kernel capability, seed offset, default initialisation)."""
    from ..experiments import fingerprint

    d = notebooks_dir()
    h = hashlib.sha256()
    h.update((d / f"{notebook_id}.py").read_bytes())
    h.update(provenance.card_bytes(notebook_id))
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
    if not force and _current(nb_path, numbers_path, stamp_path, key):
        return RunRecord(notebook_id, label, nb_path, numbers_path, True, 0.0)
    nb_path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (stamp_path, numbers_path):  # the stamp first: it vouches for the others
        stale.unlink(missing_ok=True)
    start = time.perf_counter()
    status, error = "ok", None
    filters = ",".join([*KERNEL_WARNING_FILTERS, *filter(None, [os.environ.get("PYTHONWARNINGS")])])
    cache_log = nb_path.with_name(f".{notebook_id}.cache-damage.log")
    cache_log.unlink(missing_ok=True)
    with _environ(**{claims_mod.NUMBERS_ENV: str(numbers_path), "INSTAB_QUIET": "1", "INSTAB_ROOT": str(repo_root()),
                     "PYTHONWARNINGS": filters, CACHE_LOG_ENV: str(cache_log)}):
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
    _report_kernel_cache_damage(notebook_id, cache_log)
    numbers = claims_mod.load_numbers(numbers_path) if numbers_path.exists() else {}
    stamp = make_stamp(notebook_id, key=key, status=status, error=error, preset=preset, label=label,
                       params=params, seconds=seconds, data_source=recorded_data_source(numbers),
                       recorded_seeds=recorded_seeds(numbers))
    if nb_path.exists():
        add_provenance_cell(nb_path, stamp)
    stamp["files"] = {role: file_digest(f) for role, f in (("notebook", nb_path), ("numbers", numbers_path))
                      if f.exists()}
    blob = json.dumps(stamp, indent=1, default=str).encode()
    atomic_write_bytes(stamp_path, lambda f: f.write(blob))  # written last: the entry is complete
    if error:
        raise NotebookError(f"{notebook_id}: {error} (executed notebook: {nb_path})")
    if not numbers_path.exists():
        raise NotebookError(f"{notebook_id}: ran but recorded no numbers (no Recorder.record call?)")
    return RunRecord(notebook_id, label, nb_path, numbers_path, False, seconds)


#: Environment variable: how many notebooks :func:`execute_many` runs at once (default :data:`DEFAULT_JOBS`).
JOBS_ENV = "INSTAB_JOBS"
#: Notebooks executed at once by default: one. Each one's runs already use every core (a process pool,
#: :func:`instab_lib.experiments.sweep.run_many`), so a second notebook mostly competes for them. Measured
#: on fresh-clone CI (2026-12-04): on the 2-core development machine the timeline of two at a time matched
#: one at a time until the last pages; on the CI machine the same code took 3,232 s against 3,076 s for the
#: commit before it, run one at a time with more runs to compute. ``--jobs``/``INSTAB_JOBS`` > 1 pays where
#: a machine has more cores than a page has runs.
DEFAULT_JOBS = 1


def parse_jobs(raw: str, where: str) -> int:
    """A number of notebooks executed at once from text: a positive integer, else a one-line
    :class:`NotebookError` naming ``where`` it came from."""
    try:
        jobs = int(raw)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise NotebookError(f"{where}={raw!r}: expected a positive integer (notebooks executed at once)")
    return jobs


def default_jobs() -> int:
    """:data:`JOBS_ENV` when set (:func:`parse_jobs`: anything but a positive integer is a one-line
    :class:`NotebookError`), else :data:`DEFAULT_JOBS` (at most the number of CPUs)."""
    raw = os.environ.get(JOBS_ENV)
    if raw is None or not raw.strip():
        return max(1, min(DEFAULT_JOBS, os.cpu_count() or 1))
    return parse_jobs(raw, JOBS_ENV)


def _last_seconds(notebook_id: str, label: str) -> float | None:
    """How long the last execution of ``notebook_id`` under ``label`` took (its stamp), or None."""
    try:
        return float(read_json(output_paths(notebook_id, label)[2])["seconds"])
    except (Damaged, KeyError, TypeError, ValueError, OSError):
        return None


def execute_many(notebook_ids_: Sequence[str], preset: str = "default", jobs: int | None = None,
                 progress: bool | None = None) -> dict[str, RunRecord]:
    """:func:`execute` every notebook of ``notebook_ids_``, up to ``jobs`` at a time (default
    :func:`default_jobs`), each in its own worker process (``execute`` hands the kernel its numbers
    file through the environment, which threads would share). Notebooks whose last execution is
    on record start longest first, the others after them in the given order, and a notebook starts
    beside another only when they read disjoint shared runs (:mod:`instab_lib.book.schedule`);
    what they compute is the same in any order (shared runs are computed once, under the run
    cache's entry locks, and with the same thread count whoever computes them). Every notebook is executed even after one
    fails; then the first failure, in the given order, is raised (:class:`NotebookError`). One
    line per notebook is printed as it finishes; ``progress`` (per-cell bars, as :func:`execute`)
    applies only when ``jobs`` is 1."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise NotebookError(f"jobs must be a positive integer, got {jobs}")
    ids = list(dict.fromkeys(notebook_ids_))
    params = {nid: resolve_parameters(nid, preset) for nid in ids}  # bad input: one line, before anything runs
    label = run_label(preset, None)
    known = {nid: _last_seconds(nid, label) for nid in ids}
    order = sorted((n for n in ids if known[n] is not None), key=lambda n: -known[n]) + \
        [n for n in ids if known[n] is None]
    records: dict[str, RunRecord] = {}
    errors: dict[str, str] = {}
    if jobs == 1 or len(order) <= 1:
        for nid in order:
            try:
                records[nid] = execute(nid, preset, progress=progress)
            except NotebookError as exc:
                errors[nid] = str(exc)
                print(f"{nid}: FAILED ({exc})", flush=True)
                continue
            _report(records[nid])
    else:
        from .schedule import next_notebook, shared_run_keys

        keys = {nid: shared_run_keys(nid, params[nid]) for nid in order}
        pending, running, done = list(order), {}, frozenset()
        with ProcessPoolExecutor(max_workers=min(jobs, len(order)), mp_context=mp.get_context("spawn")) as pool:
            while pending or running:
                while pending and len(running) < jobs:
                    nid = next_notebook(pending, list(running.values()), keys, done)
                    if nid is None:  # every notebook left reads runs a running one is computing
                        break
                    pending.remove(nid)
                    running[pool.submit(_execute_quietly, nid, preset)] = nid
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    nid = running.pop(fut)
                    done |= keys[nid]  # its shared runs are cached now (or failed: recomputing them helps no one)
                    try:
                        records[nid] = fut.result()
                    except NotebookError as exc:
                        errors[nid] = str(exc)
                        print(f"{nid}: FAILED ({exc})", flush=True)
                        continue
                    _report(records[nid])
    failed = [n for n in ids if n in errors]
    if failed:
        more = f" ({len(failed) - 1} more failed: {', '.join(failed[1:])})" if len(failed) > 1 else ""
        raise NotebookError(errors[failed[0]] + more)
    return {nid: records[nid] for nid in ids}


def _report(record: RunRecord) -> None:
    print(f"{record.notebook_id}: {'up to date' if record.skipped else f'executed in {record.seconds:.1f} s'}",
          flush=True)


def _execute_quietly(notebook_id: str, preset: str) -> RunRecord:
    """:func:`execute` without per-cell progress bars (a worker of :func:`execute_many`)."""
    return execute(notebook_id, preset, progress=False)


def _current(nb_path: Path, numbers_path: Path, stamp_path: Path, key: str) -> bool:
    """Whether the executed notebook on disk is the one ``key`` asks for, and readable. An entry
    that cannot be read (its stamp, or the notebook or numbers its stamp vouches for) is warned
    about in one line and counts as missing."""
    if not stamp_path.exists():
        return False
    try:
        stamp = read_json(stamp_path)
        if stamp.get("key") != key or stamp.get("status") != "ok":
            return False  # stale or failed: executed again anyway
        _check_outputs(nb_path, numbers_path, stamp.get("files"))
    except Damaged as damage:
        warn_damaged(damage, "executing the notebook again")
        return False
    return True


def _check_outputs(nb_path: Path, numbers_path: Path, digests: Any) -> None:
    """Raise :class:`Damaged` unless the executed notebook and its numbers are there with the
    digests the stamp recorded (a stamp written before digests were kept: both parse)."""
    if isinstance(digests, dict) and {"notebook", "numbers"} <= set(digests):
        check_digest(nb_path, digests["notebook"])
        check_digest(numbers_path, digests["numbers"])
        return
    if not isinstance(read_json(nb_path).get("cells"), list):
        raise Damaged(nb_path, "not a notebook (no cells)")
    _read_numbers(numbers_path)


def _read_numbers(path: Path) -> dict[str, Any]:
    """The numbers a run recorded; :class:`Damaged` when the file cannot be read."""
    return claims_mod.from_jsonable(read_json(path))


def _report_kernel_cache_damage(notebook_id: str, log: Path) -> None:
    """Print the damage notices the kernel wrote to ``log`` (:data:`CACHE_LOG_ENV`) on stderr,
    one line each, and remove the log."""
    if log.exists():
        for line in log.read_text(encoding="utf-8").splitlines():
            print(f"instab: warning: {notebook_id}: {line}", file=sys.stderr, flush=True)
        log.unlink()


def verify(notebook_ids_: Sequence[str] | None = None, label: str = "default") -> list[claims_mod.ClaimResult]:
    """Every claim of the given notebooks (default: all) checked on the numbers of run ``label``."""
    ids = list(notebook_ids_) if notebook_ids_ else notebook_ids()
    results: list[claims_mod.ClaimResult] = []
    for nid in ids:
        card = load_card(nid)
        _, numbers_path, _ = output_paths(nid, label)
        numbers = None
        if numbers_path.exists():
            try:
                numbers = _read_numbers(numbers_path)
            except Damaged as damage:  # checked as if the notebook had not run: every claim fails
                warn_damaged(damage, "its claims are checked as unexecuted")
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
