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
* the **code folded** (:func:`fold_code_cells`): set-up cells (imports, the ``Recorder``, style
  calls) removed, every other code cell's input hidden behind a toggle (``hide-input``), except
  where a notebook tags a cell ``show-input`` because its code is the point (a library call a
  reader would copy);
* where the ``paper`` preset differs from this build's scale, a section **At the paper's scale**
  (:func:`preset_cells`): the scored claims' values at both scales side by side and the archived
  run's figures with their captions, marked stale with its date and commit when the code has
  changed, or why there is no archived run; nothing where the preset changes nothing;
* where the card has a ``cpu`` preset (sized for a CPU, archived in ``results/cpu/``), a section **At the
  cpu preset's scale** (:func:`preset_cells` too) laid out the same way, its figures captioned "Figure Cn";
* the **provenance box** at the foot, one closed ``<details>``, rebuilt from the stamp and from
  the data copy and the seeds the page recorded, so a page executed by an older runner gets
  the current box.

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
from .verdicts import VERDICT_CLASS

__all__ = ["stage_notebook", "verdict_html", "fold_code_cells", "preset_cells", "side_by_side_html",
           "is_setup_cell",
           "replace_claim_tables", "SHOW_CODE_TAG"]

#: A notebook tags a code cell with this when its code is the point: the page shows it unfolded.
SHOW_CODE_TAG = "show-input"
#: Tags that already say how a cell is shown: the build leaves such a cell alone.
DISPLAY_TAGS = frozenset({"remove-cell", "remove-input", "hide-input", "hide-cell", "hide-output", "remove-output",
                          SHOW_CODE_TAG})


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


def fold_code_cells(nb: Any) -> int:
    """Fold the code of a page: a set-up cell (:func:`is_setup_cell`) is removed (``remove-cell``;
    ``remove-input`` when it printed something, so a warning stays visible) and every other code
    cell, the parameter cells included, gets ``hide-input`` (its code behind a toggle, its
    output shown), unless it already carries a display tag (:data:`DISPLAY_TAGS`, among them
    :data:`SHOW_CODE_TAG`). Returns how many cells were tagged."""
    n = 0
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if DISPLAY_TAGS & set(tags):
            continue
        if is_setup_cell(cell):
            tags.append("remove-input" if cell.get("outputs") else "remove-cell")
        else:
            tags.append("hide-input")
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


def _figure_dir(notebook_id: str, preset: str = "paper") -> Path:
    return repo_root() / "book" / "generated" / preset / notebook_id


def _scored(r: claims_mod.ClaimResult) -> bool:
    """A claim with a verdict (not an identity, illustration or precondition check)."""
    scored = getattr(r, "scored", None)
    if scored is not None:
        return bool(scored)
    return getattr(r, "status", "") in ("reproduced", "not_reproduced", "beyond")


def _verdict_class(word: str) -> str:
    return VERDICT_CLASS.get(word, "claim-notrep")


def _value_cell(r: claims_mod.ClaimResult | None) -> str:
    if r is None:
        return "<td>—</td>"
    word = str(r.verdict)
    return (f"<td>{html.escape(r.value_str())}<br>"
            f'<span class="{_verdict_class(word)}">{html.escape(word)}</span></td>')


def side_by_side_html(ci: Sequence[claims_mod.ClaimResult], paper: Sequence[claims_mod.ClaimResult],
                      header: str = "at the paper's scale") -> str:
    """The scored claims (:func:`_scored`) with their measured value and verdict at this build's
    scale and at the paper's (or another archived preset's, named by ``header``), one row per claim, in
    words (no threshold expressions)."""
    by_id = {r.claim_id: r for r in paper}
    rows = [r for r in ci if _scored(r)] or [r for r in paper if _scored(r)]
    ci_by_id = {r.claim_id: r for r in ci}
    body = "\n".join(f"<tr><td>{html.escape(r.text)}</td>{_value_cell(ci_by_id.get(r.claim_id))}"
                     f"{_value_cell(by_id.get(r.claim_id))}</tr>" for r in rows)
    return ('<div class="table-scroll"><table class="side-by-side">\n<thead><tr><th>claim</th>'
            f"<th>at this build's scale</th><th>{html.escape(header)}</th></tr></thead>\n"
            f"<tbody>\n{body}\n</tbody></table></div>")


def _preset_changes(notebook_id: str, preset: str = "paper") -> str:
    changes = nbs.load_card(notebook_id)["presets"].get(preset) or {}
    return ", ".join(f"`{k} = {v!r}`" for k, v in changes.items())


def _paper_caption(k: int, caption: str | None, stale: bool, prefix: str = "P",
                   where: str = "at the paper's scale") -> str:
    """The caption of the k-th archived figure: its own caption (numbers of the paper-scale run, or of the
    preset's run ``where`` says) renumbered ``Figure <prefix>k``, or, for an entry archived before captions
    were kept, a pointer to the page's."""
    label = f"**Figure {prefix}{k}** ({where})."
    if caption:
        return label + " " + re.sub(r"^\s*\*\*Figure\s+\d+[^*]*\*\*\s*", "", caption)
    if stale:
        return (f"{label} Image {k} of the archived run, made by the page as it was then (its figures and their "
                "order may differ from those above); its numbers are in the table above.")
    return f"{label} Figure {k} above, from the archived run {where}; its numbers are in the table above."


#: Per archived preset: the section's title, how its figures are named (``Figure P1``), the words naming its scale
#: (figures' alt text and captions, the claims' column header), and what the section adds when the preset has no
#: archived run.
_SECTIONS = {
    "paper": ("At the paper's scale", "P", "at the paper's scale",
              " {doc}`../generated/paper_scale` lists every page's entry."),
    "cpu": ("At the cpu preset's scale", "C", "at the cpu preset", ""),
}


