"""Pages of the book written by the build: the claims page (the scoreboard of the papers' claims,
our readings and own claims apart, the checks folded), the paper-scale page (which archived runs
exist, which are stale, which are missing and why). The robustness page is
:mod:`instab_lib.book.robustness`, the intro's summary :mod:`instab_lib.book.summary`.

Every verdict they show is read from one :class:`instab_lib.book.record.Record` (the same object
that is written as ``claims.json`` and ``claims.csv``), so a claim shows one verdict per column
everywhere. The pages are files under ``book/generated/`` holding HTML tables (MyST passes raw
HTML through), so verdicts read as words with a colour, with no emoji font needed; wide tables sit
in a horizontal scroller (``div.table-scroll``, ``book/_static/companion.css``).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ..experiments import repo_root
from .record import CI, PAPER, ClaimRecord, Record
from .verdicts import SCORED_KINDS, verdict_span

__all__ = ["paper_claims", "scoreboard", "heading_verdict", "verdict_counts", "write_claims_page",
           "write_paper_page", "JSON_NAME", "CSV_NAME"]

JSON_NAME, CSV_NAME = "claims.json", "claims.csv"
#: What the scoreboard calls each column.
COLUMN_TITLE = {CI: "CI scale", PAPER: "paper preset"}


def paper_claims() -> dict[str, dict[str, Any]]:
    """The papers' statements the scoreboard groups by (``book/paper_claims.yml``): key → short,
    papers, title, source."""
    return yaml.safe_load((repo_root() / "book" / "paper_claims.yml").read_text())


def heading_verdict(claims: Sequence[ClaimRecord]) -> str:
    """What the paper claims under one heading say together, from their combined verdicts:
    *reproduced*, *not a test*, *not reproduced*, *contradicted* when all agree, else *mixed*;
    *not tested* without a paper claim."""
    words = {c.combined for c in claims}
    if not claims:
        return "not tested"
    if len(words) == 1:
        return words.pop()
    if words <= {"not reproduced", "contradicted"}:
        return "not reproduced"
    return "mixed"


def scoreboard(record: Record) -> list[dict[str, Any]]:
    """One row per heading of ``book/paper_claims.yml``: its paper claims and readings (records)
    and the heading's verdict over its paper claims."""
    rows = []
    for key, meta in paper_claims().items():
        mine = [c for c in record.claims if c.heading == key]
        paper = [c for c in mine if c.kind == "paper"]
        rows.append({"key": key, "title": meta["title"], "short": meta.get("short", key),
                     "papers": meta.get("papers", []), "source": meta.get("source", ""), "paper": paper,
                     "readings": [c for c in mine if c.kind == "reading"], "verdict": heading_verdict(paper)})
    return rows


def verdict_counts(claims: Sequence[ClaimRecord], column: str) -> dict[str, int]:
    """verdict word → how many of ``claims`` have it in ``column`` (``combined`` for the combined)."""
    out: dict[str, int] = {}
    for c in claims:
        w = c.combined if column == "combined" else c.verdicts.get(column)
        if w is not None:
            out[w] = out.get(w, 0) + 1
    return out


def count_text(counts: Mapping[str, int]) -> str:
    order = ("reproduced", "holds", "pass", "mixed", "not reproduced", "not shown", "contradicted", "not a test",
             "FAIL")
    return ", ".join(f"{counts[w]} {w}" for w in order if counts.get(w)) or "none"


def _raw(block: str) -> list[str]:
    return ["```{raw} html", block, "```", ""]


def _verdict_cell(c: ClaimRecord, column: str) -> str:
    word = c.verdicts.get(column)
    if word is None:
        return "<small>no run</small>" if column == PAPER else "—"
    why = c.why_not_a_test.get(column)
    tip = f' title="{html.escape(why)}"' if why else ""
    return f"<span{tip}>{verdict_span(word, c.key, column)}</span>"


