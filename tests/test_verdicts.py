"""The outcome and verdict of a claim (instab_lib.book.verdicts): each outcome, each kind, test_if, a
precondition that is not met, the page's verdict counting only paper claims, the expectation
comparison, and Recorder.verdict in a running notebook."""

from __future__ import annotations

import pytest

from instab_lib.book import cards, claims, verdicts
from instab_lib.experiments import stats


def est(e, lo, hi, se=0.05, n=5):
    return stats.Estimate(e, lo, hi, se, n).to_dict()


UP = {"id": "up", "kind": "paper", "paper": "eos", "source": "B Fig 1 caption", "text": "rises", "value": "a",
      "above": 1.0, "null": 1.0}
EXPR = {"id": "gain", "kind": "reading", "paper": "sgd", "source": "reads B highlight 4", "text": "better at every bs",
        "value": "g", "check": "all(v['lo'] > 0 for v in x.values())",
        "contradicts": "any(v['hi'] < 0 for v in x.values())", "null": {"64": {"est": 0.0, "lo": -0.01, "hi": 0.01}}}
PRE = {"id": "trained", "kind": "precondition", "source": "ours", "text": "runs trained", "value": "frac",
       "check": "x >= 0.9", "null": 0.0}
IDENT = {"id": "closed", "kind": "identity", "text": "closed form", "value": "err", "check": "x < 1e-9", "null": 1.0}


def one(claim, numbers):
    r, = verdicts.evaluate_claims([claim], numbers, "nb")
    return r


@pytest.mark.parametrize("value, outcome, word", [
    (est(1.5, 1.2, 1.8), "holds", "reproduced"),
    (est(1.1, 0.9, 1.3), "not resolved", "not reproduced"),
    (est(0.7, 0.6, 0.8), "contradicted", "contradicted"),
    (est(1.0, 0.99, 1.0), "not resolved", "not reproduced"),  # hi == null: does not exclude it
])
def test_interval_outcomes(value, outcome, word):
    r = one(UP, {"a": value})
    assert (r.outcome, r.verdict, r.ok) == (outcome, word, True)  # a scored claim never fails CI by its outcome


def test_below_form_is_contradicted_above_the_null():
    down = dict(UP, below=0.9, null=1.0)
    del down["above"]
    assert one(down, {"a": est(0.5, 0.4, 0.6)}).outcome == "holds"
    assert one(down, {"a": est(1.2, 1.1, 1.3)}).outcome == "contradicted"
    assert one(down, {"a": est(0.95, 0.85, 1.05)}).outcome == "not resolved"


def test_expression_outcomes_and_contradicts():
    assert one(EXPR, {"g": {"64": est(0.02, 0.01, 0.03)}}).outcome == "holds"
    assert one(EXPR, {"g": {"64": est(0.0, -0.01, 0.01)}}).outcome == "not resolved"
    assert one(EXPR, {"g": {"64": est(-0.02, -0.03, -0.01)}}).outcome == "contradicted"
    without = {k: v for k, v in EXPR.items() if k != "contradicts"}
    assert one(without, {"g": {"64": est(-0.02, -0.03, -0.01)}}).outcome == "not resolved"


@pytest.mark.parametrize("kind, words", [
    ("paper", ("reproduced", "not reproduced", "contradicted", "not a test")),
    ("reading", ("reproduced", "not reproduced", "contradicted", "not a test")),
    ("beyond", ("holds", "not shown", "contradicted", "not a test")),
    ("finding", ("holds", "not shown", "contradicted", "not a test")),
])
def test_verdict_words_of_each_scored_kind(kind, words):
    claim = dict(UP, kind=kind, test_if="n >= 5", test_reason="needs 5 seeds")
    got = [one(claim, {"a": v, "n": n}).verdict for v, n in ((est(1.5, 1.2, 1.8), 5), (est(1.1, 0.9, 1.3), 5),
                                                             (est(0.7, 0.6, 0.8), 5), (est(1.5, 1.2, 1.8), 3))]
    assert tuple(got) == words


