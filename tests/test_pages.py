"""The generated pages and files: the record of every claim in every column, the claims page's
scoreboard (only paper claims counted, each claim once), claims.json/claims.csv, the robustness
page (only the claims whose outcome differs) and the intro's bottom line."""

import csv
import io
import json
import re

import pytest

from instab_lib.book import claims, pages, perturb, record, robustness, summary
from instab_lib.experiments import fingerprint, stats

CARD = [
    {"id": "up", "kind": "paper", "paper": "eos", "source": "B Fig 1 caption: “…”", "text": "rises", "value": "a",
     "above": 1.0, "null": 1.0},
    {"id": "flat", "kind": "paper", "paper": "flatness", "source": "A Fig 4 caption: “…”", "text": "flatter",
     "value": "b", "below": 0.9, "null": 1.0},
    {"id": "worse", "kind": "reading", "paper": "past_the_limit", "source": "reads A Fig 5", "text": "better",
     "value": "c", "above": 0.0, "null": 0.0},
    {"id": "own", "kind": "beyond", "source": "ours", "text": "ours", "value": "a", "above": 1.0, "null": 1.0},
    {"id": "ident", "kind": "identity", "text": "closed form", "value": "d", "check": "x < 1e-9", "null": 1.0},
]
NUMBERS = {"a": stats.Estimate(1.5, 1.2, 1.8, 0.1, 5).to_dict(), "b": stats.Estimate(1.0, 0.95, 1.05, 0.03, 5).to_dict(),
           "c": stats.Estimate(-0.02, -0.03, -0.01, 0.005, 5).to_dict(), "d": 0.0}
PAPER_NUMBERS = dict(NUMBERS, b=stats.Estimate(0.5, 0.4, 0.6, 0.03, 10).to_dict())


def _record(perturbed=None):
    default = claims.evaluate_claims(CARD, NUMBERS, "nb")
    paper = claims.evaluate_claims(CARD, PAPER_NUMBERS, "nb")
    cols = [record.Column("default", "this build"), record.Column("seeds+1000", "seeds", "abc", "Some CPU"),
            record.Column("paper", "archive")]
    return record.build_record(default, paper, perturbed or {}, cols)


@pytest.fixture
def tmp_book(tmp_path, monkeypatch):
    for mod in (pages, summary, robustness):
        monkeypatch.setattr(mod, "repo_root", lambda: tmp_path)
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "paper_claims.yml").write_text((fingerprint._package_dir().parent / "book" /
                                                          "paper_claims.yml").read_text())
    return tmp_path


def test_combined_verdict_is_reproduced_only_where_every_column_agrees():
    assert record.combined({"default": "reproduced", "seeds+1000": "reproduced", "paper": "reproduced"},
                           "paper") == ("reproduced", "in all 3 column(s)")
    word, detail = record.combined({"default": "not reproduced", "seeds+1000": None, "paper": "reproduced"}, "paper")
    assert word == "mixed" and detail == "not reproduced at default; reproduced at paper"
    assert record.combined({"default": "not a test", "paper": "not a test"}, "paper")[0] == "not a test"
    rec = {c.id: c for c in _record({("nb", "up"): {"seeds+1000": ("not resolved", "1.1 [0.9, 1.3]")}}).claims}
    assert rec["up"].verdicts == {"default": "reproduced", "seeds+1000": "not reproduced", "paper": "reproduced"}
    assert rec["up"].combined == "mixed" and rec["up"].differing() == ["seeds+1000"]
    assert rec["flat"].combined == "mixed" and rec["flat"].differing() == []  # CI vs paper is not robustness
    assert rec["ident"].verdicts["default"] == "pass" and rec["own"].verdicts["default"] == "holds"


def test_key_effect_names_one_estimate():
    assert record.key_effect(NUMBERS["a"])["text"] == "1.5 [1.2, 1.8]"
    many = record.key_effect({"1000": NUMBERS["a"], "64": NUMBERS["b"]})
    assert many["text"] == "1000: 1.5 [1.2, 1.8] (+1 more)" and many["lo"] == 1.2
    assert record.key_effect({"delta_bic": 10.09, "above_lo": 0.005, "x": 1})["text"] == \
        "delta_bic 10.09, above_lo 0.005, …"


