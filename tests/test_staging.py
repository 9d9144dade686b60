"""What the build adds to an executed notebook to make it a page: the verdict under the title,
the code folded (set-up cells removed), the paper's scale only where the preset differs (claims
side by side, archived figures with their captions) and the closed provenance box."""

from __future__ import annotations

import json

import nbformat
import pytest

from instab_lib.book import archive, browser, claims, provenance, staging
from instab_lib.experiments import stats

CARD = [
    {"id": "rep", "kind": "paper", "paper": "eos", "source": "s", "text": "t", "value": "a", "above": 1.0, "null": 1.0},
    {"id": "find", "kind": "paper", "paper": "eos", "source": "s", "text": "t", "value": "b", "below": 0.9,
     "null": 1.0},
    {"id": "ident", "kind": "identity", "text": "t", "value": "c", "check": "x < 1e-9", "null": 1.0},
    {"id": "pre", "kind": "precondition", "text": "t", "value": "d", "check": "x > 0", "null": 0},
]
GOOD = {"a": stats.Estimate(1.5, 1.2, 1.8, 0.1, 5).to_dict(), "b": stats.Estimate(1.0, 0.95, 1.05, 0.03, 5).to_dict(),
        "c": 1e-12, "d": 3}


def _verdict(card, numbers):
    return claims.page_verdict(claims.evaluate_claims(card, numbers, "nb")).word


def test_page_verdicts():
    assert _verdict(CARD, GOOD) == "partly reproduced"
    assert _verdict(CARD[:1] + CARD[2:], GOOD) == "reproduced"
    assert _verdict(CARD[1:], GOOD) == "not reproduced"
    assert _verdict(CARD[2:3], GOOD) == "checks only"  # identities only: no verdict, only a check
    assert _verdict(CARD, {**GOOD, "d": 0}) == "failing"  # a precondition not met is a failing check
    assert _verdict(CARD, {**GOOD, "c": 1.0}) == "failing"
    assert _verdict(CARD, {}) == "failing"  # missing numbers never pass
    assert _verdict(CARD[3:], GOOD) == "checks only"  # nothing but a precondition
    held = {**GOOD, "b": stats.Estimate(0.5, 0.4, 0.6, 0.03, 5).to_dict()}
    assert _verdict(CARD, held) == "reproduced"


def test_the_claim_table_is_rendered_from_the_build_evaluation():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("rec.report()", outputs=[nbformat.v4.new_output(
        "execute_result", data={"text/html": "<table>stale</table>", "text/plain": "stale"}, execution_count=1)])]
    results = claims.evaluate_claims(CARD, GOOD, "nb")
    assert staging.replace_claim_tables(nb, results) == 1
    out = nb.cells[0].outputs[0]["data"]["text/html"]
    assert "stale" not in out and 'data-claim="nb/find"' in out and 'data-verdict="not reproduced"' in out
    assert "<details" in out and "2 of 2 pass" in out  # the checks, folded


@pytest.mark.parametrize("source, setup", [
    ("import numpy as np\nfrom instab_lib import claims\n\napply_style()", True),
    ('rec = claims.Recorder("x")', True),
    ("import numpy as np\nx = np.ones(3)", False),
    ("apply_style()", False),
    ("plt.show()\nimport os", True),
    ("def f(:", False),
])
def test_setup_cells(source, setup):
    assert staging.is_setup_cell(nbformat.v4.new_code_cell(source)) is setup


def _executed(tmp_path, nid="dln_rotations"):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A title\n\nThe claim, in a sentence."),
                nbformat.v4.new_code_cell("import numpy as np"),
                nbformat.v4.new_code_cell("import warnings\nwarnings.warn('x')", outputs=[
                    nbformat.v4.new_output("stream", name="stderr", text="UserWarning: x")]),
                nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("dln.run_gd(theta0, 0.011, 100)", metadata={"tags": ["show-input"]}),
                nbformat.v4.new_code_cell("rec.report()")]
    path = tmp_path / f"{nid}.ipynb"
    nbformat.write(nb, path)
    (tmp_path / f"{nid}.numbers.json").write_text(json.dumps({"data_source": "Fashion-MNIST, Debian package",
                                                              "seeds": [0, 1, 2, 3, 4], "n_seeds": 5}))
    stamp = {"commit": "0123456789abcdef0123", "dirty": False, "library_fingerprint": "f" * 16, "preset": "default",
             "label": "default", "parameters": {}, "resolved_parameters": {"x": 1}, "seeds": {"seed": 0},
             "torch": "2.14.1", "python": "3.11.7", "device": "cpu", "cpu_capability": "AVX512", "threads": 2,
             "processor": "some CPU", "finished": "2026-12-01T12:00:00", "seconds": 75.0, "data": "fashion-mnist"}
    return path, stamp