@pytest.mark.parametrize("kind, ok_word, bad_word", [("identity", "pass", "FAIL"), ("illustration", "pass", "FAIL"),
                                                      ("precondition", "met", "not met")])
def test_checks_pass_or_fail_and_a_failure_fails_ci(kind, ok_word, bad_word):
    claim = dict(IDENT, kind=kind)
    good, bad = one(claim, {"err": 0.0}), one(claim, {"err": 1.0})
    assert (good.outcome, good.verdict, good.ok) == ("pass", ok_word, True)
    assert (bad.outcome, bad.verdict, bad.ok) == ("FAIL", bad_word, False)


def test_test_if_false_is_not_a_test_with_its_reason_and_still_shows_the_value():
    claim = dict(UP, test_if="n_seeds >= 5", test_reason="3 seeds cannot resolve it")
    r = one(claim, {"a": est(0.7, 0.6, 0.8), "n_seeds": 3})
    assert r.outcome == "not a test" and r.why_not_a_test == "3 seeds cannot resolve it" and r.contradicted
    assert r.value_str().startswith("0.7")
    assert one(claim, {"a": est(0.7, 0.6, 0.8), "n_seeds": 5}).outcome == "contradicted"
    broken = one(claim, {"a": est(0.7, 0.6, 0.8)})  # test_if reads a number that is missing
    assert broken.outcome == "error" and not broken.ok and broken.verdict == "FAIL"


def test_a_statistic_recorded_as_none_is_not_a_test_only_where_test_if_is_false():
    """A page records None where a statistic cannot be computed (no common loss levels, too few runs): that is
    'not a test' with its reason where test_if is False, and an error (never a pass) where it would be tested."""
    claim = dict(UP, test_if="n_seeds >= 5", test_reason="3 seeds cannot resolve it")
    r = one(claim, {"a": None, "n_seeds": 3})
    assert r.outcome == "not a test" and r.why_not_a_test == "3 seeds cannot resolve it" and r.error is None
    missing = one(claim, {"a": None, "n_seeds": 5})
    assert missing.outcome == "error" and not missing.ok and missing.verdict == "FAIL"
    assert one(dict(UP), {"a": None}).outcome == "error"  # no test_if: None is an error


def test_a_failing_precondition_makes_every_scored_claim_of_the_page_not_a_test():
    card = [PRE, UP, EXPR, IDENT]
    numbers = {"frac": 0.5, "a": est(1.5, 1.2, 1.8), "g": {"64": est(-0.02, -0.03, -0.01)}, "err": 0.0}
    res = {r.claim_id: r for r in verdicts.evaluate_claims(card, numbers, "nb")}
    assert res["trained"].verdict == "not met" and not res["trained"].ok
    assert res["up"].outcome == res["gain"].outcome == "not a test"
    assert "trained" in res["up"].why_not_a_test
    assert res["closed"].outcome == "pass"  # checks keep their own outcome
    met = {r.claim_id: r for r in verdicts.evaluate_claims(card, dict(numbers, frac=1.0), "nb")}
    assert met["up"].outcome == "holds" and met["gain"].outcome == "contradicted"


def test_missing_numbers_are_an_error_for_every_kind():
    for claim in (UP, EXPR, PRE, IDENT):
        r = one(claim, {})
        assert r.outcome == "error" and r.verdict == "FAIL" and not r.ok
    assert all(r.error == "no recorded numbers" for r in verdicts.evaluate_claims([UP, IDENT], None, "nb"))


def test_the_null_is_rejected_by_check_and_contradicts():
    assert not verdicts.check_on_null(UP) and not verdicts.check_on_null(EXPR)
    assert verdicts.check_on_null(dict(UP, above=0.5))  # a check that passes without the effect
    assert verdicts.check_on_null(dict(EXPR, contradicts="True"))  # a contradiction that fires on the null
    with pytest.raises(ValueError, match="contradicts"):
        cards.validate_claim(dict(UP, contradicts="x['hi'] < 1"))  # interval form: contradiction is built in
    with pytest.raises(ValueError, match="status"):
        cards.validate_claim(dict(UP, status="reproduced"))


