"""Pages of the book written by the build: the claims page (scoreboard and every claim, with
the paper's scale beside this build's), the robustness page (every claim under other float
rounding and other seeds), the paper-scale page (which archived runs exist, which are stale,
which are missing and why) and the intro's summary table (one verdict per page).

They are files under ``book/generated/`` holding HTML tables (MyST passes raw HTML
through), so pass / FAIL / not reproduced read as words with a colour, with no emoji font
needed.
"""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ..experiments import repo_root
from . import claims as claims_mod

__all__ = ["paper_claims", "scoreboard", "write_claims_page", "robustness_path", "write_robustness_page",
           "write_paper_page", "write_summary", "paper_column"]


def paper_claims() -> dict[str, dict[str, str]]:
    """The papers' claims the scoreboard groups by (``book/paper_claims.yml``): key → title, source."""
    return yaml.safe_load((repo_root() / "book" / "paper_claims.yml").read_text())


def scoreboard(results: Sequence[claims_mod.ClaimResult]) -> list[dict[str, Any]]:
    """One row per paper claim: how many of the card claims bearing on it are reproduced,
    not reproduced and contradicted (interval on the wrong side of the null), failing,
    the overall verdict and the effects measured."""
    by: dict[str, list[claims_mod.ClaimResult]] = defaultdict(list)
    for r in results:
        if r.paper:
            by[r.paper].append(r)
    rows = []
    for key, meta in paper_claims().items():
        rs = by.get(key, [])
        rep = [r for r in rs if r.status == "reproduced" and r.ok]
        failing = [r for r in rs if not r.ok]
        notrep = [r for r in rs if r.status == "not_reproduced" and r.ok and not r.contradicted]
        contra = [r for r in rs if r.contradicted]
        if not rs:
            verdict = "not tested"
        elif failing:
            verdict = "failing"
        elif contra:
            verdict = "contradicted" if not rep else "partly (some contradicted)"
        elif rep and not notrep:
            verdict = "reproduced"
        elif rep:
            verdict = "partly reproduced"
        else:
            verdict = "not reproduced"
        rows.append({"key": key, "title": meta["title"], "source": meta.get("source", ""), "verdict": verdict,
                     "n_reproduced": len(rep), "n_not_reproduced": len(notrep), "n_contradicted": len(contra),
                     "n_failing": len(failing), "claims": rs})
    return rows


_VERDICT_CLASS = {"reproduced": "claim-pass", "partly reproduced": "claim-notrep", "not reproduced": "claim-notrep",
                  "contradicted": "claim-fail", "partly (some contradicted)": "claim-fail", "failing": "claim-fail",
                  "not tested": "claim-notrep"}


def _verdict_span(verdict: str) -> str:
    return f'<span class="{_VERDICT_CLASS.get(verdict, "")}">{html.escape(verdict)}</span>'


