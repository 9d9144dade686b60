"""The page checker of the browser test finds what a reader would see wrong, on fixture pages
(tests/fixtures/browser): a clean page passes; a page with a pipe-text table, raw TeX in prose
and in an output, a missing image, a console error, an emoji and a request for a CDN fails on
each of them."""

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
        out = {name: b.check(base + f"{name}.html") for name in ("clean", "broken")}
    assert time.perf_counter() - t0 < 60
    return out


def test_a_clean_page_has_no_problem(reports):
    r = reports["clean"]
    assert r.title == "clean" and r.n_images == 1
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