def test_staged_page_opens_with_the_verdict_and_ends_with_the_box(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "load", lambda nid, preset="paper": None)
    path, stamp = _executed(tmp_path)
    results = claims.evaluate_claims(CARD, GOOD, "dln_rotations")
    dest = tmp_path / "staged" / "dln_rotations.ipynb"
    verdict = staging.stage_notebook("dln_rotations", path, stamp, results, dest)
    assert verdict.word == "partly reproduced"
    cells = nbformat.read(dest, as_version=4).cells
    assert cells[0].source == "# A title"
    assert "page-verdict" in cells[1].metadata["tags"] and "partly reproduced" in cells[1].source
    assert "paper claims: 1 reproduced, 1 not reproduced" in cells[1].source and "checks: 2 of 2 pass" in cells[1].source
    assert "Findings" not in cells[1].source  # dln_rotations discusses no network sharpness
    assert cells[2].source == "The claim, in a sentence."
    assert cells[3].metadata["tags"] == ["remove-cell"]  # imports only, no output
    assert cells[4].metadata["tags"] == ["hide-input"]  # a warning printed: its output stays visible
    assert cells[5].metadata["tags"] == ["parameters", "hide-input"]
    assert cells[6].metadata["tags"] == ["show-input"]  # the code is the point: shown
    assert cells[7].metadata["tags"] == ["hide-input"]
    # dln_rotations' paper preset changes nothing: no section for it
    assert not any("At the paper's scale" in c.source for c in cells)
    box = cells[-1].source
    assert cells[-1].metadata["tags"] == ["provenance"]
    assert box.startswith("```{raw} html\n<details class=\"provenance\">") and "<details open" not in box
    for text in ("<code>0123456789ab</code>", "(clean tree)", "<code>AVX512</code>", "get_cpu_capability",
                 "Fashion-MNIST, Debian package", "0, 1, 2, 3, 4 (5 seeds, recorded by the page); parameters seed=0", "torch 2.14.1",
                 "Python 3.11.7", "2 torch threads", "2026-12-01T12:00:00", "1 min 15 s", "<code>x=1</code>",
                 "<code>ffffffffffffffff</code>", 'data-field="seeds"', 'data-field="data"'):
        assert text in box, text
    # staging twice keeps one verdict and one box
    staging.stage_notebook("dln_rotations", dest, stamp, results, dest)
    tags = [t for c in nbformat.read(dest, as_version=4).cells for t in c.metadata.get("tags", [])]
    assert tags.count("page-verdict") == tags.count("provenance") == 1 and tags.count("paper-scale") == 0


def test_the_paper_section_only_where_the_preset_differs(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "load", lambda nid, preset="paper": None)
    path, stamp = _executed(tmp_path, "phases_of_training")
    results = claims.evaluate_claims(CARD, GOOD, "phases_of_training")
    dest = tmp_path / "staged" / "phases_of_training.ipynb"
    staging.stage_notebook("phases_of_training", path, stamp, results, dest)
    staging.stage_notebook("phases_of_training", dest, stamp, results, dest)
    cells = nbformat.read(dest, as_version=4).cells
    paper = [c for c in cells if "paper-scale" in c.metadata.get("tags", [])]
    assert len(paper) == 1 and "## At the paper's scale" in paper[0].source
    assert "The `paper` preset changes `scale = 'paper'`" in paper[0].source and "No archived run" in paper[0].source


def test_the_paper_section_puts_the_claims_side_by_side_and_captions_the_figures(tmp_path, monkeypatch):
    entry_dir = tmp_path / "entry"
    entry_dir.mkdir()
    (entry_dir / "fig-01.png").write_bytes(b"png")
    (entry_dir / "fig-02.png").write_bytes(b"png")
    (entry_dir / "captions.json").write_text(json.dumps(["**Figure 1.** Ten seeds: the band sits at 1.26.", None]))
    paper_numbers = {**GOOD, "a": stats.Estimate(1.7, 1.5, 1.9, 0.1, 10).to_dict()}
    entry = archive.Entry("phases_of_training", entry_dir, {"commit": "abcdef1234567890", "finished": "2026-11-30T10:00:00",
                                                            "seconds": 600, "device": "cuda", "gpu": "H200"},
                          paper_numbers, sorted(entry_dir.glob("fig-*.png")))
    monkeypatch.setattr(archive.Entry, "stale_reasons", lambda self: [])
    monkeypatch.setattr(archive.Entry, "results", lambda self: claims.evaluate_claims(CARD, paper_numbers, "x"))
    monkeypatch.setattr(staging, "_figure_dir", lambda nid, preset="paper": tmp_path / "staged-figures")
    ci = claims.evaluate_claims(CARD, GOOD, "x")
    (cell,) = staging.preset_cells("phases_of_training", "paper", entry, "", ci)
    src = cell.source
    assert '<table class="side-by-side">' in src and "1.5 [1.2, 1.8] n=5" in src and "1.7 [1.5, 1.9] n=10" in src
    assert ">ident<" not in src and "x &lt; 1e-9" not in src  # identities and threshold expressions stay out
    assert "**Figure P1** (at the paper's scale). Ten seeds: the band sits at 1.26." in src
    assert "**Figure P2** (at the paper's scale). Figure 2 above" in src
    assert src.count("```{container} figure-scroll") == 2
    assert staging.preset_cells("dln_rotations", "paper", entry, "", ci) == []


