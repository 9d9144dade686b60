"""The notebook catalogue, presets and the papermill runner behind ``instab``.

Each notebook is ``notebooks/<id>.py`` (a jupytext pair) with a card
``notebooks/<id>.yaml`` (title, figure, presets, claims; read by :mod:`instab_lib.cards`). :func:`execute` runs a
notebook with papermill into ``_build/executed/<label>/<id>.ipynb`` and skips the
run when a content hash of the notebook, its card, its parameters and the
library's source is unchanged. :func:`verify` checks the card's claims on the
numbers the run recorded. :mod:`instab_lib.book` builds the HTML book from the
executed notebooks (that machinery is never imported by a kernel, see
:data:`instab_lib.provenance.BOOK_MODULES`).
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

from . import claims as claims_mod
from . import repo_root
from .cards import (NotebookError, check_constraints, check_parameters, declared_parameters, load_card,
                    notebook_ids, notebooks_dir, read_notebook)

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
    ``constraints:`` (:mod:`instab_lib.cards`). Raises :class:`NotebookError` with a
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
    """Fingerprint of the library's code (:func:`instab_lib.provenance.library_fingerprint`:
    docstring- and comment-free syntax trees of every module)."""
    from . import provenance

    return provenance.library_fingerprint()


def run_key(notebook_id: str, params: Mapping[str, Any]) -> str:
    """Content hash deciding whether an executed notebook is still current: the notebook's
    source and card, its parameters, the library's code fingerprint and the numerics
    environment (torch version, CPU kernel capability, seed offset)."""
    from . import provenance

    d = notebooks_dir()
    h = hashlib.sha256()
    h.update((d / f"{notebook_id}.py").read_bytes())
    h.update((d / f"{notebook_id}.yaml").read_bytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    h.update(library_hash().encode())
    env = provenance.numerics_environment()
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
                       params=params, seconds=seconds, data_source=recorded_data_source(numbers))
    stamp_path.write_text(json.dumps(stamp, indent=1, default=str))
    if nb_path.exists():
        add_provenance_cell(nb_path, stamp)
    if error:
        raise NotebookError(f"{notebook_id}: {error} (executed notebook: {nb_path})")
    if not numbers_path.exists():
        raise NotebookError(f"{notebook_id}: ran but recorded no numbers (no Recorder.record call?)")
    return RunRecord(notebook_id, label, nb_path, numbers_path, False, seconds)


#: A recorded number whose name is this, or ends in ``_`` + this, names the data copy a page
#: used (a string or a list of strings, e.g. ``rec.record("data_source", ds.source)``); the
#: provenance box and the stamp show it (CONTRIBUTING.md, "A notebook").
DATA_SOURCE_NUMBER = "data_source"


def recorded_data_source(numbers: Mapping[str, Any]) -> list[str]:
    """The data copies a run recorded (:data:`DATA_SOURCE_NUMBER`), in order, without repeats."""
    out: list[str] = []
    for name in sorted(numbers):
        if name == DATA_SOURCE_NUMBER or name.endswith("_" + DATA_SOURCE_NUMBER):
            value = numbers[name]
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, str) and v and v not in out:
                    out.append(v)
    return out


def source_digest(notebook_id: str) -> str:
    """16 hex digits over the notebook's source and card (what an archive entry was made from)."""
    d = notebooks_dir()
    h = hashlib.sha256((d / f"{notebook_id}.py").read_bytes() + b"\0" + (d / f"{notebook_id}.yaml").read_bytes())
    return h.hexdigest()[:16]