def _robust_cell(c: ClaimRecord, names: Sequence[str]) -> str:
    if not names or all(c.outcomes.get(n) is None for n in names):
        return "<small>not in the table</small>"
    differ = c.differing([CI, *names])
    if not differ:
        return "same in all"
    return "differs: " + ", ".join(f"{html.escape(n)} ({html.escape(c.verdicts.get(n) or '?')})" for n in differ)


def _page_link(c: ClaimRecord) -> str:
    nb = html.escape(c.notebook)
    return f'<a href="../notebooks/{nb}.html" title="{html.escape(c.key)}">{nb}</a>'


def _mixed_note(c: ClaimRecord) -> str:
    """Where a mixed claim differs from its CI verdict: ``reproduced at seeds+1000``."""
    ci = c.verdicts.get(CI)
    other: dict[str, list[str]] = {}
    for col, word in c.verdicts.items():
        if word is not None and word != ci:
            other.setdefault(word, []).append(col)
    return "; ".join(f"{w} at {', '.join(cols)}" for w, cols in other.items())


def _scored_row(c: ClaimRecord, perturbed: Sequence[str]) -> str:
    detail = f'<br><small class="mixed">{html.escape(_mixed_note(c))}</small>' if c.combined == "mixed" else ""
    return (f'<tr data-claim="{html.escape(c.key)}"><td>{html.escape(c.text)} <small>({_page_link(c)})</small></td>'
            f"<td>{html.escape(c.source_short)}</td>"
            f'<td class="v">{_verdict_cell(c, CI)}</td><td class="v">{_verdict_cell(c, PAPER)}</td>'
            f"<td>{_robust_cell(c, perturbed)}</td>"
            f'<td class="v all">{verdict_span(c.combined, c.key, "combined")}{detail}</td>'
            f"<td>{html.escape(c.effect.get('text', '—'))}</td></tr>")


_HEAD = ("<thead><tr><th>claim (page)</th><th>source</th><th>CI scale</th><th>paper preset</th><th>robustness</th>"
         "<th>every column</th><th>key effect [90% interval], CI</th></tr></thead>")


def _grouped_table(groups: Sequence[tuple[str, str, Sequence[ClaimRecord]]], perturbed: Sequence[str],
                   css: str) -> str:
    """One table; each group (title, note, records) opens with a heading row."""
    out = [f'<div class="table-scroll"><table class="claim-table {css}">', _HEAD, "<tbody>"]
    for title, note, claims in groups:
        if title:
            out.append(f'<tr class="group"><th colspan="7">{html.escape(title)}'
                       + (f"<br><small>{html.escape(note)}</small>" if note else "") + "</th></tr>")
        out += [_scored_row(c, perturbed) for c in claims]
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _checks_html(checks: Sequence[ClaimRecord], perturbed: Sequence[str]) -> str:
    n_ok = sum(c.combined == "pass" or c.combined == "met" for c in checks)
    rows = "\n".join(
        f'<tr data-claim="{html.escape(c.key)}"><td>{html.escape(c.text)}<br><small>{_page_link(c)} · '
        f"{html.escape(c.kind)}</small></td>"
        f"<td>{_verdict_cell(c, CI)}</td><td>{_verdict_cell(c, PAPER)}</td><td>{_robust_cell(c, perturbed)}</td></tr>"
        for c in checks)
    return (f'<details class="claim-checks"{"" if n_ok == len(checks) else " open"}><summary>{n_ok} of {len(checks)} '
            "checks (identities, illustrations, preconditions) pass in every column</summary>\n"
            '<div class="table-scroll"><table class="claim-table checks"><thead><tr><th>check</th><th>CI scale</th>'
            f"<th>paper preset</th><th>robustness</th></tr></thead><tbody>\n{rows}\n</tbody></table></div></details>")


def _columns_sentence(record: Record) -> str:
    perts = record.perturbation_columns()
    return (f"*CI scale* is this build's run; *paper preset* the archived run of each page's `paper` preset "
            f"({{doc}}`paper_scale`); *robustness* compares the CI column with the {len(perts)} columns of "
            f"{{doc}}`robustness` ({', '.join(perts) or 'none recorded'}): *same in all*, or the columns that differ; "
            "*every column* is *reproduced* (or *holds*) only where the claim is so in every column the book has, "
            "*mixed* otherwise, with the columns named.")


