"""From an executed notebook to a book page: what the build adds to the copy it stages.

:func:`stage_notebook` reads ``_build/executed/<label>/<id>.ipynb`` and writes
``book/notebooks/<id>.ipynb`` with

* a one-line **verdict** right under the title (:func:`verdict_html`), drawn from the card's
  claims evaluated on the run's numbers (:func:`instab_lib.book.verdicts.page_verdict`: the paper
  claims, with the readings, our own claims and the checks counted apart), with the verdict at the
  paper's scale beside it, and on pages that discuss sharpness values a line pointing to the
  intro's Findings box (:mod:`instab_lib.book.findings`);
* the **claim table** (the output of ``rec.report()``) re-rendered from the same evaluation
  (:func:`replace_claim_tables`), so the table and the verdict line read one field;
* the **set-up cells** (imports, the ``Recorder``, style calls) hidden: tagged
  ``remove-cell`` (or ``remove-input`` when they printed something), which myst-nb honours
  (:func:`hide_setup_cells`);
* a section **At the paper's scale** (:func:`paper_cells`): the archived entry's claim
  table and figures, marked stale with its date and commit when the code has changed, or
  why there is none;
* the **provenance box** at the foot, rebuilt from the stamp (and the data copy the page
  recorded), so a page executed by an older runner gets the current box.

The executed notebook itself is left as it is.
"""

from __future__ import annotations

import ast
import html
import re
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import nbformat

from ..experiments import repo_root
from . import archive, findings
from . import claims as claims_mod
from . import notebooks as nbs
from . import provenance

__all__ = ["stage_notebook", "verdict_html", "hide_setup_cells", "paper_cells", "is_setup_cell", "replace_claim_tables"]

HIDE_TAGS = frozenset({"remove-cell", "remove-input", "hide-input", "hide-cell", "parameters", "injected-parameters"})


def _raw_html(block: str) -> str:
    return "```{raw} html\n" + block + "\n```"


def _verdict_span(v: claims_mod.PageVerdict) -> str:
    return f'<span class="{v.css_class}">{html.escape(v.word)}</span>'


def _verdict_words(v: claims_mod.PageVerdict) -> str:
    if v.word == "checks only":
        return f"checks only: {html.escape(v.reason)} (no claim of the papers is scored on this page)"
    return f"{_verdict_span(v)} ({html.escape(v.reason)})"


def verdict_html(ci: claims_mod.PageVerdict, paper: archive.Entry | None, paper_reason: str,
                 same_scale: bool, note: str = "") -> str:
    """The verdict line: the page's verdict at this build's scale (its paper claims, with the
    readings, our own claims and the checks counted apart), then at the paper preset; ``note``
    (HTML) follows it, e.g. the pointer to the Findings box on pages that discuss sharpness values."""
    line = f'<p class="page-verdict"><strong>Verdict</strong> at this build\'s scale: {_verdict_words(ci)}. '
    if paper is not None:
        pv = claims_mod.page_verdict(paper.results())
        stale = " <strong>stale</strong>," if paper.stale else ""
        line += (f"<strong>At the paper's scale</strong>: {_verdict_words(pv)} (archived{stale} "
                 f"{html.escape(paper.created[:10])}, commit <code>{html.escape(paper.commit[:12])}</code>).")
    elif same_scale:
        line += "This is also the paper's scale (the <code>paper</code> preset changes nothing)."
    else:
        line += f"<strong>At the paper's scale</strong>: no archived run ({html.escape(paper_reason)})."
    return line + "</p>" + note


def replace_claim_tables(nb: Any, results: Sequence[claims_mod.ClaimResult]) -> int:
    """Give every cell that shows ``rec.report()`` the claim table of ``results`` (the build's
    evaluation, the field the verdict line and the claims page read) in place of the table the
    kernel printed; returns how many cells."""
    n = 0
    table = claims_mod.ClaimTable(results)
    for cell in nb.cells:
        if cell.get("cell_type") != "code" or not cell.get("source", "").strip().endswith("rec.report()"):
            continue
        cell["outputs"] = [nbformat.v4.new_output("display_data", data={"text/html": table._repr_html_(),
                                                                          "text/plain": str(table)})]
        n += 1
    return n