def make_stamp(notebook_id: str, *, key: str, status: str, error: str | None, preset: str, label: str,
               params: Mapping[str, Any], seconds: float, data_source: Sequence[str] = ()) -> dict[str, Any]:
    """What an execution records beside its numbers: the run key and outcome, preset, label,
    the parameters given and every parameter's value, the seeds (every parameter whose name
    mentions a seed, and the seed offset), the data set of the card and the data copies the
    page recorded (:func:`recorded_data_source`), wall time, date, the digest of the
    notebook's source and card, and :func:`instab_lib.provenance.stamp_fields` (commit,
    fingerprints, torch, CPU capability, Python, threads, device, processor)."""
    from . import provenance

    resolved = dict(declared_parameters(notebook_id))
    resolved.update(params)
    device = str(resolved.get("device", "cpu") or "cpu")
    card = load_card(notebook_id)
    paper = card["presets"].get("paper") or {}
    stamp = {"notebook": notebook_id, "data": str(card.get("data", "")), "data_source": list(data_source),
             "paper_preset_changes": {k: v for k, v in paper.items() if resolved.get(k) != v}, "key": key,
             "status": status, "error": error, "preset": preset, "label": label,
             "parameters": dict(params), "resolved_parameters": resolved,
             "seeds": {k: v for k, v in resolved.items() if "seed" in k.lower()},
             "seconds": round(seconds, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
             "source_digest": source_digest(notebook_id)}
    stamp.update(provenance.stamp_fields(device))
    return stamp


def _data_line(stamp: Mapping[str, Any]) -> str:
    data = str(stamp.get("data", "?"))
    if data.split()[0:1] == ["none"]:
        return "- **Data**: none (the page uses no data set)"
    copies = stamp.get("data_source") or []
    used = "; ".join(f"{c}" for c in copies) if copies else (
        f"**not recorded by the page** (a page records it as the number `{DATA_SOURCE_NUMBER}`)")
    return f"- **Data**: {data}; copy used: {used}"


def provenance_markdown(stamp: Mapping[str, Any]) -> str:
    """The box at the foot of an executed page: what produced it (from its stamp)."""
    commit = stamp.get("commit") or "unknown"
    dirty = " (with uncommitted changes)" if stamp.get("dirty") else " (clean tree)" if stamp.get("dirty") is False else ""
    given = stamp.get("parameters") or {}
    params = ", ".join(f"`{k}={v!r}`" for k, v in given.items()) or "the notebook's defaults"
    resolved = ", ".join(f"`{k}={v!r}`" for k, v in (stamp.get("resolved_parameters") or {}).items())
    seeds = ", ".join(f"`{k}={v!r}`" for k, v in (stamp.get("seeds") or {}).items()) or "none"
    minutes, secs = divmod(float(stamp.get("seconds", 0.0)), 60)
    device = stamp.get("device", "cpu") + (f" ({stamp['gpu']})" if stamp.get("gpu") else "")
    changes = stamp.get("paper_preset_changes")
    lines = [
        "```{admonition} How this page was produced",
        ":class: note provenance",
        "",
        f"- **Commit** `{commit[:12]}`{dirty}; library fingerprint `{stamp.get('library_fingerprint', '?')}`, "
        f"training-code fingerprint `{stamp.get('run_fingerprint', '?')}`",
        f"- **Preset** `{stamp.get('preset', '?')}` (label `{stamp.get('label', '?')}`); parameters given: {params}. "
        + (f"The `paper` preset changes {', '.join(f'`{k}`' for k in changes)}."
           if changes else "This run is at the `paper` preset's scale."),
        f"- **Every parameter**: {resolved or '?'}",
        _data_line(stamp),
        f"- **Seeds**: {seeds}; seed offset {stamp.get('seed_offset', 0)}",
        f"- **Software**: torch {stamp.get('torch', '?')}, Python {stamp.get('python', '?')}",
        f"- **Machine**: device {device}, CPU capability `{stamp.get('cpu_capability', '?')}` "
        "(`torch.backends.cpu.get_cpu_capability()`)"
        + (f" (forced by `ATEN_CPU_CAPABILITY={stamp['aten_cpu_capability']}`)" if stamp.get("aten_cpu_capability") else "")
        + f", {stamp.get('threads', '?')} torch threads, {stamp.get('processor', '?')}",
        f"- **Executed** {stamp.get('finished', '?')} in {int(minutes)} min {secs:.0f} s",
        "```",
    ]
    return "\n".join(lines)


def add_provenance_cell(nb_path: Path, stamp: Mapping[str, Any]) -> None:
    """Append the provenance box (:func:`provenance_markdown`) to an executed notebook."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    set_provenance_cell(nb, stamp)
    nbformat.write(nb, nb_path)


def set_provenance_cell(nb: Any, stamp: Mapping[str, Any]) -> None:
    """Replace the notebook's provenance cell (tag ``provenance``) by a fresh one at its foot."""
    import nbformat

    nb.cells = [c for c in nb.cells if "provenance" not in c.get("metadata", {}).get("tags", [])]
    cell = nbformat.v4.new_markdown_cell(provenance_markdown(stamp))
    cell.metadata["tags"] = ["provenance"]
    nb.cells.append(cell)


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
