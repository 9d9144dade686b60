"""The claim machinery: a claim passes only on numbers that satisfy it, never on its null."""

import json
import math

import numpy as np
import pytest

from instab_lib.book import cards, claims
from instab_lib.experiments import stats

CARD = [
    {"id": "flatter", "kind": "illustration", "text": "ends flatter", "value": "S_final / S0",
     "check": "x < 0.9", "null": 1.0},
    {"id": "rotates", "kind": "illustration", "text": "rotates", "value": "min(cos.values())",
     "check": "x < 0.99", "null": 1.0},
]

INTERVAL = {"id": "ratio", "kind": "paper", "paper": "eos", "source": "B Fig 1 caption",
            "text": "ratio above 1", "value": "r", "above": 1.0, "null": 1.0}


def test_claims_pass_and_fail_on_the_numbers():
    good = claims.evaluate_claims(CARD, {"S_final": 160.0, "S0": 200.0, "cos": {"a": 0.95, "b": 0.3}})
    assert [r.passed for r in good] == [True, True]
    bad = claims.evaluate_claims(CARD, {"S_final": 199.0, "S0": 200.0, "cos": {"a": 0.999}})
    assert [r.passed for r in bad] == [False, False]


def test_interval_claim_is_decided_by_the_bound_not_the_point():
    # the point estimate is above 1 but the 90% interval reaches below it: not a pass
    wide = stats.Estimate(1.3, 0.8, 1.9, 0.3, 5).to_dict()
    tight = stats.Estimate(1.3, 1.1, 1.5, 0.1, 5).to_dict()
    r_wide, = claims.evaluate_claims([INTERVAL], {"r": wide})
    r_tight, = claims.evaluate_claims([INTERVAL], {"r": tight})
    assert not r_wide.passed and r_tight.passed
    assert r_tight.margin == pytest.approx(3.0) and r_wide.margin == pytest.approx(1.0) and r_wide.thin
    assert r_tight.threshold == "lo > 1"
    below = dict(INTERVAL, below=0.5, null=1.0)
    del below["above"]
    r_below, = claims.evaluate_claims([below], {"r": stats.Estimate(0.3, 0.2, 0.45, 0.05, 5).to_dict()})
    assert r_below.passed and r_below.margin == pytest.approx(4.0)


def test_interval_claim_needs_an_estimate():
    r, = claims.evaluate_claims([INTERVAL], {"r": 1.3})
    assert not r.passed and "Estimate" in r.error


def test_every_form_is_false_on_its_null_and_a_check_that_accepts_it_is_caught():
    assert not claims.check_on_null(INTERVAL)
    assert not any(claims.check_on_null(c) for c in CARD)
    lenient = dict(CARD[0], check="x < 1.5")  # a check that would also pass with no effect at all
    assert claims.check_on_null(lenient)
    lenient_interval = dict(INTERVAL, above=0.5)
    assert claims.check_on_null(lenient_interval)


def test_not_reproduced_claims_never_fail_ci_and_never_show_as_pass():
    r, = claims.evaluate_claims([INTERVAL], {"r": stats.Estimate(1.0, 0.9, 1.1, 0.05, 5).to_dict()})
    assert r.ok and not r.passed and r.verdict == "not reproduced"
    contra, = claims.evaluate_claims([INTERVAL], {"r": stats.Estimate(0.7, 0.6, 0.8, 0.05, 5).to_dict()})
    assert contra.contradicted and contra.verdict == "contradicted" and contra.ok
    missing, = claims.evaluate_claims([INTERVAL], {})
    assert not missing.ok  # a broken page is never a finding


def test_missing_numbers_or_broken_expressions_never_pass():
    assert not any(r.passed for r in claims.evaluate_claims(CARD, None))
    missing = claims.evaluate_claims(CARD, {"S0": 200.0})
    assert not any(r.passed for r in missing)
    assert "NameError" in missing[0].error


def test_malformed_claims_are_rejected():
    for broken in ({k: v for k, v in INTERVAL.items() if k != "null"},
                   dict(INTERVAL, status="reproduced"),
                   dict(INTERVAL, check="x > 1"),
                   {k: v for k, v in CARD[0].items() if k != "check"},
                   dict(CARD[0], check="x >")):
        with pytest.raises((ValueError, SyntaxError)):
            cards.validate_claim(broken)


