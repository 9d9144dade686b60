"""One verdict per claim, everywhere, in the built book: every claim's verdict on its page (the claim
table and every generated sentence), on the claims page and in claims.json agree, column by column;
claims.json and claims.csv exist and hold every claim; the scoreboard lists each paper claim once; the
intro's totals are the claims page's; the claims and robustness pages fit the column and stay short."""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict

import pytest

from instab_lib.book import pages, verdicts
from instab_lib.book import notebooks as nbs

SPAN = re.compile(r'data-claim="([^"]+)" data-column="([^"]+)" data-verdict="([^"]+)"')


@pytest.fixture(scope="module")
def html(built_html):
    return built_html


@pytest.fixture(scope="module")
def record(html):
    return json.loads((html / pages.JSON_NAME).read_text())


def spans(text: str) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    for key, column, verdict in SPAN.findall(text):
        out[(key, column)].add(verdict)
    return out


@pytest.mark.book
def test_claims_json_and_csv_hold_every_claim(html, record):
    cards = {nid: nbs.load_card(nid)["claims"] for nid in nbs.toc_notebooks()}
    keys = [f"{c['notebook']}/{c['id']}" for c in record["claims"]]
    assert sorted(keys) == sorted(f"{nid}/{c['id']}" for nid, cs in cards.items() for c in cs)
    assert len(keys) == len(set(keys))
    names = [c["name"] for c in record["columns"]]
    assert names[0] == "default" and names[-1] == "paper" and all(c["commit"] for c in record["columns"][:-1])
    for c in record["claims"]:
        assert set(c["verdicts"]) == set(names)
        assert {"notebook", "id", "kind", "heading", "source", "text", "value", "threshold", "effect"} <= set(c)
        assert c["verdicts"]["default"] in verdicts.VERDICT_WORDS[c["kind"]].values()
    rows = list(csv.DictReader((html / pages.CSV_NAME).open()))
    assert [(r["notebook"], r["id"], r["verdict_default"], r["verdict_paper"]) for r in rows] == [
        (c["notebook"], c["id"], c["verdicts"]["default"], c["verdicts"]["paper"] or "") for c in record["claims"]]
    assert (html / "robustness.csv").exists()
    claims_page = (html / "generated" / "claims.html").read_text()
    assert f'href="../{pages.JSON_NAME}"' in claims_page and f'href="../{pages.CSV_NAME}"' in claims_page


@pytest.mark.book
def test_a_claim_shows_one_verdict_everywhere(html, record):
    """Its page (claim table and generated prose), the claims page and claims.json, per column."""
    want = {(f"{c['notebook']}/{c['id']}", col): v for c in record["claims"] for col, v in c["verdicts"].items()
            if v is not None}
    want.update({(f"{c['notebook']}/{c['id']}", "combined"): c["combined"] for c in record["claims"]})
    for nid in nbs.toc_notebooks():
        page = spans((html / "notebooks" / f"{nid}.html").read_text())
        mine = [c for c in record["claims"] if c["notebook"] == nid]
        for c in mine:  # every claim is in its page's table, with the verdict of this build's run
            assert page[(f"{nid}/{c['id']}", "default")] == {c["verdicts"]["default"]}, (nid, c["id"])
        for (key, column), seen in page.items():
            assert seen == {want[(key, column)]}, (nid, key, column, seen)
    board = spans((html / "generated" / "claims.html").read_text())
    for c in record["claims"]:
        key = f"{c['notebook']}/{c['id']}"
        assert board[(key, "default")] == {c["verdicts"]["default"]}, key
        if c["kind"] in verdicts.SCORED_KINDS:
            assert board[(key, "combined")] == {c["combined"]}, key
    for (key, column), seen in board.items():
        assert seen == {want[(key, column)]}, (key, column, seen)


@pytest.mark.book
def test_the_scoreboard_counts_paper_claims_once_and_the_intro_agrees(html, record):
    text = (html / "generated" / "claims.html").read_text()
    board = text.split('class="claim-table scoreboard"')[1].split("</table>")[0]
    rows = re.findall(r'<tr data-claim="([^"]+)"', board)
    paper = [f"{c['notebook']}/{c['id']}" for c in record["claims"] if c["kind"] == "paper"]
    assert sorted(rows) == sorted(paper) and len(rows) == len(set(rows))
    tally: dict[str, int] = defaultdict(int)
    for c in record["claims"]:
        if c["kind"] == "paper":
            tally[c["verdicts"]["default"]] += 1
    counts = pages.count_text(tally)
    assert f"at CI scale: {counts}" in text
    intro = (html / "intro.html").read_text()
    total = re.search(r'<tr class="total">(.*?)</tr>', intro, re.S).group(1)
    assert f"<td>{counts}</td>" in total
    for paper_name in ("A", "B"):
        assert f'data-paper="{paper_name}"' in intro
    assert 'id="findings"' in intro and "% low" in intro and "|cos|" in intro


@pytest.mark.book
def test_sharpness_pages_point_to_the_findings(html):
    from instab_lib.book import findings

    for nid in nbs.toc_notebooks():
        text = (html / "notebooks" / f"{nid}.html").read_text()
        assert ('intro.html#findings' in text) == (nid in findings.SHARPNESS_PAGES), nid


@pytest.mark.book
def test_claims_and_robustness_pages_fit_the_column_and_stay_short(html, chromium_exe, tmp_path):
    """At a 1280 px window no table of these pages is wider than the column outside a scroller, and
    the pages stay far shorter than the 51,000 px and 20,000 px they were."""
    from instab_lib.book import browser

    probe = ("(() => { const col = document.querySelector('main article') || document.body;"
             " const cw = col.getBoundingClientRect().width;"
             " const wide = [...document.querySelectorAll('table')].filter(t => {"
             "   let p = t.parentElement; while (p && p !== document.body) {"
             "     if (getComputedStyle(p).overflowX === 'auto') return false; p = p.parentElement; }"
             "   return t.getBoundingClientRect().width > cw + 1; }).length;"
             " return JSON.stringify({h: document.documentElement.scrollHeight, wide}); })()")
    limits = {"generated/claims": 25000, "generated/robustness": 8000, "intro": 12000}
    with browser.serve(html) as base, browser.Browser(chromium_exe, tmp_path / "chromium") as b:
        for page, limit in limits.items():
            target = b.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            s = b.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            try:
                b.call("Page.enable", session=s)
                b.call("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900, "deviceScaleFactor": 1,
                                                              "mobile": False}, session=s)
                b.call("Page.navigate", {"url": base + page + ".html"}, session=s)
                b._wait_event("Page.loadEventFired", s, 60)
                facts = json.loads(b.call("Runtime.evaluate", {"expression": probe, "returnByValue": True},
                                          session=s)["result"]["value"])
            finally:
                b.call("Target.closeTarget", {"targetId": target})
            assert facts["wide"] == 0, (page, facts)
            assert facts["h"] < limit, (page, facts)