def _sharpness_note(notebook_id: str, executed: Path) -> str:
    if notebook_id not in findings.SHARPNESS_PAGES:
        return ""
    src = executed.with_name(f"{findings.FINDING_PAGE}.numbers.json")
    numbers = claims_mod.load_numbers(src) if src.exists() else None
    return findings.crosslink_html(findings.lanczos_magnitudes(numbers))


def is_setup_cell(cell: Mapping[str, Any]) -> bool:
    """A code cell that only imports, creates the ``Recorder`` or calls a function without
    arguments (``apply_style()``): nothing a reader needs to see."""
    if cell.get("cell_type") != "code":
        return False
    try:
        body = ast.parse(cell.get("source", "")).body
    except SyntaxError:
        return False
    setup = False
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            setup = True
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and \
                isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "Recorder":
            setup = True
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and not node.value.args
                  and not node.value.keywords):
            return False
    return setup


def hide_setup_cells(nb: Any) -> int:
    """Tag every set-up cell (:func:`is_setup_cell`) that carries no display tag yet; returns
    how many. A cell that printed something keeps its output (so a warning stays visible)."""
    n = 0
    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if is_setup_cell(cell) and not HIDE_TAGS & set(tags):
            tags.append("remove-input" if cell.get("outputs") else "remove-cell")
            n += 1
    return n


def _insert_after_title(nb: Any, cell: Any) -> None:
    """Insert ``cell`` right after the page's ``# Title`` line, splitting the first Markdown
    cell when the title shares it with the page's opening text."""
    for i, c in enumerate(nb.cells):
        if c.cell_type != "markdown":
            continue
        lines = c.source.splitlines()
        k = next((j for j, ln in enumerate(lines) if re.match(r"^# \S", ln)), None)
        if k is None:
            continue
        head, rest = "\n".join(lines[: k + 1]), "\n".join(lines[k + 1:]).strip("\n")
        c.source = head
        new = [cell] + ([nbformat.v4.new_markdown_cell(rest)] if rest.strip() else [])
        nb.cells[i + 1: i + 1] = new
        return
    nb.cells.insert(0, cell)


def _figure_dir(notebook_id: str) -> Path:
    return repo_root() / "book" / "generated" / "paper" / notebook_id


def paper_cells(notebook_id: str, entry: archive.Entry | None, reason: str, same_scale: bool) -> list[Any]:
    """The section *At the paper's scale* (Markdown cells; figures are staged under
    ``book/generated/paper/<id>/``)."""
    md = ["## At the paper's scale", ""]
    if entry is None:
        if same_scale:
            md += ["The `paper` preset of this page changes no parameter: the run above is at the paper's scale.",
                   "No archived copy of it is kept yet."]
        else:
            md += [f"No archived `paper` run of this page yet: {reason}. "
                   f"`instab archive {notebook_id} --preset paper` makes one; {{doc}}`../generated/paper_scale` "
                   "lists every page's entry."]
        return [nbformat.v4.new_markdown_cell("\n".join(md))]
    s = entry.stamp
    minutes = float(s.get("seconds", 0)) / 60
    gpu = f" ({s['gpu']})" if s.get("gpu") else ""
    md += [f"The numbers, figures and claim table below are those of the `paper` preset's run archived in "
           f"`results/paper/{notebook_id}/`: executed {entry.created} from commit `{entry.commit[:12]}`"
           f"{' (with uncommitted changes)' if s.get('dirty') else ''}, library fingerprint "
           f"`{s.get('library_fingerprint')}`, on {s.get('device', 'cpu')}{gpu}"
           f" with CPU capability `{s.get('cpu_capability', '?')}`, {s.get('threads', '?')} threads, in "
           f"{minutes:.1f} min. Parameters given: "
           + (", ".join(f"`{k}={v!r}`" for k, v in (s.get("parameters") or {}).items()) or "none") + "."]
    if entry.stale:
        md += ["", "```{warning}", "This archived run is **stale**: " + "; ".join(entry.stale_reasons())
               + f". It was made on {entry.created} from commit `{entry.commit[:12]}`; rerun "
               f"`instab archive {notebook_id} --preset paper`.", "```"]
    md += ["", _raw_html(claims_mod.claims_html(entry.results(), with_notebook=False))]
    dest = _figure_dir(notebook_id)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for fig in entry.figures:
        shutil.copy2(fig, dest / fig.name)
        md += ["", f"![{notebook_id} at the paper's scale, {fig.stem}](../generated/paper/{notebook_id}/{fig.name})"]
    return [nbformat.v4.new_markdown_cell("\n".join(md))]


