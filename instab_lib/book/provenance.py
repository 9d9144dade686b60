"""A page's stamp and provenance box: what produced an executed notebook.

:func:`make_stamp` is what an execution records beside its numbers (``<id>.stamp.json``):
the run key and outcome, the parameters, seeds, data copies the page recorded
(:func:`recorded_data_source`), the digest of its source and card (:func:`source_digest`)
and :func:`instab_lib.experiments.fingerprint.stamp_fields` (commit, fingerprints, numerics
environment, machine). :func:`provenance_html` is the box at the foot of the page (a closed ``<details>``), put
there by :func:`add_provenance_cell` / :func:`set_provenance_cell`.
"""

from __future__ import annotations

import hashlib
import html
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from .cards import declared_parameters, load_card, notebooks_dir

__all__ = ["DATA_SOURCE_NUMBER", "SEEDS_NUMBER", "NOT_RECORDED", "PROVENANCE_TITLE", "recorded_data_source",
           "recorded_seeds", "source_digest", "make_stamp", "data_text", "seeds_text", "provenance_html",
           "add_provenance_cell", "set_provenance_cell"]


#: A recorded number whose name is this, or ends in ``_`` + this, names the data copy a page
#: used (a string or a list of strings, e.g. ``rec.record("data_source", ds.source)``); the
#: provenance box and the stamp show it (CONTRIBUTING.md, "A notebook").
DATA_SOURCE_NUMBER = "data_source"
#: A recorded number whose name is this, or ends in ``_`` + this, lists the seeds a page's runs used
#: (an int or a list of ints, e.g. ``rec.record("seeds", sorted({r.config.seed for r in runs}))``).
SEEDS_NUMBER = "seeds"
#: What the box says of a data copy or seeds the page did not record.
NOT_RECORDED = "not recorded by the page"
#: The summary line of the box.
PROVENANCE_TITLE = "How this page was produced"


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


def card_bytes(notebook_id: str) -> bytes:
    """The card's text as hashed into run keys and source digests: the file without its top-level ``dry_run:``
    block and the comment lines right above it. A dry run (``instab archive --dry-run``) changes no number of
    any preset, so editing its settings leaves executed pages and archived entries current; a card without the
    block hashes as its whole text."""
    lines = (notebooks_dir() / f"{notebook_id}.yaml").read_bytes().splitlines(keepends=True)
    i = next((k for k, ln in enumerate(lines) if ln.rstrip(b"\r\n") == b"dry_run:"), None)
    if i is None:
        return b"".join(lines)
    j = i + 1
    while j < len(lines) and (lines[j][:1] in (b" ", b"\t") or not lines[j].strip()):
        j += 1
    while i > 0 and lines[i - 1].startswith(b"#"):
        i -= 1
    return b"".join(lines[:i] + lines[j:])


def source_digest(notebook_id: str) -> str:
    """16 hex digits over the notebook's source and card (:func:`card_bytes`: what an archive entry was made
    from)."""
    d = notebooks_dir()
    h = hashlib.sha256((d / f"{notebook_id}.py").read_bytes() + b"\0" + card_bytes(notebook_id))
    return h.hexdigest()[:16]


def make_stamp(notebook_id: str, *, key: str, status: str, error: str | None, preset: str, label: str,
               params: Mapping[str, Any], seconds: float, data_source: Sequence[str] = (),
               recorded_seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """What an execution records beside its numbers: the run key and outcome, preset, label,
    the parameters given and every parameter's value, the seeds (every parameter whose name
    mentions a seed, the seeds the page recorded, :func:`recorded_seeds`, and the seed offset),
    the data set of the card and the data copies the page recorded (:func:`recorded_data_source`), wall time, date, the digest of the
    notebook's source and card, and :func:`instab_lib.experiments.fingerprint.stamp_fields` (commit,
    fingerprints, torch, CPU capability, Python, threads, device, processor)."""
    from ..experiments import fingerprint

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
             "recorded_seeds": None if recorded_seeds is None else [int(s) for s in recorded_seeds],
             "seconds": round(seconds, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
             "source_digest": source_digest(notebook_id)}
    stamp.update(fingerprint.stamp_fields(device))
    return stamp


def recorded_seeds(numbers: Mapping[str, Any]) -> list[int] | None:
    """The seeds a run recorded (:data:`SEEDS_NUMBER`: an int or a list of ints; or a list of ints
    named ``<something>_seeds``, not a count such as ``n_seeds``), sorted, without repeats; an
    empty list when the page recorded that it draws no random numbers (``seeds = []``); None when
    it recorded nothing about seeds."""
    out: set[int] = set()
    found = False
    for name in numbers:
        value = numbers[name]
        if name == SEEDS_NUMBER or (name.endswith("_" + SEEDS_NUMBER) and not name.startswith("n_")
                                    and isinstance(value, list)):
            found = True
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, int) and not isinstance(v, bool):
                    out.add(int(v))
    return sorted(out) if found else None


def _code(text: Any) -> str:
    return f"<code>{html.escape(str(text))}</code>"


def _items(values: Mapping[str, Any]) -> str:
    return ", ".join(_code(f"{k}={v!r}") for k, v in values.items())


