"""The claim machinery: a claim passes only on numbers that satisfy it."""

import json
import math

import numpy as np
import pytest

from instab_lib import claims

CARD = [
    {"id": "flatter", "text": "ends flatter", "value": "S_final / S0", "check": "x < 0.9"},
    {"id": "rotates", "text": "rotates", "value": "min(cos.values())", "check": "x < 0.99"},
]


def test_claims_pass_and_fail_on_the_numbers():
    good = claims.evaluate_claims(CARD, {"S_final": 160.0, "S0": 200.0, "cos": {"a": 0.95, "b": 0.3}})
    assert [r.passed for r in good] == [True, True]
    bad = claims.evaluate_claims(CARD, {"S_final": 199.0, "S0": 200.0, "cos": {"a": 0.999}})
    assert [r.passed for r in bad] == [False, False]


def test_missing_numbers_or_broken_expressions_never_pass():
    assert not any(r.passed for r in claims.evaluate_claims(CARD, None))
    missing = claims.evaluate_claims(CARD, {"S0": 200.0})
    assert not any(r.passed for r in missing)
    assert "NameError" in missing[0].error


def test_expressions_see_only_the_numbers_and_safe_helpers():
    res = claims.evaluate_claims([{"id": "x", "value": "__import__('os')", "check": "True"}], {})
    assert not res[0].passed and res[0].error


def test_recorder_writes_json_atomically_and_roundtrips_non_finite(tmp_path):
    path = tmp_path / "n.json"
    rec = claims.Recorder("demo", path=path)
    rec.record("a", np.float64(1.5))
    rec.record("b", [1, float("nan"), float("inf")])
    rec.record("c", {"0.01": np.int64(3)})
    raw = json.loads(path.read_text())
    assert raw["b"] == [1, "nan", "inf"]
    back = claims.load_numbers(path)
    assert back["a"] == 1.5 and math.isnan(back["b"][1]) and back["b"][2] == math.inf and back["c"] == {"0.01": 3}
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match="identifiers"):
        rec.record("not a name", 1)


@pytest.mark.parametrize("bad", [-0.1, 0, float("nan"), [0.1, -1.0], [], "0.1"])
def test_check_positive_rejects(bad):
    with pytest.raises(ValueError):
        claims.check_positive("eta", bad)


def test_claim_table_text_and_markdown():
    table = claims.ClaimTable(claims.evaluate_claims(CARD, {"S_final": 1.0, "S0": 2.0, "cos": {"a": 0.5}}, "nb"))
    assert table.all_passed
    assert "PASS" in str(table) and "✅" in table._repr_markdown_()


def test_notebook_table_and_verify_agree_on_nan(tmp_path, monkeypatch):
    """The notebook's own table sees a recorded NaN as a float NaN, exactly as `instab verify` does."""
    from instab_lib import notebooks

    card = {"claims": [{"id": "nan", "text": "is NaN", "value": "v", "check": "math.isnan(x)"},
                       {"id": "pos", "text": "positive", "value": "v", "check": "x > 0"}]}
    monkeypatch.setattr(notebooks, "load_card", lambda nid: card)
    rec = claims.Recorder("demo", path=tmp_path / "n.json")
    rec.record("v", float("nan"))
    in_notebook = [r.passed for r in rec.report().results]
    in_verify = [r.passed for r in claims.evaluate_claims(card["claims"], claims.load_numbers(rec.path))]
    assert in_notebook == in_verify == [True, False]
