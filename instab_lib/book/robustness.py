"""The perturbation table (``results/robustness.json``, written by :mod:`instab_lib.book.perturb`)
as the book reads it: its columns, each claim's outcome per column, the Robustness page and its CSV.

The Robustness page shows only the claims whose outcome differs between columns (a failing check
fails CI; a scored claim whose outcome flips is a result, reported here), with the commit and the
processor of every column, this build's own included, and links ``robustness.csv`` with every row.
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..experiments import repo_root
from .record import CI, Column, Record
from .verdicts import ClaimResult, verdict_span

__all__ = ["robustness_path", "load", "columns", "outcomes", "csv_text", "write_page", "page_note", "PAGE", "CSV_NAME"]

PAGE = ("book", "generated", "robustness.md")
CSV_NAME = "robustness.csv"


def robustness_path() -> Path:
    """The committed result of the last perturbation check (``results/robustness.json``)."""
    return repo_root() / "results" / "robustness.json"


def load(path: Path | None = None) -> dict[str, Any] | None:
    """The perturbation table, or None when none has been recorded."""
    src = path or robustness_path()
    return json.loads(src.read_text()) if src.exists() else None


def columns(data: Mapping[str, Any] | None) -> list[Column]:
    """One :class:`~instab_lib.book.record.Column` per perturbation, with its commit and processor."""
    if not data:
        return []
    out = []
    for p in data["perturbations"]:
        env = ", ".join(f"{k}={v}" for k, v in (p.get("env") or {}).items()) or "nothing changed (that run's own)"
        out.append(Column(p["name"], env, str(p.get("commit") or data.get("commit") or "")[:12],
                          str(p.get("processor") or data.get("processor") or "?"), str(p.get("cpu_capability", "?")),
                          f"made {data.get('created', '?')}"))
    return out


def outcomes(data: Mapping[str, Any] | None) -> dict[tuple[str, str], dict[str, tuple[str, str]]]:
    """``{(notebook, claim): {column: (outcome, value text)}}``."""
    if not data:
        return {}
    return {(row["notebook"], row["claim"]): {c: (v["outcome"], str(v.get("value", ""))) for c, v in
                                              row["results"].items()} for row in data["claims"]}


def csv_text(data: Mapping[str, Any]) -> str:
    """Every row of the perturbation table: page, claim, kind, and per column verdict and value."""
    names = [p["name"] for p in data["perturbations"]]
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["notebook", "claim", "kind"] + [f"verdict_{n}" for n in names] + [f"value_{n}" for n in names])
    for row in data["claims"]:
        res = row["results"]
        w.writerow([row["notebook"], row["claim"], row["kind"]] + [res.get(n, {}).get("verdict", "") for n in names]
                   + [res.get(n, {}).get("value", "") for n in names])
    return out.getvalue()


def _columns_table(cols: Sequence[Column], data: Mapping[str, Any]) -> list[str]:
    minutes = {p["name"]: float(p.get("seconds", 0)) / 60 for p in data["perturbations"]}
    lines = ['<div class="table-scroll"><table class="claim-table robustness-columns">',
             "<thead><tr><th>column</th><th>what changed</th><th>commit</th><th>processor, CPU kernels</th>"
             "<th>minutes</th></tr></thead><tbody>"]
    for c in cols:
        mins = f"{minutes[c.name]:.1f}" if c.name in minutes else "—"
        lines.append(f"<tr><td>{html.escape(c.name)}</td><td>{html.escape(c.label)}</td>"
                     f"<td><code>{html.escape(c.commit or '?')}</code></td>"
                     f"<td>{html.escape(c.processor)}, <code>{html.escape(c.cpu_capability)}</code></td>"
                     f"<td>{mins}</td></tr>")
    lines.append("</tbody></table></div>")
    return ["```{raw} html", "\n".join(lines), "```", ""]


def _flips_table(record: Record, names: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = [f'<div class="table-scroll"><table class="claim-table robustness"><thead><tr><th>claim</th>{head}'
            "</tr></thead><tbody>"]
    for c in record.claims:
        if not c.differing(names):
            continue
        cells = "".join(f"<td>{verdict_span(c.verdicts[n]) if c.verdicts.get(n) else '—'}<br>"
                        f"<small>{html.escape(c.values.get(n) or '')}</small></td>" for n in names)
        link = f'<a href="../notebooks/{html.escape(c.notebook)}.html">{html.escape(c.notebook)}</a>'
        rows.append(f'<tr data-claim="{html.escape(c.key)}"><td>{html.escape(c.text)}<br><small>{link} · '
                    f"{html.escape(c.kind)} · <code>{html.escape(c.id)}</code></small></td>{cells}</tr>")
    rows.append("</tbody></table></div>")
    return "\n".join(rows)


def write_page(record: Record, data: Mapping[str, Any] | None, stale: str | None = None) -> Path:
    """Write ``book/generated/robustness.md``: the columns (commit, processor, kernels), the counts,
    the claims whose outcome differs between columns, and a link to ``robustness.csv``. ``stale``:
    why the table no longer describes the code (shown as a warning)."""
    page = repo_root().joinpath(*PAGE)
    page.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Robustness: the claims under other arithmetic, other seeds and another initialisation", "",
             "Gradient descent at the edge of stability is chaotic: PyTorch picks CPU kernels by instruction set, the "
             "float rounding differs, and one trajectory differs from the next after a few hundred epochs. A claim of "
             "this book is therefore a statement about an ensemble of seeds, and its outcome should not depend on the "
             "kernels or on which seeds. Nor should it hang on PyTorch's default initialisation where the author's "
             "code uses Flax's (LeCun-normal kernels, zero biases): the `init-author` column re-runs the Fashion-MNIST "
             "models with it. `make perturb` (`instab verify --perturb`) re-executes every notebook under "
             "each perturbation below, each in its own run cache, and records every claim's outcome.", ""]
    if not data:
        lines += ["```{warning}", "No perturbation check has been recorded yet (`results/robustness.json` is missing): "
                  "run `make perturb`.", "```", ""]
        page.write_text("\n".join(lines) + "\n")
        return page
    if stale:
        lines += ["```{warning}", f"This table is **stale**: {stale}. Its columns were executed from the commit and on "
                  "the processor named below, not from the code of this build's pages; rerun `make perturb`.", "```", ""]
    lines += ["## The columns", "", "Every column with the commit it was executed from and the processor it ran on. "
              f"*{CI}* is this build's own run (the numbers the pages show); the others come from "
              "`results/robustness.json`." + (f" {data['outcomes_note']}" if data.get("outcomes_note") else ""), ""]
    lines += _columns_table(record.columns, data)
    names = [n for n in record.column_names() if n == CI or n in {p["name"] for p in data["perturbations"]}]
    flips = [c for c in record.claims if c.differing(names)]
    n_fail = data.get("n_failing", 0)
    lines += ["## Claims whose outcome differs between columns", "",
              f"**{n_fail}** check(s) fail in some column of the perturbation table (a failing check fails CI). "
              f"**{len(flips)}** of the {len(record.claims)} claims change their outcome from one column to another "
              "(counting this build's column); the table shows them, and no other. Every row of the perturbation "
              f'table, with its value in each column, is in <a href="../{CSV_NAME}">{CSV_NAME}</a>.', ""]
    lines += ["```{raw} html", _flips_table(record, names), "```", ""] if flips else ["None.", ""]
    page.write_text("\n".join(lines) + "\n")
    return page


def page_note(data: Mapping[str, Any] | None, notebook_id: str, results: Sequence[ClaimResult],
              stale: bool = False, prefix: str = "../") -> str:
    """The line under a page's verdict that says which of its scored claims, if any, change their
    outcome between this build's run (``results``) and the perturbation table's columns (other
    kernels, shifted seeds, the author's initialisation, …), naming the columns, their commit and
    processor; ``""`` when no table is recorded or the page scores no claim. ``stale``: the table
    was made from other library code (said in the line)."""
    scored = [r for r in results if r.scored]
    if not data or not scored:
        return ""
    table = outcomes(data)
    names = [p["name"] for p in data["perturbations"] if p["name"] != "native"]
    commits = sorted({str(p.get("commit") or data.get("commit") or "?")[:12] for p in data["perturbations"]})
    procs = sorted({str(p.get("processor") or data.get("processor") or "?") for p in data["perturbations"]})
    where = (f"{', '.join(html.escape(n) for n in names)}; commit <code>{'</code>, <code>'.join(map(html.escape, commits))}"
             f"</code>, {html.escape(', '.join(procs))}" + ("; <strong>stale</strong>: made from other library code"
                                                           if stale else ""))
    moved, missing = [], []
    for r in scored:
        row = table.get((notebook_id, r.claim_id))
        if row is None:
            missing.append(r.claim_id)
            continue
        differ = {n: row[n][0] for n in names if n in row and row[n][0] != r.outcome}
        if differ:
            moved.append((r, differ))
    link = f'<a href="{prefix}generated/robustness.html">the Robustness page</a>'
    if not moved:
        text = (f"none of the {len(scored) - len(missing)} scored claims in the table changes its outcome under the "
                f"other columns ({where})")
    else:
        items = "; ".join(f"<code>{html.escape(r.claim_id)}</code>: {html.escape(r.outcome)} here, "
                          + ", ".join(f"{html.escape(o)} under {html.escape(n)}" for n, o in differ.items())
                          for r, differ in moved)
        text = (f"{len(moved)} of the {len(scored) - len(missing)} scored claims in the table change their outcome "
                f"under another column ({where}): {items}")
    if missing:
        text += (f". Not in the table (added since it was made): "
                 f"{', '.join(f'<code>{html.escape(c)}</code>' for c in missing)}")
    return f'<p class="page-robustness"><strong>Robustness</strong>: {text} (see {link}).</p>'
