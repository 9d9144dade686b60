"""A page's stamp and provenance box: what produced an executed notebook.

:func:`make_stamp` is what an execution records beside its numbers (``<id>.stamp.json``):
the run key and outcome, the parameters, seeds, data copies the page recorded
(:func:`recorded_data_source`), the digest of its source and card (:func:`source_digest`)
and :func:`instab_lib.experiments.fingerprint.stamp_fields` (commit, fingerprints, numerics
environment, machine). :func:`provenance_markdown` is the box at the foot of the page, put
there by :func:`add_provenance_cell` / :func:`set_provenance_cell`.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from .cards import declared_parameters, load_card, notebooks_dir

__all__ = ["DATA_SOURCE_NUMBER", "recorded_data_source", "source_digest", "make_stamp", "provenance_markdown",
           "add_provenance_cell", "set_provenance_cell"]


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
             "seconds": round(seconds, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
             "source_digest": source_digest(notebook_id)}
    stamp.update(fingerprint.stamp_fields(device))
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