def data_text(stamp: Mapping[str, Any]) -> str:
    """The data line of the box (plain text): the data set and the copy the page recorded."""
    data = str(stamp.get("data", "?"))
    if data.split()[0:1] == ["none"]:
        return "none (the page uses no data set)"
    copies = stamp.get("data_source") or []
    used = "; ".join(str(c) for c in copies) if copies else (
        f"{NOT_RECORDED} (a page records it as the number {DATA_SOURCE_NUMBER})")
    return f"{data}; copy used: {used}"


def seeds_text(stamp: Mapping[str, Any]) -> str:
    """The seeds line of the box (plain text): the seeds the page recorded (or that it draws no
    random numbers), and the seed parameters; or that the page did not record them."""
    recorded = stamp.get("recorded_seeds")
    params = ", ".join(f"{k}={v!r}" for k, v in (stamp.get("seeds") or {}).items())
    if recorded:
        n = len(recorded)
        text = f"{', '.join(str(s) for s in recorded)} ({n} seed{'s' if n != 1 else ''}, recorded by the page)"
        text += f"; parameters {params}" if params else ""
    elif recorded is not None and not params:
        text = "none (the page draws no random numbers)"
    elif params:
        text = f"{params} (parameters)"
    else:
        text = f"{NOT_RECORDED} (a page records them as the number {SEEDS_NUMBER})"
    init = stamp.get("init", "torch")  # said only where INSTAB_INIT changed it (the init-author column)
    extra = f"; fMNIST models initialised {init!r} (INSTAB_INIT)" if init != "torch" else ""
    return f"{text}; seed offset {stamp.get('seed_offset', 0)}{extra}"


def provenance_html(stamp: Mapping[str, Any]) -> str:
    """The box at the foot of an executed page, closed: what produced it (from its stamp). Each
    line carries ``data-field`` (``commit``, ``data``, ``seeds``, …) for the browser test."""
    commit = stamp.get("commit") or "unknown"
    dirty = " (with uncommitted changes)" if stamp.get("dirty") else " (clean tree)" if stamp.get("dirty") is False else ""
    given = _items(stamp.get("parameters") or {}) or "the notebook's defaults"
    resolved = _items(stamp.get("resolved_parameters") or {}) or "?"
    minutes, secs = divmod(float(stamp.get("seconds", 0.0)), 60)
    device = stamp.get("device", "cpu") + (f" ({stamp['gpu']})" if stamp.get("gpu") else "")
    changes = stamp.get("paper_preset_changes")
    forced = (f" (forced by {_code('ATEN_CPU_CAPABILITY=' + str(stamp['aten_cpu_capability']))})"
              if stamp.get("aten_cpu_capability") else "")
    esc = html.escape
    lines = {
        "commit": f"<strong>Commit</strong> {_code(commit[:12])}{dirty}; library fingerprint "
                  f"{_code(stamp.get('library_fingerprint', '?'))}, training-code fingerprint "
                  f"{_code(stamp.get('run_fingerprint', '?'))}",
        "preset": f"<strong>Preset</strong> {_code(stamp.get('preset', '?'))} (label {_code(stamp.get('label', '?'))}); "
                  f"parameters given: {given}. "
                  + (f"The {_code('paper')} preset changes {', '.join(_code(k) for k in changes)}."
                     if changes else f"This run is at the {_code('paper')} preset's scale."),
        "parameters": f"<strong>Every parameter</strong>: {resolved}",
        "data": f"<strong>Data</strong>: {esc(data_text(stamp))}",
        "seeds": f"<strong>Seeds</strong>: {esc(seeds_text(stamp))}",
        "software": f"<strong>Software</strong>: torch {esc(str(stamp.get('torch', '?')))}, "
                    f"Python {esc(str(stamp.get('python', '?')))}",
        "machine": f"<strong>Machine</strong>: device {esc(device)}, CPU capability "
                   f"{_code(stamp.get('cpu_capability', '?'))} ({_code('torch.backends.cpu.get_cpu_capability()')})"
                   f"{forced}, {esc(str(stamp.get('threads', '?')))} torch threads, {esc(str(stamp.get('processor', '?')))}",
        "executed": f"<strong>Executed</strong> {esc(str(stamp.get('finished', '?')))} in {int(minutes)} min {secs:.0f} s",
    }
    items = "\n".join(f'<li data-field="{k}">{v}</li>' for k, v in lines.items())
    return (f'<details class="provenance">\n<summary>{PROVENANCE_TITLE}</summary>\n<ul>\n{items}\n</ul>\n'
            "</details>")


def add_provenance_cell(nb_path: Path, stamp: Mapping[str, Any]) -> None:
    """Append the provenance box (:func:`provenance_html`) to an executed notebook."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    set_provenance_cell(nb, stamp)
    nbformat.write(nb, nb_path)


def set_provenance_cell(nb: Any, stamp: Mapping[str, Any]) -> None:
    """Replace the notebook's provenance cell (tag ``provenance``) by a fresh one at its foot."""
    import nbformat

    nb.cells = [c for c in nb.cells if "provenance" not in c.get("metadata", {}).get("tags", [])]
    cell = nbformat.v4.new_markdown_cell("```{raw} html\n" + provenance_html(stamp) + "\n```")
    cell.metadata["tags"] = ["provenance"]
    nb.cells.append(cell)