def test_scoreboard_counts_only_paper_claims_each_once(tmp_book):
    rec = _record()
    board = pages.scoreboard(rec)
    keys = [c.key for row in board for c in row["paper"]]
    assert sorted(keys) == ["nb/flat", "nb/up"] and len(keys) == len(set(keys))
    rows = {r["key"]: r for r in board}
    assert rows["eos"]["verdict"] == "reproduced" and rows["flatness"]["verdict"] == "mixed"
    assert rows["past_the_limit"]["verdict"] == "not tested" and [c.id for c in rows["past_the_limit"]["readings"]] \
        == ["worse"]
    text = pages.write_claims_page(rec).read_text()
    scoreboard_html = text.split("## The papers' claims")[1].split("## Our readings")[0]
    assert len(re.findall(r'<tr data-claim="nb/(up|flat)"', scoreboard_html)) == 2
    assert "nb/worse" not in scoreboard_html and "nb/own" not in scoreboard_html and "nb/ident" not in scoreboard_html
    assert "**2 paper claims**" in text and "at CI scale: 1 reproduced, 1 not reproduced" in text
    assert "at the paper preset: 2 reproduced" in text and "over every column: 1 reproduced, 1 mixed" in text
    for key in ("nb/worse", "nb/own", "nb/ident"):  # every other claim once, in its own section
        assert len(re.findall(f'<tr data-claim="{key}"', text)) == 1
    assert "<details" in text.split("## Checks")[1] and "claims.json" in text and "claims.csv" in text
    assert 'class="table-scroll"' in scoreboard_html and "|---|" not in text


def test_claims_json_and_csv_hold_every_claim_and_agree_with_the_page(tmp_book):
    rec = _record({("nb", "up"): {"seeds+1000": ("holds", "1.5")}})
    data = json.loads(rec.write_json(tmp_book / "claims.json").read_text())
    assert [c["id"] for c in data["claims"]] == [c["id"] for c in CARD]
    up = data["claims"][0]
    assert up["kind"] == "paper" and up["heading"] == "eos" and up["source"].startswith("B Fig 1")
    assert up["value"]["lo"] == 1.2 and up["effect"]["text"] == "1.5 [1.2, 1.8]" and up["threshold"] == "lo > 1"
    assert up["verdicts"] == {"default": "reproduced", "seeds+1000": "reproduced", "paper": "reproduced"}
    assert [c["name"] for c in data["columns"]] == ["default", "seeds+1000", "paper"]
    rows = list(csv.DictReader(io.StringIO(rec.csv_text())))
    assert [(r["id"], r["verdict_default"], r["verdict_paper"]) for r in rows] == [
        (c["id"], c["verdicts"]["default"], c["verdicts"]["paper"]) for c in data["claims"]]
    page = pages.write_claims_page(rec).read_text()
    for c in data["claims"]:
        for col in ("default", "paper"):
            spans = re.findall(rf'data-claim="nb/{c["id"]}" data-column="{col}" data-verdict="([^"]+)"', page)
            assert spans == [c["verdicts"][col]], (c["id"], col, spans)


def test_robustness_page_shows_only_the_claims_whose_outcome_differs(tmp_book):
    assert "No perturbation check has been recorded" in robustness.write_page(_record(), None).read_text()
    data = {"created": "2026-12-01 12:00", "commit": "abc", "processor": "AMD EPYC", "library_fingerprint": "old",
            "seconds": 60, "n_failing": 0,
            "perturbations": [{"name": "seeds+1000", "env": {"INSTAB_SEED_OFFSET": "1000"}, "cpu_capability": "AVX512",
                               "seconds": 10, "commit": "abcdef1234567", "processor": "AMD EPYC"}],
            "claims": [{"notebook": "nb", "claim": "up", "kind": "paper",
                        "results": {"seeds+1000": {"outcome": "not resolved", "verdict": "not reproduced", "ok": True,
                                                   "value": "1.1 [0.9, 1.3]", "margin": 1.0}}},
                       {"notebook": "nb", "claim": "flat", "kind": "paper",
                        "results": {"seeds+1000": {"outcome": "not resolved", "verdict": "not reproduced", "ok": True,
                                                   "value": "1", "margin": 0.0}}}]}
    cols = [record.Column("default", "this build", "fedcba987654", "Intel Xeon", "AVX512"),
            *robustness.columns(data), record.Column("paper", "archive")]
    rec = record.build_record(claims.evaluate_claims(CARD, NUMBERS, "nb"), None, robustness.outcomes(data), cols)
    text = robustness.write_page(rec, data, stale="the library has changed").read_text()
    assert "stale" in text and "robustness.csv" in text
    assert "<code>abcdef123456</code>" in text and "AMD EPYC" in text and "<code>fedcba987654</code>" in text
    assert 'data-claim="nb/up"' in text and 'data-claim="nb/flat"' not in text  # flat: the same in both columns
    assert "**1** of the 5 claims change their outcome" in text
    rows = list(csv.reader(io.StringIO(robustness.csv_text(data))))
    assert rows[0][:4] == ["notebook", "claim", "kind", "verdict_seeds+1000"] and len(rows) == 3