def preset_cells(notebook_id: str, preset: str, entry: archive.Entry | None, reason: str,
                 ci_results: Sequence[claims_mod.ClaimResult] = ()) -> list[Any]:
    """The section of an archived preset (``paper``: *At the paper's scale*; ``cpu``: *At the cpu preset's
    scale*, a run sized for a CPU), as Markdown cells: what the preset changes, then either why it has no archived
    run (``instab archive <id> --preset <preset>`` makes one) or where and when the archived run was made (stale or
    not), the scored claims at this build's scale and at the preset's side by side (:func:`side_by_side_html`),
    the claims added since, and the archived figures (staged under ``book/generated/<preset>/<id>/``) captioned
    "Figure Pn" / "Figure Cn". Nothing for a card without the preset, or whose preset changes no parameter."""
    changes = nbs.load_card(notebook_id)["presets"].get(preset)
    if not changes and (preset == "paper" or changes is None):
        return []
    title, prefix, where, pointer = _SECTIONS[preset]
    md = [f"## {title}", "", f"The `{preset}` preset changes {_preset_changes(notebook_id, preset) or 'nothing'}."]
    if entry is None:
        md[-1] += (f" No archived run of it yet: {reason}. `instab archive {notebook_id} --preset {preset}` makes one"
                   + (f";{pointer}" if pointer else "."))
        return [nbformat.v4.new_markdown_cell("\n".join(md))]
    s = entry.stamp
    where_run = (f"{s.get('device', 'cpu')}" + (f" ({s['gpu']})" if s.get("gpu") else "") if preset == "paper"
                 else f"{s.get('device', 'cpu')} with {s.get('threads', '?')} thread(s)")
    md[-1] += (f" Its run was archived in `results/{preset}/{notebook_id}/` on {entry.created[:10]} from commit "
               f"`{entry.commit[:12]}`{' (with uncommitted changes)' if s.get('dirty') else ''}, on "
               f"{where_run}, in {float(s.get('seconds', 0)) / 60:.0f} min.")
    if entry.stale:
        md[-1] += (" It is **stale**: " + "; ".join(entry.stale_reasons()) + f" (rerun `instab archive {notebook_id} "
                   f"--preset {preset}`).")
    md += ["", "The claims scored on this page, measured at both scales:", "",
           _raw_html(side_by_side_html(ci_results, entry.results(), header=where))]
    added = entry.unarchived_claims()
    if added:
        md += ["", f"Added to the page after this run was archived, so decided at this build's scale only (— above) "
               f"until the preset is archived again: {', '.join(f'`{c}`' for c in added)}."]
    dest = _figure_dir(notebook_id, preset)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for k, (fig, caption) in enumerate(zip(entry.figures, entry.captions), start=1):
        shutil.copy2(fig, dest / fig.name)
        md += ["", "```{container} figure-scroll",
               f"![{notebook_id} {where}, figure {prefix}{k}](../generated/{preset}/{notebook_id}/{fig.name})", "```",
               "", _paper_caption(k, caption, entry.stale, prefix, where)]
    return [nbformat.v4.new_markdown_cell("\n".join(md))]


def stage_notebook(notebook_id: str, executed: Path, stamp: Mapping[str, Any],
                   results: Sequence[claims_mod.ClaimResult], dest: Path,
                   robustness_note: str = "") -> claims_mod.PageVerdict:
    """Write the book's copy of an executed notebook to ``dest`` (see the module docstring);
    ``robustness_note`` (HTML, :func:`instab_lib.book.robustness.page_note`) goes under the verdict.
    Returns the page's verdict at this build's scale."""
    nb = nbformat.read(executed, as_version=4)
    numbers_path = executed.with_name(f"{notebook_id}.numbers.json")
    numbers = claims_mod.load_numbers(numbers_path) if numbers_path.exists() else {}
    card = nbs.load_card(notebook_id)
    stamp = dict(stamp)  # a stamp written by an older runner lacks the newer fields: fill them in
    stamp["data_source"] = stamp.get("data_source") or provenance.recorded_data_source(numbers)
    if stamp.get("recorded_seeds") is None:
        stamp["recorded_seeds"] = provenance.recorded_seeds(numbers)
    stamp.setdefault("data", str(card.get("data", "")))
    entry = archive.load(notebook_id)
    reason = archive.pending_reasons().get(notebook_id, archive.NOT_RUN)
    same_scale = not (card["presets"].get("paper") or {})
    ci = claims_mod.page_verdict(results)
    fold_code_cells(nb)
    nb.cells = [c for c in nb.cells if not {"provenance", "page-verdict", "paper-scale", "cpu-scale"}
                & set(c.get("metadata", {}).get("tags", []))]
    replace_claim_tables(nb, results)
    note = _sharpness_note(notebook_id, executed) + robustness_note
    verdict = nbformat.v4.new_markdown_cell(_raw_html(verdict_html(ci, entry, reason, same_scale, note)))
    verdict.metadata["tags"] = ["page-verdict"]
    _insert_after_title(nb, verdict)
    for preset, archived in (("paper", entry), ("cpu", archive.load(notebook_id, "cpu"))):
        why = reason if preset == "paper" else archive.pending_reasons("cpu").get(notebook_id, archive.NOT_RUN)
        for cell in preset_cells(notebook_id, preset, archived, why, results):
            cell.metadata["tags"] = [f"{preset}-scale"]
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
