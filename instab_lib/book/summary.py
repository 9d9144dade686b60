"""The intro's generated parts: the bottom line per paper with the Findings box
(``book/generated/bottom_line.html``) and the summary table, one row per page
(``book/generated/summary.html``).

Both are read from the :class:`~instab_lib.book.record.Record` the claims page shows, so their
counts agree with the scoreboard: the bottom line counts the paper claims under the headings of each
paper (``papers:`` in ``book/paper_claims.yml``) by their verdict over every column, and the summary
table's totals are the claims page's counts at CI scale and at the paper preset.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..experiments import repo_root
from . import findings
from .pages import count_text, scoreboard, verdict_counts
from .record import CI, PAPER, ClaimRecord, Record
from .verdicts import PageVerdict, verdict_span

__all__ = ["paper_bottom_line", "write_bottom_line", "write_summary", "PAPER_NAMES"]

PAPER_NAMES = {"A": "Paper A (Can Stability be Detrimental?)", "B": "Paper B (Training Instabilities Induce "
                                                                     "Flatness Bias)"}


def _first_sentence(text: str) -> str:
    cut = text.find(". ")
    return text if cut < 0 else text[: cut + 1]


def _shorts(rows: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(html.escape(r["short"]) + f" ({len(r['paper'])} claim{'s' if len(r['paper']) != 1 else ''})"
                     for r in rows)


def paper_bottom_line(record: Record, paper: str) -> str:
    """One paragraph (HTML) for paper ``paper`` (``"A"``/``"B"``): what holds, what does not, what
    is not a test, which statements no paper claim tests, and our readings apart. The counts are
    the paper claims under the paper's headings, by their verdict over every column."""
    rows = [r for r in scoreboard(record) if paper in r["papers"]]
    by: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["verdict"], []).append(r)
    claims = [c for r in rows for c in r["paper"]]
    readings = [c for r in rows for c in r["readings"]]
    n_hold = sum(len(r["paper"]) for r in by.get("reproduced", []))
    parts = [f"<strong>{html.escape(PAPER_NAMES[paper])}.</strong> {len(claims)} of its claims are tested by a "
             f"page: {count_text(verdict_counts(claims, 'combined'))} over every column the book has (CI scale, "
             "the paper preset, other CPU kernels and seeds)."]
    parts.append(f"<em>What holds</em> ({n_hold}): {_shorts(by['reproduced'])}." if by.get("reproduced")
                 else "<em>What holds</em>: no statement has all its paper claims reproduced in every column.")
    bad = by.get("not reproduced", []) + by.get("contradicted", [])
    failing_somewhere = [c for c in claims if {"not reproduced", "contradicted"} & set(c.verdicts.values())]
    parts.append(f"<em>What does not</em>: {_shorts(bad)}." if bad else
                 "<em>What does not</em>: " + ("none of its paper claims is not reproduced or contradicted in any "
                                                "column." if not failing_somewhere else
                                                "no statement fails in every column (see mixed)."))
    if by.get("mixed"):
        detail = "; ".join(f"{html.escape(c.id)}: {html.escape(c.combined_detail)}" for r in by["mixed"]
                           for c in r["paper"] if c.combined == "mixed")
        parts.append(f"<em>Mixed</em> (the outcome depends on the column): {_shorts(by['mixed'])} — {detail}.")
    if by.get("not a test"):
        why = {_first_sentence(c.why_not_a_test.get(CI, "")) for r in by["not a test"] for c in r["paper"]}
        parts.append(f"<em>Not a test here</em>: {_shorts(by['not a test'])} — "
                     f"{html.escape(' '.join(sorted(w for w in why if w)))}")
    if by.get("not tested"):
        parts.append("<em>No paper claim tests</em>: " + "; ".join(html.escape(r["short"]) for r in by["not tested"])
                     + ".")
    if readings:
        parts.append(f"Our sharper readings of its statements, apart: {count_text(verdict_counts(readings, CI))} "
                     "at CI scale.")
    return f'<p class="bottom-line" data-paper="{paper}">' + " ".join(parts) + "</p>"


def write_bottom_line(record: Record, magnitudes: Mapping[str, float] | None) -> Path:
    """``book/generated/bottom_line.html``: the bottom line of each paper, then the Findings box."""
    page = repo_root() / "book" / "generated" / "bottom_line.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    body = [paper_bottom_line(record, p) for p in ("A", "B")]
    body.append('<p><small>Counts from the scoreboard of <a href="generated/claims.html">the claims page</a>; a '
                "paper claim counts as reproduced only where it is reproduced at CI scale, at the paper preset and "
                "under every perturbation of <a href=\"generated/robustness.html\">Robustness</a>.</small></p>")
    body.append(findings.findings_box_html(magnitudes))
    page.write_text("\n".join(body) + "\n")
    return page


def _page_cell(v: PageVerdict | None, stale: bool = False) -> str:
    if v is None:
        return "<small>no archived run</small>"
    return verdict_span(v.word) + (" <small>(stale)</small>" if stale else "")


def write_summary(verdicts: Mapping[str, PageVerdict], record: Record, paper_rows: Sequence[Mapping[str, Any]],
                  titles: Mapping[str, str], figures: Mapping[str, str], seconds: Mapping[str, float]) -> Path:
    """``book/generated/summary.html``: one row per page with its verdict (paper claims only) at CI
    scale and at the paper preset, its paper claims counted at CI scale, and its execution time;
    the last row totals the paper claims as the claims page does."""
    page = repo_root() / "book" / "generated" / "summary.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    paper = {r["notebook"]: r for r in paper_rows}
    rows = ['<div class="table-scroll"><table class="claim-table summary">',
            "<thead><tr><th>page</th><th>reproduces</th><th>verdict, CI scale</th><th>paper claims, CI scale</th>"
            "<th>verdict, paper preset</th><th>time</th></tr></thead><tbody>"]
    all_paper: list[ClaimRecord] = []
    for nid, v in verdicts.items():
        pr = paper.get(nid)
        pv = pr["verdict"] if pr is not None and pr["entry"] is not None else None
        mine = [c for c in record.claims if c.notebook == nid and c.kind == "paper"]
        all_paper += mine
        rows.append(f'<tr data-page="{html.escape(nid)}"><td><a href="notebooks/{html.escape(nid)}.html">'
                    f"{html.escape(titles.get(nid, nid))}</a></td><td>{html.escape(figures.get(nid, ''))}</td>"
                    f"<td>{_page_cell(v)}</td><td>{html.escape(count_text(verdict_counts(mine, CI))) if mine else '—'}"
                    f"</td><td>{_page_cell(pv, bool(pr and pr['stale']))}</td><td>{seconds.get(nid, 0):.0f} s</td></tr>")
    rows.append(f'<tr class="total"><td>all pages</td><td></td><td></td>'
                f"<td>{html.escape(count_text(verdict_counts(all_paper, CI)))}</td>"
                f"<td>{html.escape(count_text(verdict_counts(all_paper, PAPER)))}</td><td></td></tr>")
    rows.append("</tbody></table></div>")
    page.write_text("\n".join(rows) + "\n")
    return page