def test_every_claim_has_a_kind_and_the_papers_claims_a_source():
    """Issue 19: a claim says what kind it is; a paper claim (and a reading, a claim beyond the papers, a
    finding) says where its statement comes from; a paper claim or a reading names its heading; a setting that
    cannot test a claim (test_if) says why (test_reason)."""
    for good in (INTERVAL, *CARD, dict(CARD[0], kind="identity"),
                 dict(INTERVAL, test_if="n_seeds >= 5", test_reason="3 seeds cannot resolve it"),
                 dict(INTERVAL, kind="reading", source="reads B Fig 1 caption as ...")):
        cards.validate_claim(good)
    for kind in cards.KINDS:
        extra = {"source": "s"} if kind in cards.SOURCED_KINDS else {}
        cards.validate_claim(dict(CARD[0], kind=kind, paper="eos", **extra))
    no_kind = {k: v for k, v in INTERVAL.items() if k != "kind"}
    for broken in (no_kind, dict(INTERVAL, kind="reproduced"), dict(INTERVAL, kind="Paper"),
                   {k: v for k, v in INTERVAL.items() if k != "source"}, dict(INTERVAL, source=""),
                   dict(INTERVAL, source="   "), dict(INTERVAL, source=None),
                   dict(INTERVAL, kind="finding", source=""), dict(CARD[0], kind="beyond"),
                   {k: v for k, v in INTERVAL.items() if k != "paper"}, dict(INTERVAL, kind="reading", paper=None),
                   dict(INTERVAL, test_if="n_seeds >= 5"), dict(INTERVAL, test_reason="too small"),
                   dict(INTERVAL, test_if="n_seeds >= 5", test_reason=""),
                   dict(INTERVAL, test_if="n_seeds >=", test_reason="too small")):
        with pytest.raises((ValueError, SyntaxError)):
            cards.validate_claim(broken)


def test_expressions_see_only_the_numbers_and_safe_helpers():
    res = claims.evaluate_claims([{"id": "x", "kind": "beyond", "value": "__import__('os')", "check": "True",
                                   "null": 0}], {})
    assert not res[0].passed and res[0].error


def test_recorder_writes_json_atomically_and_roundtrips_non_finite(tmp_path):
    path = tmp_path / "n.json"
    rec = claims.Recorder("demo", path=path)
    rec.record("a", np.float64(1.5))
    rec.record("b", [1, float("nan"), float("inf")])
    rec.record("c", {"0.01": np.int64(3)})
    rec.record("e", stats.mean_se([1.0, 2.0, 3.0]))
    raw = json.loads(path.read_text())
    assert raw["b"] == [1, "nan", "inf"]
    back = claims.load_numbers(path)
    assert back["a"] == 1.5 and math.isnan(back["b"][1]) and back["b"][2] == math.inf and back["c"] == {"0.01": 3}
    assert back["e"]["est"] == 2.0 and back["e"]["values"] == [1.0, 2.0, 3.0] and back["e"]["lo"] < 2.0
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match="identifiers"):
        rec.record("not a name", 1)


@pytest.mark.parametrize("bad", [-0.1, 0, float("nan"), [0.1, -1.0], [], "0.1"])
def test_check_positive_rejects(bad):
    from instab_lib import validation

    with pytest.raises(ValueError):
        validation.check_positive("eta", bad)


def test_claim_table_sorts_failures_and_thin_margins_first_and_renders_html():
    numbers = {"S_final": 1.0, "S0": 2.0, "cos": {"a": 0.995},
               "r": stats.Estimate(1.3, 1.05, 1.6, 0.2, 5).to_dict()}
    table = claims.ClaimTable(claims.evaluate_claims(CARD + [INTERVAL], numbers, "nb"))
    assert not table.all_passed and [r.claim_id for r in table.failed] == ["rotates"]
    order = [row[1] for row in table.rows()]
    assert order[0] == "rotates" and order[1] == "ratio"  # the failure, then the thin margin (1.5σ)
    assert "FAIL" in str(table) and "(thin)" in str(table)
    page = table._repr_html_()
    assert "<table" in page and "claim-fail" in page and "|---|" not in page


def test_notebook_table_and_verify_agree_on_nan(tmp_path, monkeypatch):
    """The notebook's own table sees a recorded NaN as a float NaN, exactly as `instab verify` does."""
    card = {"claims": [{"id": "nan", "kind": "identity", "text": "is NaN", "value": "v", "check": "math.isnan(x)",
                        "null": 0.0},
                       {"id": "pos", "kind": "identity", "text": "positive", "value": "v", "check": "x > 0",
                        "null": 0.0}]}
    monkeypatch.setattr(cards, "load_card", lambda nid: card)
    rec = claims.Recorder("demo", path=tmp_path / "n.json")
    rec.record("v", float("nan"))
    in_notebook = [r.passed for r in rec.report().results]
    in_verify = [r.passed for r in claims.evaluate_claims(card["claims"], claims.load_numbers(rec.path))]
    assert in_notebook == in_verify == [True, False]
