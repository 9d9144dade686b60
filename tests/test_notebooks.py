"""Every notebook is well-formed, runs at its default parameters, its checks pass and its scored claims
have the verdicts tests/expectations.yml pins on what it computed."""

from pathlib import Path

import pytest
import yaml

from instab_lib.book import cards, claims, notebooks as nbs, pages, verdicts

IDS = nbs.notebook_ids()


def test_table_of_contents_and_catalogue_agree():
    toc = nbs.toc_notebooks()
    assert sorted(toc) == IDS, "every notebook must be in book/_toc.yml and every toc notebook must exist"
    root = nbs.repo_root() / "book"
    for f in nbs.toc_files():
        if not f.startswith(("notebooks/", "generated/")):
            assert (root / f"{f}.md").exists() or (root / f"{f}.ipynb").exists(), f


@pytest.mark.parametrize("nid", IDS)
def test_notebook_is_well_formed(nid):
    card = nbs.load_card(nid)
    for key in ("title", "figure", "data", "presets", "claims", "sources", "parameters"):
        assert key in card, f"{nid}.yaml lacks {key!r}"
    assert card["data"].split()[0] in ("none", "fashion-mnist", "cifar10"), card["data"]
    assert {"default", "paper"} <= set(card["presets"]), "each notebook has a CI and a paper preset"
    for preset in card["presets"]:
        nbs.resolve_parameters(nid, preset)  # presets only set declared parameters
    assert card["claims"], "a notebook reproduces a claim and says which"
    for claim in card["claims"]:
        assert {"id", "text", "kind", "source", "value", "null"} <= set(claim), claim
        assert "status" not in claim, claim
        assert claim["kind"] in cards.KINDS, claim
        assert isinstance(claim["source"], str) and claim["source"].strip(), f"{nid}/{claim['id']}: says where it comes from"
        if claim["kind"] in cards.HEADED_KINDS:
            assert claim.get("paper"), f"{nid}/{claim['id']}: a {claim['kind']} claim names its heading"
        if claim.get("paper") is not None:
            assert claim["paper"] in pages.paper_claims(), f"{nid}/{claim['id']}: unknown paper claim {claim['paper']!r}"
    nb = nbs.read_notebook(nid)
    assert nb.cells[0].cell_type == "markdown" and "Where this comes from" in nb.cells[0].source
    source = "\n".join(c.source for c in nb.cells)
    assert f'claims.Recorder("{nid}")' in source and "rec.report()" in source
    assert nbs.declared_parameters(nid)


CLAIMS = [(nid, c) for nid in IDS for c in nbs.load_card(nid)["claims"]]


@pytest.mark.parametrize("nid, claim", CLAIMS, ids=[f"{n}/{c['id']}" for n, c in CLAIMS])
def test_check_rejects_the_declared_null(nid, claim):
    """Every claim can fail: its expressions compile, and its check is False on the value its
    measurement would take if the effect were absent (the card's `null`)."""
    cards.validate_claim(claim)
    assert not claims.check_on_null(claim), f"{nid}/{claim['id']}: the check passes on its own null {claim['null']!r}"


@pytest.mark.parametrize("nid", IDS)
def test_claims_cannot_pass_without_numbers(nid):
    results = claims.evaluate_claims(nbs.load_card(nid)["claims"], {}, nid)
    assert not any(r.passed for r in results), [r.claim_id for r in results if r.passed]


EXPECTATIONS = Path(__file__).with_name("expectations.yml")


def expectations(label: str) -> dict:
    """What CI pins: per label (preset), per notebook, per scored claim, the expected verdict or the
    list of verdicts the claim legitimately takes (tests/expectations.yml; only the tests read it)."""
    return (yaml.safe_load(EXPECTATIONS.read_text()) or {}).get(label) or {}


def test_expectations_name_scored_claims_and_known_verdicts():
    words = {w for kind in verdicts.SCORED_KINDS for w in verdicts.VERDICT_WORDS[kind].values()} - {"FAIL"}
    data = yaml.safe_load(EXPECTATIONS.read_text())
    assert {"default", "paper"} <= set(data)
    for label, pages_ in data.items():
        for nid, claims_ in (pages_ or {}).items():
            card = {c["id"]: c for c in nbs.load_card(nid)["claims"]}
            for cid, want in claims_.items():
                assert cid in card and card[cid]["kind"] in verdicts.SCORED_KINDS, f"{label}: {nid}/{cid}"
                allowed = {want} if isinstance(want, str) else set(want)
                kind_words = set(verdicts.VERDICT_WORDS[card[cid]["kind"]].values())
                assert allowed <= words & kind_words, f"{label}: {nid}/{cid}: {want}"
    for nid in IDS:  # every scored claim has a CI expectation
        scored = {c["id"] for c in nbs.load_card(nid)["claims"] if c["kind"] in verdicts.SCORED_KINDS}
        assert scored == set(data["default"].get(nid) or {}), nid


@pytest.mark.notebooks
@pytest.mark.parametrize("nid", IDS)
def test_notebook_claims_hold(nid):
    """Every check passes (no missing number), and every scored claim has the verdict CI expects: a
    changed outcome fails here, while the page shows the computed verdict."""
    nbs.execute(nid, progress=False)
    results = nbs.verify([nid])
    table = claims.ClaimTable(results)
    assert table.all_passed, f"checks failed:\n{table}"
    problems = verdicts.compare_expectations(results, expectations("default"), notebooks=[nid])
    assert not problems, "verdicts changed (update tests/expectations.yml on purpose: `instab expectations`):\n" + \
        "\n".join(problems)


@pytest.mark.notebooks
@pytest.mark.parametrize("nid", IDS)
def test_notebook_outputs_show_no_warning_and_no_raw_tex(nid):
    """A page's outputs are for readers: no warning printed to stderr (fix its cause in the page;
    known library noise is filtered in the kernel, notebooks.KERNEL_WARNING_FILTERS) and no TeX
    in printed text, which no browser typesets (show it with display(Markdown(...)) instead)."""
    import nbformat

    from instab_lib.book import staging

    record = nbs.execute(nid, progress=False)
    problems = staging.output_problems(nbformat.read(record.notebook_path, as_version=4))
    assert not problems, f"{nid}:\n" + "\n".join(problems)
