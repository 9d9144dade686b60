"""The page checker of the browser test finds what a reader would see wrong, on fixture pages
(tests/fixtures/browser): a clean page passes; a page with a pipe-text table, raw TeX in prose
and in an output, a missing image, a console error, an emoji and a request for a CDN fails on
each of them; a page with a figure shrunk below 90 % of its natural width, a table wider than
the column outside a scroller, Python reprs in outputs, a figure without its caption and
captions out of order, and a provenance box that contradicts the recorded numbers fails on each."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from instab_lib.book import browser

FIXTURES = Path(__file__).parent / "fixtures" / "browser"


@pytest.fixture(scope="module")
def reports(tmp_path_factory, chromium_exe):
    profile = tmp_path_factory.mktemp("chromium")
    t0 = time.perf_counter()
    with browser.serve(FIXTURES) as base, browser.Browser(chromium_exe, profile) as b:
        out = {name: b.check(base + f"{name}.html") for name in ("clean", "broken", "layout")}
    assert time.perf_counter() - t0 < 60
    return out


def test_a_clean_page_has_no_problem(reports):
    r = reports["clean"]
    assert r.title == "clean" and r.n_images == 2
    assert r.problems() == []


def test_a_pipe_text_table_fails(reports):
    assert reports["broken"].pipe_tables, "the raw Markdown claim table was not detected"


def test_raw_tex_in_prose_and_outputs_fails(reports):
    tex = " ".join(reports["broken"].raw_tex)
    assert "$S_0$" in tex and "\\eta" in tex and "\\lambda" in tex


def test_missing_images_console_errors_and_emoji_fail(reports):
    r = reports["broken"]
    assert r.broken_images == ["missing.png"]
    assert any("boom from the page" in e for e in r.console_errors)
    assert any("missing.png" in e for e in r.console_errors)  # the failed load is logged too
    assert r.emoji


def test_requests_for_other_hosts_are_caught_and_do_not_leave(reports):
    assert reports["broken"].external_requests == ["http://cdn.example.invalid/mathjax/tex-chtml.js"]
    assert any("ERR_NAME_NOT_RESOLVED" in e or "tex-chtml.js" in e for e in reports["broken"].console_errors)


#: The numbers the fixture pages' provenance boxes are held against.
NUMBERS = {"n_seeds": 5, "seeds": [0, 1, 2, 3, 4], "data_source": "Fashion-MNIST, Debian package"}


def test_a_clean_page_fits_its_column(reports):
    r = reports["clean"]
    assert r.layout_problems() == []
    assert r.footer["seeds"].startswith("Seeds: 0, 1, 2, 3, 4")
    assert browser.footer_problems(r.footer, NUMBERS) == []


def test_a_figure_shown_below_90_percent_of_its_width_fails(reports):
    small = reports["layout"].small_figures
    assert len(small) == 1 and small[0].startswith("wide.png at 740 of 1000 px")


def test_a_table_wider_than_the_column_outside_a_scroller_fails(reports):
    wide = reports["layout"].wide_tables
    assert len(wide) == 1 and "a scoreboard wider than the column" in wide[0] and "1068 px" in wide[0]


def test_python_reprs_in_outputs_fail(reports):
    reprs = " ".join(reports["layout"].reprs)
    assert "np.float64(" in reprs and "{'est':" in reprs and "array(" in reprs


def test_figures_without_their_caption_or_out_of_order_fail(reports):
    problems = reports["layout"].caption_problems
    assert len(problems) == 2
    assert "wide.png is not followed by a caption" in problems[0]
    assert "caption 'Figure 3' where 'Figure 1' was due" in problems[1]


def test_a_footer_that_contradicts_the_recorded_numbers_fails(reports):
    problems = browser.footer_problems(reports["layout"].footer, NUMBERS)
    text = " ".join(problems)
    assert "the box says no seeds; the page recorded n_seeds = 5" in text
    assert "lists seeds" in text and "the page recorded [0, 1, 2, 3, 4]" in text
    assert "the box says the data copy was not recorded" in text
    # the same box is honest about a page that recorded neither
    assert browser.footer_problems(reports["layout"].footer, {}) == []
    assert browser.footer_problems({}, NUMBERS) == ["no provenance box (details.provenance with data-field lines)"]
    # a box that lists other seeds, or names a copy the page did not record
    other = {"seeds": "Seeds: 0, 1, 2 (3 seeds, recorded by the page); seed offset 0",
             "data": "Data: fashion-mnist; copy used: somewhere else"}
    text = " ".join(browser.footer_problems(other, NUMBERS))
    assert "the page recorded the data copy 'Fashion-MNIST, Debian package'" in text
    assert "lists 3 seeds; the page recorded n_seeds = 5" in text
    assert "names a data copy the page did not record" in browser.footer_problems(other, {})[0]