def _counts_paragraph(record: Record) -> str:
    paper = [c for c in record.claims if c.kind == "paper"]
    cols = [(CI, "at CI scale"), (PAPER, "at the paper preset"), ("combined", "over every column")]
    parts = [f"{label}: {count_text(verdict_counts(paper, col))}" for col, label in cols]
    others = []
    for kind, label in (("reading", "readings of ours"), ("beyond", "claims beyond the papers"),
                        ("finding", "findings about the author's code")):
        mine = [c for c in record.claims if c.kind == kind]
        if mine:
            others.append(f"{len(mine)} {label} ({count_text(verdict_counts(mine, CI))} at CI scale)")
    checks = [c for c in record.claims if not c.scored]
    n_fail = sum(1 for c in checks if c.verdicts.get(CI) not in ("pass", "met"))
    return (f"**{len(paper)} paper claims** are scored against the papers: {'; '.join(parts)}. Shown apart and never "
            f"counted against the papers: {', '.join(others)}. **{len(checks) - n_fail} of {len(checks)}** checks of "
            "the code and the experiments pass at CI scale (a failing check fails CI).")


def write_claims_page(record: Record) -> Path:
    """Write ``book/generated/claims.md``: the counts, the scoreboard of the papers' claims (one row
    per paper claim, grouped under the headings of ``book/paper_claims.yml``), our readings and the
    claims beyond the papers apart, the checks folded, and links to ``claims.json``/``claims.csv``."""
    page = repo_root() / "book" / "generated" / "claims.md"
    page.parent.mkdir(parents=True, exist_ok=True)
    perturbed = record.perturbation_columns()
    board = scoreboard(record)
    paper_groups = [(r["title"], r["source"], r["paper"]) for r in board if r["paper"]]
    untested = [r["short"] for r in board if not r["paper"]]
    reading_groups = [(r["title"], "", r["readings"]) for r in board if r["readings"]]
    own = [(title, note, [c for c in record.claims if c.kind == kind]) for kind, title, note in (
        ("beyond", "Beyond the papers", "the talk, SANE, or ours"),
        ("finding", "Findings about third-party code", "the author's public code"))]
    lines = ["# Claims checked by this build", "",
             "Written by the build from the numbers the notebooks recorded; every verdict is computed from them, "
             "and the pages, this page, the intro and `instab verify` read the same field. "
             f'The record of every claim (value with its interval, threshold, verdict in every column) is '
             f'<a href="../{JSON_NAME}">{JSON_NAME}</a> (and <a href="../{CSV_NAME}">{CSV_NAME}</a>). '
             "Each claim's expressions are in its notebook's card, `notebooks/<id>.yaml`.", "",
             _counts_paragraph(record), "",
             "## The papers' claims", "",
             "One row per claim of paper A or B that a page tests, under the statement it tests (its source "
             "quoted). A claim is *reproduced* when the whole 90 % interval lies beyond its threshold, *not "
             "reproduced* when the interval includes the null, *contradicted* when it excludes the null on the "
             "other side, and *not a test* where the page's setting is too small or unlike the paper's (hover for "
             "why) or a precondition of the page is not met. " + _columns_sentence(record), ""]
    lines += _raw(_grouped_table(paper_groups, perturbed, "scoreboard"))
    if untested:
        lines += ["Statements with no paper claim on any page (only readings, or nothing yet): "
                  + "; ".join(untested) + ".", ""]
    lines += ["## Our readings of the papers' statements", "",
              "Our quantitative or sharper readings of a statement (a window, a statistic or a comparison the "
              "statement does not fix), each under the statement it reads. They are shown apart and never counted "
              "against the papers.", ""]
    lines += _raw(_grouped_table(reading_groups, perturbed, "readings"))
    lines += ["## Beyond the papers, and findings", "",
              "Our own claims and the talk's and SANE's expectations (*holds* / *not shown* / *contradicted*), and "
              "what we found about the author's public code.", ""]
    lines += _raw(_grouped_table([g for g in own if g[2]], perturbed, "beyond"))
    checks = [c for c in record.claims if not c.scored]
    lines += ["## Checks", "", "Identities (closed forms, our code against ground truth), illustrations (models "
              "built to show a property: true by construction) and preconditions (the experiment measures what it "
              "says). They get no verdict; a failing check fails CI.", ""]
    lines += _raw(_checks_html(checks, perturbed))
    page.write_text("\n".join(lines) + "\n")
    return page