def _page(numbers, card=(PRE, UP, EXPR, IDENT)):
    return verdicts.page_verdict(verdicts.evaluate_claims(list(card), numbers, "nb"))


def test_the_page_verdict_counts_only_paper_claims():
    base = {"frac": 1.0, "a": est(1.5, 1.2, 1.8), "g": {"64": est(-0.02, -0.03, -0.01)}, "err": 0.0}
    v = _page(base)
    assert v.word == "reproduced"  # the reading is contradicted, but only the paper claim counts
    assert "paper claims: 1 reproduced" in v.reason and "our readings: 1 contradicted" in v.reason
    assert _page(dict(base, a=est(1.1, 0.9, 1.3))).word == "not reproduced"
    assert _page(dict(base, a=est(0.7, 0.6, 0.8))).word == "contradicted"
    two = [PRE, UP, dict(UP, id="up2", value="b"), IDENT]
    assert _page(dict(base, b=est(1.1, 0.9, 1.3)), two).word == "partly reproduced"
    assert _page(dict(base, frac=0.0)).word == "failing"  # a precondition not met is a failing check
    assert _page(dict(base, err=1.0)).word == "failing"
    assert _page({}).word == "failing"
    assert _page(base, [PRE, EXPR, IDENT]).word == "no paper claim"
    checks_only = _page(base, [IDENT, dict(IDENT, id="ill", kind="illustration")])
    assert checks_only.word == "checks only" and checks_only.reason == "2 pass"
    not_a_test = dict(UP, test_if="False", test_reason="too small")
    assert _page(base, [PRE, not_a_test]).word == "not a test"


def test_expectations_fail_on_a_changed_verdict():
    res = verdicts.evaluate_claims([UP, EXPR, IDENT], {"a": est(1.5, 1.2, 1.8), "g": {"64": est(0.0, -0.01, 0.01)},
                                                      "err": 0.0}, "nb")
    good = {"nb": {"up": "reproduced", "gain": ["not reproduced", "reproduced"]}}
    assert verdicts.compare_expectations(res, good) == []
    changed = verdicts.compare_expectations(res, {"nb": {"up": "not reproduced", "gain": "not reproduced"}})
    assert changed == ["nb/up: verdict 'reproduced', expected 'not reproduced'"]
    missing = verdicts.compare_expectations(res, {"nb": {"up": "reproduced"}})
    assert missing == ["nb/gain: verdict 'not reproduced' has no expectation"]
    extra = verdicts.compare_expectations(res, {"nb": {**good["nb"], "gone": "reproduced"}})
    assert extra == ["nb/gone: expected but not a scored claim of the card"]
    assert verdicts.compare_expectations(res, {"other": {"x": "reproduced"}}, notebooks=["nb"]) == [
        "nb/up: verdict 'reproduced' has no expectation", "nb/gain: verdict 'not reproduced' has no expectation"]


def test_recorder_verdict_decides_on_the_numbers_so_far(tmp_path, monkeypatch):
    card = {"claims": [PRE, UP, IDENT]}
    monkeypatch.setattr(cards, "load_card", lambda nid: card)
    rec = claims.Recorder("demo", path=tmp_path / "n.json")
    rec.record("a", stats.Estimate(1.5, 1.2, 1.8, 0.05, 5))
    with pytest.raises(RuntimeError, match="precondition 'trained' cannot be decided yet"):
        rec.verdict("up")
    rec.record("frac", 1.0)
    v = rec.verdict("up")
    assert v.verdict == "reproduced" and 'data-claim="demo/up"' in v.verdict_html and 'data-verdict="reproduced"' in \
        v.verdict_html
    rec.record("frac", 0.2)
    assert rec.verdict("up").verdict == "not a test"
    with pytest.raises(KeyError):
        rec.verdict("nope")
    # the verdict in the notebook is the one the table shows
    table = {r.claim_id: r.verdict for r in rec.report().results}
    assert table["up"] == rec.verdict("up").verdict