def stage_notebook(notebook_id: str, executed: Path, stamp: Mapping[str, Any],
                   results: Sequence[claims_mod.ClaimResult], dest: Path) -> claims_mod.PageVerdict:
    """Write the book's copy of an executed notebook to ``dest`` (see the module docstring);
    returns the page's verdict at this build's scale."""
    nb = nbformat.read(executed, as_version=4)
    numbers_path = executed.with_name(f"{notebook_id}.numbers.json")
    numbers = claims_mod.load_numbers(numbers_path) if numbers_path.exists() else {}
    card = nbs.load_card(notebook_id)
    stamp = dict(stamp)  # a stamp written by an older runner lacks the newer fields: fill them in
    stamp["data_source"] = stamp.get("data_source") or provenance.recorded_data_source(numbers)
    stamp.setdefault("data", str(card.get("data", "")))
    entry = archive.load(notebook_id)
    reason = archive.pending_reasons().get(notebook_id, archive.NOT_RUN)
    same_scale = not (card["presets"].get("paper") or {})
    ci = claims_mod.page_verdict(results)
    hide_setup_cells(nb)
    nb.cells = [c for c in nb.cells if not {"provenance", "page-verdict", "paper-scale"}
                & set(c.get("metadata", {}).get("tags", []))]
    replace_claim_tables(nb, results)
    note = _sharpness_note(notebook_id, executed)
    verdict = nbformat.v4.new_markdown_cell(_raw_html(verdict_html(ci, entry, reason, same_scale, note)))
    verdict.metadata["tags"] = ["page-verdict"]
    _insert_after_title(nb, verdict)
    for cell in paper_cells(notebook_id, entry, reason, same_scale):
        cell.metadata["tags"] = ["paper-scale"]
        nb.cells.append(cell)
    provenance.set_provenance_cell(nb, stamp)
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    return ci


_WARNING = re.compile(r"\b\w*Warning\b")
_TEX_IN_TEXT = re.compile(r"\$(?:[^$\n]{0,200}[\\_^{}][^$\n]{0,200}|[A-Za-z])\$|\\(?:frac|tfrac|lambda|eta|theta|"
                          r"gamma|beta|alpha|nabla|mathrm|mathbf|sqrt|cdot|le|ge|approx)\b")


def output_problems(nb: Any) -> list[str]:
    """What a reader should not see in an executed notebook's outputs: warnings printed to
    stderr, and raw TeX in plain-text outputs (printed text, or a value shown only as
    text/plain), which no browser typesets. Markdown, HTML and LaTeX outputs are typeset."""
    problems = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text = "".join(out.get("text", ""))
                if out.get("name") == "stderr" and _WARNING.search(text):
                    problems.append(f"cell {i}: a warning in the output: {text.strip()[:200]!r}")
                    continue
            elif out.get("output_type") in ("execute_result", "display_data"):
                data = out.get("data", {})
                if set(data) & {"text/markdown", "text/html", "text/latex", "image/png", "image/svg+xml"}:
                    continue
                text = "".join(data.get("text/plain", ""))
            else:
                continue
            m = _TEX_IN_TEXT.search(text)
            if m:
                problems.append(f"cell {i}: raw TeX in a text output: {text[max(0, m.start() - 40): m.end() + 40]!r}")
    return problems