# --------------------------------------------------------------------------- paper scale
def _entry_cells(row: Mapping[str, Any]) -> str:
    entry = row["entry"]
    nid = html.escape(row["notebook"])
    link = f'<a href="../notebooks/{nid}.html">{nid}</a>'
    if entry is None:
        return (f'<tr><td>{link}</td><td><span class="claim-notrep">missing</span></td>'
                f"<td>—</td><td>—</td><td>—</td><td>{html.escape(row['reason'])}</td></tr>")
    s = entry.stamp
    state = '<span class="claim-notrep">stale</span>' if row["stale"] else '<span class="claim-pass">current</span>'
    machine = f"{s.get('device', 'cpu')}{' (' + s['gpu'] + ')' if s.get('gpu') else ''}, {s.get('cpu_capability', '?')}"
    v = row["verdict"]
    return (f"<tr><td>{link}</td><td>{state}</td><td><span class=\"{v.css_class}\">{html.escape(v.word)}</span></td>"
            f"<td>{html.escape(entry.created)}<br><code>{html.escape(entry.commit[:12])}</code></td>"
            f"<td>{html.escape(machine)}<br>{float(s.get('seconds', 0)) / 60:.1f} min</td>"
            f"<td>{html.escape('; '.join(row['stale']) or 'library and notebook unchanged since')}</td></tr>")


def write_paper_page(rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``book/generated/paper_scale.md`` from :func:`instab_lib.book.archive.status`: every
    page's archived paper-scale run (current or stale, with its date, commit, machine and
    wall time), and every missing one with the reason."""
    page = repo_root() / "book" / "generated" / "paper_scale.md"
    page.parent.mkdir(parents=True, exist_ok=True)
    have = [r for r in rows if r["entry"] is not None]
    stale = [r for r in have if r["stale"]]
    missing = [r for r in rows if r["entry"] is None]
    lines = ["# The paper's scale: archived runs", "",
             "Each page runs at a CPU-sized scale in CI. Its `paper` preset runs it at the paper's scale; "
             "`instab archive <id> --preset paper` executes that preset and commits the numbers, the stamp and the "
             "figures to `results/paper/<id>/`, and each page shows them in its section *At the paper's scale*. "
             "`instab verify --label paper` checks the claims on the archived numbers without recomputing. An entry "
             "is *stale* when the library or the notebook has changed since it was made.", "",
             f"**{len(have)} of {len(rows)}** pages have an archived run ({len(stale)} stale); "
             f"**{len(missing)}** are missing.", ""]
    head = ("<thead><tr><th>page</th><th>entry</th><th>verdict at the paper's scale</th><th>made</th>"
            "<th>machine, wall time</th><th>note</th></tr></thead><tbody>")
    body = "\n".join(_entry_cells(r) for r in rows)
    lines += _raw(f'<div class="table-scroll"><table class="claim-table paper-scale">{head}\n{body}\n</tbody></table>'
                  "</div>")
    lines += ["## Missing entries", ""]
    lines += [f"- `{r['notebook']}`: {r['reason']}" for r in missing] or ["None: every page has an archived run."]
    lines += ["", "The reasons come from `results/paper/pending.yml`; a page not listed there says *not run yet*.", ""]
    page.write_text("\n".join(lines) + "\n")
    return page
