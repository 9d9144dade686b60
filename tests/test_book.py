"""The book builds without warnings, and every page reads clean in headless Chromium at a
1280-pixel window: math typeset, no table left as pipe text, every image loaded, no console
error, no request for another host; every notebook page opens with its verdict and ends with its
closed provenance box, whose seeds and data copy agree with the page's recorded numbers; and,
page by page, every figure is shown at 90 % of its natural width or more with its caption, no
table is wider than the column outside a scroller and no output shows a Python repr."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

from instab_lib.book import browser, claims
from instab_lib.book import notebooks as nbs

def test_pages_draw_with_the_book_helpers():
    """Every page makes its figures with plotting.figure (two panels a row at
    most, sized for the column), colours learning rates with plotting.eta_style, and follows each
    figure with its caption "**Figure n.**" in the same or the next cell (a fast, static check;
    the browser test measures the result)."""
    problems = []
    for nid in nbs.toc_notebooks():
        cells = re.split(r"^# %%.*$", (nbs.notebooks_dir() / f"{nid}.py").read_text(), flags=re.M)
        for i, cell in enumerate(cells):
            for bad in ("plt.subplots(", "eta_color(", "lr_colors(", "tight_layout(", "DLN_RUN_COLORS"):
                if bad in cell:
                    problems.append(f"{nid}: {bad} (use plotting.figure / plotting.eta_style)")
            if "plt.show()" in cell:
                after = cell.split("plt.show()", 1)[1] + (cells[i + 1] if i + 1 < len(cells) else "")
                if "**Figure" not in after:
                    problems.append(f"{nid}: a figure without its '**Figure n.**' caption right after it")
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def html(built_html):
    return built_html  # conftest: built once per session, -W --keep-going (any Sphinx warning fails there)


@pytest.fixture(scope="module")
def reports(html, tmp_path_factory, chromium_exe):
    """Every page of the table of contents opened once, in one browser (about a second a page)."""
    exe = chromium_exe
    shots = nbs.build_dir() / "screenshots"
    t0 = time.perf_counter()
    out = {}
    with browser.serve(html) as base, browser.Browser(exe, tmp_path_factory.mktemp("chromium")) as b:
        for f in nbs.toc_files():
            shot = shots / "dln_rotations.png" if f == "notebooks/dln_rotations" else None
            out[f] = b.check(base + f"{f}.html", screenshot=shot)
    print(f"browser: {len(out)} pages in {time.perf_counter() - t0:.1f} s")
    return out


@pytest.mark.book
def test_every_page_is_built(html):
    for f in nbs.toc_files():
        assert (html / f"{f}.html").exists(), f
    claims_page = (html / "generated" / "claims.html").read_text()
    assert "dln_rotations" in claims_page and "FAIL" not in claims_page
    assert "paper preset" in claims_page
    intro = (html / "intro.html").read_text()
    assert 'class="claim-table summary"' in intro and intro.count('href="notebooks/') >= len(nbs.toc_notebooks())


@pytest.mark.book
def test_every_page_reads_clean_in_a_browser(reports):
    problems = {page: r.problems() for page, r in reports.items() if r.problems()}
    assert not problems, "\n".join(f"{page}: {p}" for page, ps in problems.items() for p in ps)
    assert reports["notebooks/dln_rotations"].n_math > 10, "MathJax did not typeset the page"
    assert reports["notebooks/dln_rotations"].n_images >= 2


@pytest.mark.book
def test_every_notebook_page_has_its_verdict_and_provenance_box(reports):
    for nid in nbs.toc_notebooks():
        text = reports[f"notebooks/{nid}"].text
        stamp = json.loads(nbs.output_paths(nid)[2].read_text())
        assert re.search(r"Verdict at this build.s scale: (reproduced|partly reproduced|not reproduced|contradicted|"
                         r"not a test|no paper claim|checks only|failing)", text), nid
        assert "How this page was produced" in text, nid
        footer = reports[f"notebooks/{nid}"].footer
        commit = re.search(r"Commit ([0-9a-f]{12})", footer.get("commit", ""))
        assert commit and stamp["commit"].startswith(commit.group(1)), nid
        assert f"CPU capability {stamp['cpu_capability']}" in footer.get("machine", ""), nid
        differs = bool(nbs.load_card(nid)["presets"].get("paper"))
        assert bool(re.search(r"At the paper.s scale(?!:)", text)) == differs, nid


@pytest.mark.book
def test_every_footer_agrees_with_the_recorded_numbers(reports):
    problems = {}
    for nid in nbs.toc_notebooks():
        numbers = claims.load_numbers(nbs.output_paths(nid)[1])
        found = browser.footer_problems(reports[f"notebooks/{nid}"].footer, numbers)
        if found:
            problems[nid] = found
    assert not problems, "\n".join(f"{nid}: {p}" for nid, ps in problems.items() for p in ps)


@pytest.mark.book
@pytest.mark.parametrize("page", nbs.toc_files())
def test_page_fits_the_column(reports, page):
    """Figures at ≥ 90 % of their natural width, each followed by its caption in order, tables
    inside the column or a scroller, no Python repr in an output (one test per page)."""
    problems = reports[page].layout_problems()
    assert not problems, f"{page}:\n" + "\n".join(problems)


@pytest.mark.book
def test_figure_page_screenshot_is_not_blank(reports):
    from PIL import Image

    pixels = np.asarray(Image.open(nbs.build_dir() / "screenshots" / "dln_rotations.png").convert("L"), dtype=float)
    assert pixels.shape[1] == browser.WINDOW_WIDTH and pixels.shape[0] > 3000
    assert pixels.std() > 20, "the screenshot is blank"
