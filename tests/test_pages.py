"""The generated pages: the claims page's scoreboard and the robustness page."""

import json

from instab_lib.book import claims, pages, perturb
from instab_lib.experiments import fingerprint, stats

CARD = [
    {"id": "up", "status": "reproduced", "paper": "eos", "text": "t", "value": "a", "above": 1.0, "null": 1.0},
    {"id": "flat", "status": "not_reproduced", "paper": "flatness", "text": "t", "value": "b", "below": 0.9,
     "null": 1.0},
    {"id": "worse", "status": "not_reproduced", "paper": "goldilocks", "text": "t", "value": "c", "above": 0.0,
     "null": 0.0},
]
NUMBERS = {"a": stats.Estimate(1.5, 1.2, 1.8, 0.1, 5).to_dict(), "b": stats.Estimate(1.0, 0.95, 1.05, 0.03, 5).to_dict(),
           "c": stats.Estimate(-0.02, -0.03, -0.01, 0.005, 5).to_dict()}


def test_scoreboard_verdicts():
    res = claims.evaluate_claims(CARD, NUMBERS, "nb")
    rows = {r["key"]: r for r in pages.scoreboard(res)}
    assert rows["eos"]["verdict"] == "reproduced" and rows["eos"]["n_reproduced"] == 1
    assert rows["flatness"]["verdict"] == "not reproduced"
    assert rows["goldilocks"]["verdict"] == "contradicted" and rows["goldilocks"]["n_contradicted"] == 1
    assert rows["sgd"]["verdict"] == "not tested"


def test_claims_page_is_html_with_failures_first(tmp_path, monkeypatch):
    monkeypatch.setattr(pages, "repo_root", lambda: tmp_path)
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "paper_claims.yml").write_text((fingerprint._package_dir().parent / "book" /
                                                          "paper_claims.yml").read_text())
    bad = dict(NUMBERS, a=stats.Estimate(1.1, 0.9, 1.3, 0.1, 5).to_dict())
    text = pages.write_claims_page(claims.evaluate_claims(CARD, bad, "nb")).read_text()
    assert "Scoreboard" in text and "```{raw} html" in text and "claim-fail" in text
    assert "|---|" not in text.split("Scoreboard")[1]
    assert text.index("Every checked claim") < text.index("Not reproduced at this scale")


def test_robustness_page_from_a_recorded_table(tmp_path, monkeypatch):
    monkeypatch.setattr(pages, "repo_root", lambda: tmp_path)
    missing = pages.write_robustness_page().read_text()
    assert "No perturbation check has been recorded" in missing
    (tmp_path / "results").mkdir()
    data = {"created": "2026-12-01 12:00", "commit": "abc", "library_fingerprint": "old", "seconds": 60,
            "n_failing": 0, "perturbations": [{"name": "native", "env": {}, "cpu_capability": "AVX512", "seconds": 10}],
            "claims": [{"notebook": "nb", "claim": "up", "status": "reproduced",
                        "results": {"native": {"verdict": "pass", "ok": True, "value": "1.5", "margin": 5.0}}}]}
    (tmp_path / "results" / "robustness.json").write_text(json.dumps(data))
    text = pages.write_robustness_page().read_text()
    assert "stale" in text and "claim-pass" in text and "+5.0σ" in text


def test_perturbations_cover_kernels_and_seeds():
    names = [p.name for p in perturb.perturbations()]
    assert names[0] == "native" and names[-1] == f"seeds+{perturb.SEED_SHIFT}"
    if fingerprint.cpu_capability() != "DEFAULT":
        assert "kernels-default" in names
    for p in perturb.perturbations()[1:]:
        assert p.label.startswith("perturb-") and "perturb" in str(p.runs_dir())