def test_archived_figures_keep_the_caption_under_them():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("plot()", outputs=[nbformat.v4.new_output(
                    "display_data", data={"image/png": "AAAA", "text/plain": "<Figure>"})]),
                nbformat.v4.new_code_cell("caption()", outputs=[nbformat.v4.new_output(
                    "display_data", data={"text/markdown": "**Figure 1.** What to look for.", "text/plain": ""})]),
                nbformat.v4.new_code_cell("plot()", outputs=[nbformat.v4.new_output(
                    "display_data", data={"image/png": "AAAA", "text/plain": "<Figure>"})]),
                nbformat.v4.new_markdown_cell("Some prose, no caption.")]
    assert archive.figure_captions(nb) == ["**Figure 1.** What to look for.", None]


def test_provenance_box_says_when_the_data_copy_or_seeds_are_not_recorded():
    stamp = {"data": "cifar10", "data_source": []}
    box = provenance.provenance_html(stamp)
    assert "copy used: not recorded by the page" in box and "Seeds</strong>: not recorded by the page" in box
    assert "the page uses no data set" in provenance.provenance_html({"data": "none"})
    assert provenance.recorded_data_source({"data_source": ["a", "b"], "net_data_source": "a", "source": "x"}) == ["a", "b"]
    assert provenance.recorded_seeds({"seeds": [3, 1], "n_seeds": 2, "net_seeds": [1, 7], "seed": 9}) == [1, 3, 7]
    assert provenance.recorded_seeds({"n_seeds": 5}) is None and provenance.recorded_seeds({"seeds": []}) == []
    assert "none (the page draws no random numbers)" in provenance.provenance_html({"recorded_seeds": []})
    both = provenance.seeds_text({"recorded_seeds": [0, 1], "seeds": {"seed": 0}})
    assert both == "0, 1 (2 seeds, recorded by the page); parameters seed=0; seed offset 0"


def test_the_cpu_section_shows_the_cpu_archive_beside_this_build(tmp_path, monkeypatch):
    """A card with a `cpu` preset gets a section *At the cpu preset's scale*: the claims at both scales side by
    side and the archived figures captioned "Figure Cn" (the browser test numbers them apart from 1, 2, … and
    P1, P2, …); without an entry, why; a card without a `cpu` preset gets nothing."""
    entry_dir = tmp_path / "entry"
    entry_dir.mkdir()
    (entry_dir / "fig-01.png").write_bytes(b"png")
    (entry_dir / "captions.json").write_text(json.dumps(["**Figure 1.** Three seeds on 1,030 images."]))
    numbers = {**GOOD, "a": stats.Estimate(1.7, 1.5, 1.9, 0.1, 3).to_dict()}
    entry = archive.Entry("cifar_author", entry_dir, {"commit": "abcdef1234567890", "finished": "2026-12-05T05:30:00",
                                                      "seconds": 2400, "device": "cpu", "threads": 1}, numbers,
                          sorted(entry_dir.glob("fig-*.png")))
    monkeypatch.setattr(archive.Entry, "stale_reasons", lambda self: [])
    monkeypatch.setattr(archive.Entry, "results", lambda self: claims.evaluate_claims(CARD, numbers, "x"))
    monkeypatch.setattr(staging, "_figure_dir", lambda nid, preset="paper": tmp_path / f"staged-{preset}")
    ci = claims.evaluate_claims(CARD, GOOD, "x")
    (cell,) = staging.preset_cells("cifar_author", "cpu", entry, "", ci)
    src = cell.source
    assert src.startswith("## At the cpu preset's scale") and "`n_train = 1030`" in src and "in 40 min" in src
    assert "<th>at the cpu preset</th>" in src and "1.7 [1.5, 1.9] n=3" in src
    assert "**Figure C1** (at the cpu preset). Three seeds on 1,030 images." in src
    assert (tmp_path / "staged-cpu" / "fig-01.png").is_file()
    (missing,) = staging.preset_cells("cifar_author", "cpu", None, "not run yet", ci)
    assert "No archived run of it yet: not run yet" in missing.source
    assert staging.preset_cells("dln_rotations", "cpu", entry, "", ci) == []
    assert browser._caption_problems([{"fig": "a"}, {"text": "Figure 1. x"}, {"fig": "b"}, {"text": "Figure C1 (y)"},
                                      {"fig": "c"}, {"text": "Figure C3 (z)"}]) == [
        "c: caption 'Figure C3' where 'Figure C2' was due"]