def test_perturbation_rows_count_failing_checks_not_flips():
    default = claims.evaluate_claims(CARD, NUMBERS, "nb")
    shifted = claims.evaluate_claims(CARD, dict(NUMBERS, a=stats.Estimate(1.1, 0.9, 1.3, 0.1, 5).to_dict()), "nb")
    perts = [perturb.Perturbation("native"), perturb.Perturbation("seeds+1000", {"INSTAB_SEED_OFFSET": "1000"})]
    table = perturb.table_rows({"native": default, "seeds+1000": shifted}, perts)
    assert [r["claim"] for r in perturb.outcome_flips(table)] == ["up", "own"]
    assert all(v["ok"] for r in table for v in r["results"].values())  # flips are not failures
    broken = claims.evaluate_claims(CARD, dict(NUMBERS, d=1.0), "nb")
    table = perturb.table_rows({"native": default, "seeds+1000": broken}, perts)
    assert [r["claim"] for r in table if not all(v["ok"] for v in r["results"].values())] == ["ident"]


def test_bottom_line_counts_the_scoreboard(tmp_book):
    rec = _record()
    a = summary.paper_bottom_line(rec, "A")
    b = summary.paper_bottom_line(rec, "B")
    assert "1 of its claims are tested" in a and "1 mixed" in a and "progressive flattening" in a
    assert "1 of its claims are tested" in b and "1 reproduced" in b and "stable and unstable phases" in b
    assert "Our sharper readings" in a and "1 contradicted" in a  # A's reading, apart


def test_perturbations_cover_kernels_seeds_and_initialisation():
    names = [p.name for p in perturb.perturbations()]
    assert names[0] == "native" and names[-2:] == [f"seeds+{perturb.SEED_SHIFT}", "init-author"]
    assert perturb.perturbations()[-1].env == {"INSTAB_INIT": "author"}
    if fingerprint.cpu_capability() != "DEFAULT":
        assert "kernels-default" in names
    for p in perturb.perturbations()[1:]:
        assert p.label.startswith("perturb-") and "perturb" in str(p.runs_dir())


def test_the_committed_perturbation_table_has_outcomes_for_every_claim():
    data = robustness.load()
    assert data is not None
    for row in data["claims"]:
        assert row["kind"] and all(v["outcome"] in ("holds", "not resolved", "contradicted", "not a test", "pass",
                                                    "FAIL", "error") for v in row["results"].values()), row
    assert {p["name"] for p in data["perturbations"]} >= {"native", f"seeds+{perturb.SEED_SHIFT}"}
    assert all(p.get("commit") and p.get("processor") for p in data["perturbations"])


def test_perturb_run_writes_outcomes_flips_and_failing_checks(tmp_path, monkeypatch):
    """perturb.run (executions stubbed): the table it writes has each claim's kind, outcome and verdict per
    column with the commit and processor, counts a failing check as failing and a flip only as a flip."""
    from instab_lib.book import notebooks as nbs

    perts = [perturb.Perturbation("native"), perturb.Perturbation("seeds+1000", {"INSTAB_SEED_OFFSET": "1000"})]
    numbers = {"default": NUMBERS, "perturb-seeds+1000": dict(NUMBERS, a=stats.Estimate(1.1, 0.9, 1.3, 0.1, 5).to_dict())}
    monkeypatch.setattr(perturb, "perturbations", lambda: perts)
    monkeypatch.setattr(perturb, "_execute_all", lambda p, ids, force: {"cpu_capability": "AVX512", "notebooks": {},
                                                                        "seconds": 1.0})
    monkeypatch.setattr(nbs, "verify", lambda ids, label: claims.evaluate_claims(CARD, numbers[label], "nb"))
    monkeypatch.setattr(robustness, "robustness_path", lambda: tmp_path / "robustness.json")
    table, _, n_failing = perturb.run(["nb"])
    data = json.loads((tmp_path / "robustness.json").read_text())
    assert n_failing == 0 and data["n_failing"] == 0 and data["n_flips"] == 2
    assert all(p["commit"] and p["processor"] for p in data["perturbations"])
    up = next(r for r in data["claims"] if r["claim"] == "up")
    assert up["kind"] == "paper" and up["results"]["seeds+1000"]["outcome"] == "not resolved"
    assert up["results"]["native"]["verdict"] == "reproduced"
    numbers["perturb-seeds+1000"] = dict(NUMBERS, d=1.0)
    assert perturb.run(["nb"], write=False)[2] == 1  # the failing identity