def _scoreboard_html(rows: Sequence[Mapping[str, Any]], paper: Mapping[str, str] | None = None) -> str:
    out = ['<table class="claim-table scoreboard">',
           "<thead><tr><th>the papers' claim</th><th>verdict</th>"
           + ("<th>at the paper's scale</th>" if paper is not None else "")
           + "<th>reproduced</th><th>not reproduced</th><th>contradicted</th>"
           "<th>effects measured (estimate [90% interval])</th></tr></thead><tbody>"]
    for row in rows:
        effects = "<br>".join(
            f'<a href="../notebooks/{html.escape(r.notebook)}.html">{html.escape(r.notebook)}</a> '
            f"<code>{html.escape(r.claim_id)}</code>: {html.escape(r.error or r.value_str())} "
            f"({html.escape(r.verdict)})" for r in row["claims"]) or "—"
        paper_cell = f"<td>{paper.get(row['key'], '<small>no archived run</small>')}</td>" if paper is not None else ""
        out.append(f"<tr><td>{html.escape(row['title'])}<br><small>{html.escape(row['source'])}</small></td>"
                   f"<td>{_verdict_span(row['verdict'])}</td>" + paper_cell
                   + f"<td>{row['n_reproduced']}</td><td>{row['n_not_reproduced']}</td><td>{row['n_contradicted']}</td>"
                   f"<td>{effects}</td></tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _raw(block: str) -> list[str]:
    return ["```{raw} html", block, "```", ""]


def paper_column(results: Sequence[claims_mod.ClaimResult],
                 paper_rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """Per (notebook, claim): the HTML of its verdict and value on the archived paper-scale
    numbers (:func:`instab_lib.book.archive.status` rows), marked stale, or "not archived"."""
    by_nb = {row["notebook"]: row for row in paper_rows}
    cells: dict[tuple[str, str], str] = {}
    for row in paper_rows:
        if row["entry"] is None:
            continue
        stale = " <small>(stale)</small>" if row["stale"] else ""
        for r in row["entry"].results():
            cells[(r.notebook, r.claim_id)] = (f'<span class="{claims_mod.VERDICT_CLASS.get(r.verdict, "")}">'
                                               f"{html.escape(r.verdict)}</span>{stale}<br>"
                                               f"<small>{html.escape(r.error or r.value_str())}</small>")
    for r in results:
        if (r.notebook, r.claim_id) not in cells and r.notebook in by_nb:
            cells[(r.notebook, r.claim_id)] = "<small>not archived</small>"
    return cells


def _paper_scoreboard(paper_rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    results = [r for row in paper_rows if row["entry"] is not None for r in row["entry"].results()]
    return {row["key"]: _verdict_span(row["verdict"]) for row in scoreboard(results) if row["claims"]}


def write_claims_page(results: Sequence[claims_mod.ClaimResult],
                      paper_rows: Sequence[Mapping[str, Any]] | None = None) -> Path:
    """Write ``book/generated/claims.md``: the scoreboard, then every claim with the value this
    build measured, its threshold and margin (failures first, thinnest margins next), the
    not-reproduced findings apart. With ``paper_rows`` (:func:`instab_lib.book.archive.status`),
    the scoreboard and the tables get a column for the archived paper-scale runs."""
    extra = ("at the paper's scale", paper_column(results, paper_rows)) if paper_rows is not None else None
    paper_board = _paper_scoreboard(paper_rows) if paper_rows is not None else None
    page = repo_root() / "book" / "generated" / "claims.md"
    page.parent.mkdir(parents=True, exist_ok=True)
    gating = [r for r in results if r.status != "not_reproduced"]
    findings = [r for r in results if r.status == "not_reproduced"]
    n_ok = sum(r.ok for r in gating)
    thin = sum(r.thin for r in gating)
    lines = [
        "# Claims checked by this build",
        "",
        f"Written by the build from the numbers the notebooks recorded: **{n_ok} of {len(gating)}** checked claims pass"
        f" ({thin} with a margin under {claims_mod.THIN_MARGIN:g} standard errors, marked *thin*), and "
        f"**{len(findings)}** claims of the papers are reported as *not reproduced at this scale*. CI fails when a "
        "checked claim fails; a not-reproduced claim is a finding, shown with its measured effect, never as a pass. "
        "`instab verify` prints the same table. Each claim's expressions are in the notebook's card, "
        "`notebooks/<id>.yaml`; {doc}`robustness` shows every claim under other CPU kernels and other seeds, "
        "and {doc}`paper_scale` lists the archived paper-scale runs whose verdicts fill the columns *at the "
        "paper's scale*.",
        "",
        "## Scoreboard: the papers' claims",
        "",
        "Each claim of the papers, with the verdict of the checks that bear on it: *reproduced* when every check "
        "passes; *not reproduced* when the measured effect does not reach the threshold; *contradicted* when its "
        "interval lies on the other side of the null.",
        "",
        *_raw(_scoreboard_html(scoreboard(results), paper_board)),
        "## Every checked claim",
        "",
        "Measured: the estimate and its 90% interval over seeds (or the exact value of a deterministic claim). "
        "Margin: how many standard errors the estimate lies beyond the threshold (— for deterministic claims).",
        "",
        *_raw(claims_mod.claims_html(gating, with_notebook=True, link=True, extra=extra)),
        "## Not reproduced at this scale",
        "",
        "Claims of the papers whose effect this companion measured and did not find at the scale shown; the "
        "`paper` presets of the pages run them at the paper's scale.",
        "",
        *(_raw(claims_mod.claims_html(findings, with_notebook=True, link=True, extra=extra)) if findings
          else ["None.", ""]),
    ]
    page.write_text("\n".join(lines) + "\n")
    return page


# --------------------------------------------------------------------------- robustness
def robustness_path() -> Path:
    """The committed result of the last perturbation check (``results/robustness.json``)."""
    return repo_root() / "results" / "robustness.json"


def _cell(entry: Mapping[str, Any] | None) -> str:
    if entry is None:
        return "<td>—</td>"
    verdict = entry.get("verdict", "?")
    cls = claims_mod.VERDICT_CLASS.get(verdict, "")
    m = entry.get("margin")
    mtxt = "" if m is None else (f" {m:+.1f}σ" if isinstance(m, (int, float)) and math.isfinite(m) else "")
    return (f'<td><span class="{cls}">{html.escape(verdict)}</span>{html.escape(mtxt)}<br>'
            f"<small>{html.escape(str(entry.get('value', '')))}</small></td>")


def write_robustness_page() -> Path:
    """Write ``book/generated/robustness.md`` from :func:`robustness_path` (the table of
    claim × perturbation), saying when it was made, from which commit, and whether the
    library has changed since (then the table is stale)."""
    from ..experiments import fingerprint

    page = repo_root() / "book" / "generated" / "robustness.md"
    page.parent.mkdir(parents=True, exist_ok=True)
    src = robustness_path()
    lines = ["# Robustness: the claims under other arithmetic and other seeds", ""]
    intro = ("Gradient descent at the edge of stability is chaotic: PyTorch picks CPU kernels by instruction set, "
             "the float rounding differs, and one trajectory differs from the next after a few hundred epochs. A "
             "claim of this book is therefore a statement about an ensemble of seeds, and it must hold whatever the "
             "kernels and whichever seeds. `make perturb` (`instab verify --perturb`) re-executes every notebook "
             "under each perturbation below, each in its own run cache, and writes this table.")
    lines += [intro, ""]
    if not src.exists():
        lines += ["```{warning}", "No perturbation check has been recorded yet (`results/robustness.json` is missing): "
                  "run `make perturb`.", "```", ""]
        page.write_text("\n".join(lines) + "\n")
        return page
    data = json.loads(src.read_text())
    stale = data.get("library_fingerprint") != fingerprint.library_fingerprint()
    perts = data["perturbations"]
    if stale:
        lines += ["```{warning}", f"This table was made from commit `{str(data.get('commit'))[:12]}` on "
                  f"{data.get('created', '?')}; the library has changed since (fingerprint "
                  f"`{data.get('library_fingerprint')}` then, `{fingerprint.library_fingerprint()}` now), so it is "
                  "**stale**: rerun `make perturb`.", "```", ""]
    else:
        lines += [f"Made on {data.get('created', '?')} from commit `{str(data.get('commit'))[:12]}` (library "
                  f"fingerprint `{data.get('library_fingerprint')}`, current) on {data.get('processor', '?')}, in "
                  f"{data.get('seconds', 0) / 60:.0f} min.", ""]
    lines += ["| column | what changed | CPU kernels | minutes |", "|---|---|---|---|"]
    for p in perts:
        env = ", ".join(f"`{k}={v}`" for k, v in p.get("env", {}).items()) or "nothing (the build's own run)"
        lines.append(f"| {p['name']} | {env} | `{p.get('cpu_capability', '?')}` | {p.get('seconds', 0) / 60:.1f} |")
    n_bad = data.get("n_failing", 0)
    lines += ["", f"**{n_bad}** claim(s) that are not *not reproduced* fail in some column." if n_bad else
              "Every claim that is not *not reproduced* passes in every column.", ""]
    head = "".join(f"<th>{html.escape(p['name'])}</th>" for p in perts)
    rows = ['<table class="claim-table robustness">',
            f"<thead><tr><th>page</th><th>claim</th><th>status</th>{head}</tr></thead><tbody>"]
    for c in data["claims"]:
        cells = "".join(_cell(c["results"].get(p["name"])) for p in perts)
        rows.append(f"<tr><td>{html.escape(c['notebook'])}</td><td><code>{html.escape(c['claim'])}</code></td>"
                    f"<td>{html.escape(c['status'].replace('_', ' '))}</td>{cells}</tr>")
    rows.append("</tbody></table>")
    lines += _raw("\n".join(rows))
    page.write_text("\n".join(lines) + "\n")
    return page


# --------------------------------------------------------------------------- paper scale, summary
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
    lines += _raw(f'<table class="claim-table paper-scale">{head}\n{body}\n</tbody></table>')
    lines += ["## Missing entries", ""]
    lines += [f"- `{r['notebook']}`: {r['reason']}" for r in missing] or ["None: every page has an archived run."]
    lines += ["", "The reasons come from `results/paper/pending.yml`; a page not listed there says *not run yet*.", ""]
    page.write_text("\n".join(lines) + "\n")
    return page


def write_summary(verdicts: Mapping[str, claims_mod.PageVerdict], paper_rows: Sequence[Mapping[str, Any]],
                  titles: Mapping[str, str], figures: Mapping[str, str], seconds: Mapping[str, float]) -> Path:
    """Write ``book/generated/summary.html`` (included by the intro): one row per page with
    its verdict at this build's scale and at the paper's, and its execution time."""
    page = repo_root() / "book" / "generated" / "summary.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    paper = {r["notebook"]: r for r in paper_rows}
    rows = ['<table class="claim-table summary">',
            "<thead><tr><th>page</th><th>reproduces</th><th>verdict at this build's scale</th>"
            "<th>at the paper's scale</th><th>time</th></tr></thead><tbody>"]
    for nid, v in verdicts.items():
        pr = paper.get(nid)
        if pr is None or pr["entry"] is None:
            pcell = "<small>no archived run</small>"
        else:
            pcell = (f'<span class="{pr["verdict"].css_class}">{html.escape(pr["verdict"].word)}</span>'
                     + (" <small>(stale)</small>" if pr["stale"] else ""))
        rows.append(f'<tr><td><a href="notebooks/{html.escape(nid)}.html">{html.escape(titles.get(nid, nid))}</a></td>'
                    f"<td>{html.escape(figures.get(nid, ''))}</td>"
                    f'<td><span class="{v.css_class}">{html.escape(v.word)}</span></td><td>{pcell}</td>'
                    f"<td>{seconds.get(nid, 0):.0f} s</td></tr>")
    rows.append("</tbody></table>")
    page.write_text("\n".join(rows) + "\n")
    return page