def test_perturb_run_writes_after_every_column_and_refresh_reexecutes_only_the_named_pages(tmp_path, monkeypatch):
    """A pass stopped in its second column leaves the first on disk; a refresh re-executes only the named
    page in every column, re-checks every page and keeps the column's earlier timings; it refuses when the
    training code changed since the table (its runs would be retrained) or for a page not in the book."""
    from instab_lib.book import notebooks as nbs

    perts = [perturb.Perturbation("native"), perturb.Perturbation("seeds+1000", {"INSTAB_SEED_OFFSET": "1000"})]
    monkeypatch.setattr(perturb, "perturbations", lambda: perts)
    monkeypatch.setattr(nbs, "verify", lambda ids, label: claims.evaluate_claims(CARD, NUMBERS, "nb"))
    monkeypatch.setattr(nbs, "toc_notebooks", lambda: ["nb", "other"])
    monkeypatch.setattr(robustness, "robustness_path", lambda: tmp_path / "robustness.json")
    executed, crash = [], [True]

    def execute(p, ids, force):
        executed.append((p.name, list(ids), force))
        if p.name == "seeds+1000" and crash:
            crash.pop()  # once
            raise RuntimeError("the machine went away")
        return {"cpu_capability": "AVX512", "notebooks": {i: {"seconds": 2.0, "skipped": False, "error": None}
                                                          for i in ids}, "seconds": 2.0}

    monkeypatch.setattr(perturb, "_execute_all", execute)
    with pytest.raises(RuntimeError):
        perturb.run()
    data = json.loads((tmp_path / "robustness.json").read_text())
    assert [c["name"] for c in data["perturbations"]] == ["native"]  # the finished column is kept
    assert data["run_fingerprint"] == fingerprint.run_fingerprint()
    perturb.run()
    executed.clear()
    _, cols, n_failing = perturb.refresh(["nb"])
    assert executed == [("native", ["nb"], True), ("seeds+1000", ["nb"], True)] and n_failing == 0
    assert [c.name for c in cols] == ["native", "seeds+1000"]
    data = json.loads((tmp_path / "robustness.json").read_text())
    assert all(c["refreshed"] == ["nb"] and c["seconds"] == 4.0 and set(c["notebooks"]) == {"nb", "other"}
               for c in data["perturbations"])
    with pytest.raises(ValueError, match="not"):
        perturb.refresh(["missing"])
    (tmp_path / "robustness.json").write_text(json.dumps(dict(data, run_fingerprint="0" * 16)))
    with pytest.raises(ValueError, match="training code changed"):
        perturb.refresh(["nb"])


def _table(rows: dict[str, dict[str, str]]) -> dict:
    return {"commit": "abc", "processor": "AMD EPYC",
            "perturbations": [{"name": n, "commit": "0123456789abcdef", "processor": "AMD EPYC"}
                              for n in ("native", "seeds+1000", "init-author")],
            "claims": [{"notebook": "pg", "claim": c, "kind": "paper",
                        "results": {n: {"outcome": o, "value": "1"} for n, o in cols.items()}}
                       for c, cols in rows.items()]}


def test_a_page_says_which_of_its_verdicts_move_under_the_perturbations():
    from instab_lib.book.verdicts import ClaimResult

    here = [ClaimResult("pg", "a", "A", 1.0, True, kind="paper"), ClaimResult("pg", "b", "B", 1.0, True, kind="paper"),
            ClaimResult("pg", "new", "N", 1.0, True, kind="reading"), ClaimResult("pg", "id", "I", 1.0, True)]
    steady = _table({"a": {"native": "holds", "seeds+1000": "holds", "init-author": "holds"},
                     "b": {"native": "holds", "seeds+1000": "holds", "init-author": "holds"}})
    line = robustness.page_note(steady, "pg", here)
    assert "none of the 2 scored claims" in line and "seeds+1000, init-author" in line and "0123456789ab" in line
    assert "<code>new</code>" in line and "stale" not in line  # a claim added since the table is named
    moved = _table({"a": {"native": "holds", "seeds+1000": "holds", "init-author": "not resolved"},
                    "b": {"native": "holds", "seeds+1000": "holds", "init-author": "holds"}})
    line = robustness.page_note(moved, "pg", here, stale=True)
    assert "1 of the 2 scored claims" in line and "<code>a</code>: holds here, not resolved under init-author" in line
    assert "stale" in line
    # no table, or a page without scored claims: no line
    assert robustness.page_note(None, "pg", here) == "" and robustness.page_note(steady, "pg", here[3:]) == ""
