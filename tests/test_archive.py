"""The paper-scale archive: entries are read back, checked without recomputing, marked stale when
the code has changed, and missing ones are listed with their reason."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zlib

import pytest

from instab_lib.book import archive, pages, provenance
from instab_lib.book import notebooks as nbs
from instab_lib.experiments import fingerprint

ROOT = nbs.repo_root()


@pytest.fixture
def tmp_archive(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "repo_root", lambda: tmp_path)
    monkeypatch.setattr(pages, "repo_root", lambda: tmp_path)
    (tmp_path / "results" / "paper").mkdir(parents=True)
    return tmp_path / "results" / "paper"


def tiny_png() -> bytes:
    """A whole 1×1 grey PNG (signature, IHDR, IDAT, IEND, each chunk with its CRC)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = (1).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
            + chunk(b"IEND", b""))


def _entry(root, nid, numbers, **stamp):
    d = root / nid
    d.mkdir()
    (d / "numbers.json").write_text(json.dumps(numbers))
    base = {"notebook": nid, "commit": "abcdef0123456789", "finished": "2026-11-30T10:00:00", "seconds": 42.0,
            "library_fingerprint": fingerprint.library_fingerprint(), "source_digest": provenance.source_digest(nid),
            "device": "cuda", "gpu": "Some GPU", "cpu_capability": "AVX2", "threads": 8, "parameters": {}}
    (d / "stamp.json").write_text(json.dumps({**base, **stamp}))
    (d / "fig-01.png").write_bytes(tiny_png())


def test_entries_current_stale_and_missing(tmp_archive):
    _entry(tmp_archive, "descent_lemma", {})
    _entry(tmp_archive, "dln_rotations", {}, library_fingerprint="0" * 16)
    (tmp_archive / "pending.yml").write_text('goldilocks: "needs a GPU"\n')
    cur, old = archive.load("descent_lemma"), archive.load("dln_rotations")
    assert cur.stale_reasons() == [] and cur.figures == [tmp_archive / "descent_lemma" / "fig-01.png"]
    assert old.stale and "0000000000000000 then" in old.stale_reasons()[0]
    _entry(tmp_archive, "dln_flatness_sweep", {}, source_digest="changed")
    assert archive.load("dln_flatness_sweep").stale_reasons() == ["the notebook or its card has changed since"]
    rows = {r["notebook"]: r for r in archive.status()}
    assert rows["goldilocks"]["entry"] is None and rows["goldilocks"]["reason"] == "needs a GPU"
    assert rows["phases_of_training"]["reason"] == archive.NOT_RUN
    text = pages.write_paper_page(archive.status()).read_text()
    assert "needs a GPU" in text and "stale" in text and "<code>abcdef012345</code>" in text
    assert "- `phases_of_training`: not run yet" in text  # missing entries are listed, not silently left out


def test_verify_checks_archived_numbers_and_fails_on_missing_ones(tmp_archive):
    _entry(tmp_archive, "descent_lemma", {})  # no numbers: its claims cannot pass
    results, missing = archive.verify()
    assert "goldilocks" in missing and "descent_lemma" not in missing
    assert results and all(not r.ok for r in results)
    results, missing = archive.verify(["goldilocks"])  # asked for by name: a failing row
    assert missing == ["goldilocks"] and not results[0].ok and "not archived" in results[0].error


def test_paper_column_comes_from_the_archive(tmp_archive):
    from instab_lib.book import build, claims, record

    _entry(tmp_archive, "descent_lemma", {})
    rows = archive.status()
    res = claims.evaluate_claims(nbs.load_card("descent_lemma")["claims"], {}, "descent_lemma")
    res += claims.evaluate_claims(nbs.load_card("goldilocks")["claims"], {}, "goldilocks")
    cols = build.build_columns({}, rows, None)
    assert [c.name for c in cols] == ["default", "paper"] and "1 page(s) archived" in cols[-1].note
    paper = [r for row in rows if row["entry"] is not None for r in row["entry"].results()]
    assert paper and all(r.column == "paper" for r in paper)
    rec = record.build_record(res, paper, {}, cols).by_key()
    assert rec["descent_lemma/closed_form"].verdicts["paper"] == "FAIL"  # the entry has no numbers
    assert rec["goldilocks/best_above_beats_best_below"].verdicts["paper"] is None  # no entry: no paper column


def test_archived_verdicts_are_the_expected_ones():
    """What CI pins at the paper preset: every scored claim of every committed entry has the verdict
    tests/expectations.yml expects (a changed outcome fails here; the pages show the computed one)."""
    from instab_lib.book import verdicts

    from test_notebooks import expectations

    results, missing = archive.verify()
    expected = expectations("paper")
    present = sorted({r.notebook for r in results})
    problems = verdicts.compare_expectations(results, expected, notebooks=present)
    assert not problems, "\n".join(problems)
    assert not set(expected) - set(present), "expectations for pages without an archived entry"


def test_instab_verify_label_paper_checks_the_committed_archive():
    """What CI checks: every committed entry passes on its archived numbers, and every missing
    entry is listed with its reason."""
    out = subprocess.run([sys.executable, "-m", "instab_lib.book.cli", "verify", "--label", "paper"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env={**os.environ})
    assert out.returncode == 0, out.stdout + out.stderr
    for row in archive.status():
        if row["entry"] is None:
            assert f"{row['notebook']}: no archived paper run ({row['reason']})" in out.stdout
        else:
            assert f"{row['notebook']}: archived" in out.stdout


def test_archive_refuses_a_dirty_tree(tmp_archive, monkeypatch):
    monkeypatch.setattr(fingerprint, "git_state", lambda root=None: {"commit": "abc", "dirty": True})
    with pytest.raises(nbs.NotebookError, match="uncommitted changes"):
        archive.create("descent_lemma")


@pytest.mark.notebooks
def test_archive_writes_numbers_stamp_and_figures(tmp_archive):
    """A real entry of a seconds-long page (its paper preset is its default)."""
    entry, notes = archive.create("descent_lemma", device="cuda", allow_dirty=True)
    assert any("declares no `device` parameter" in n for n in notes)
    assert entry.path == tmp_archive / "descent_lemma" and entry.figures
    assert entry.stamp["preset"] == "paper" and entry.stamp["cpu_capability"] == fingerprint.cpu_capability()
    assert not entry.stale and all(r.ok for r in entry.results())
    assert json.dumps(archive.load("descent_lemma").numbers, sort_keys=True) == json.dumps(entry.numbers, sort_keys=True)


def test_a_claim_added_after_a_stale_entry_is_left_out_not_failed(tmp_archive, monkeypatch):
    """A card that gained a claim after its entry was archived: the stale entry cannot decide it (no
    number), so the paper column leaves it out; in a current entry the same gap stays a failure."""
    real = nbs.load_card("descent_lemma")
    new = {"id": "added_later", "kind": "paper", "text": "new", "value": "a_number_added_later", "check": "x > 0",
           "null": 0}
    monkeypatch.setattr(nbs, "load_card", lambda nid: {**real, "claims": [*real["claims"], new]})
    numbers = json.loads((ROOT / "results" / "paper" / "descent_lemma" / "numbers.json").read_text())
    _entry(tmp_archive, "descent_lemma", numbers, source_digest="changed")
    stale = archive.load("descent_lemma")
    assert stale.unarchived_claims() == ["added_later"]
    assert all(r.ok for r in stale.results()) and "added_later" not in {r.claim_id for r in stale.results()}
    shutil.rmtree(tmp_archive / "descent_lemma")
    _entry(tmp_archive, "descent_lemma", numbers)  # current: the missing number is an error
    cur = archive.load("descent_lemma")
    assert cur.unarchived_claims() == []
    bad = [r for r in cur.results() if r.claim_id == "added_later"]
    assert bad and not bad[0].ok and "a_number_added_later" in bad[0].error


def test_a_precondition_added_after_a_stale_entry_does_not_void_its_claims(tmp_archive, monkeypatch):
    real = nbs.load_card("descent_lemma")
    scored = {"id": "a_scored_claim", "kind": "paper", "text": "old", "value": "two_over_l", "check": "x > 0.05",
              "null": 0.0}
    pre = {"id": "added_precondition", "kind": "precondition", "text": "new", "value": "a_number_added_later",
           "check": "x > 0", "null": 0}
    monkeypatch.setattr(nbs, "load_card", lambda nid: {**real, "claims": [scored, pre]})
    numbers = json.loads((ROOT / "results" / "paper" / "descent_lemma" / "numbers.json").read_text())
    # with the precondition evaluated (a number the entry lacks: not met), the scored claim is not a test ...
    from instab_lib.book import claims as claims_mod
    both = {r.claim_id: r for r in claims_mod.evaluate_claims([scored, pre], numbers, "descent_lemma")}
    assert both["a_scored_claim"].outcome == "not a test"
    # ... but a stale entry leaves the precondition out, and the scored claim keeps its verdict
    _entry(tmp_archive, "descent_lemma", numbers, source_digest="changed")
    entry = archive.load("descent_lemma")
    assert entry.unarchived_claims() == ["added_precondition"]
    assert [(r.claim_id, r.outcome) for r in entry.results()] == [("a_scored_claim", "holds")]


def test_verify_label_cpu_reads_results_cpu(tmp_path, monkeypatch, capsys):
    """`instab verify --label cpu` (and `instab expectations --label cpu`) read the CPU-sized archive in
    results/cpu/ as `--label paper` reads results/paper/: an entry there is checked without recomputing
    (here it holds no numbers, so its claims fail and the command exits 1), one archived only under
    results/paper/ is not taken for it, and a notebook asked for by name without a cpu entry is named with
    the reason in results/cpu/pending.yml."""
    from instab_lib.book import cli

    monkeypatch.setattr(archive, "repo_root", lambda: tmp_path)
    cpu, paper = tmp_path / "results" / "cpu", tmp_path / "results" / "paper"
    cpu.mkdir(parents=True)
    paper.mkdir(parents=True)
    _entry(cpu, "descent_lemma", {})
    _entry(paper, "goldilocks", {})
    (cpu / "pending.yml").write_text('goldilocks: "not sized for a CPU"\n')
    assert archive.archive_root("cpu") == cpu
    status = cli.main(["verify", "--label", "cpu", "descent_lemma", "goldilocks"])
    out = capsys.readouterr()
    assert status == 1  # the cpu entry holds no numbers: its checks fail, whatever results/paper/ holds
    assert "descent_lemma: archived" in out.out and "archived cpu-preset run(s) checked" in out.err
    assert "goldilocks: no archived cpu run (not sized for a CPU)" in out.out
    results, missing = archive.verify(None, "cpu")
    # without names: only the cards with a cpu preset are missing (goldilocks has none)
    assert {r.notebook for r in results} == {"descent_lemma"}
    assert "goldilocks" not in missing and "cifar_author" in missing
    assert all(r.column == "cpu" for r in results)


def test_archived_cpu_verdicts_are_the_expected_ones():
    """What CI pins at the cpu preset (results/cpu/, `instab verify --label cpu`): every committed cpu entry
    passes its checks on its archived numbers and its scored claims have the verdicts tests/expectations.yml
    expects under `cpu`."""
    from instab_lib.book import verdicts

    from test_notebooks import expectations

    results, _ = archive.verify(None, "cpu")
    assert all(r.ok for r in results), [r.key for r in results if not r.ok]
    expected = expectations("cpu")
    present = sorted({r.notebook for r in results})
    problems = verdicts.compare_expectations(results, expected, notebooks=present)
    assert not problems, "\n".join(problems)
    assert not set(expected) - set(present), "cpu expectations for pages without an archived cpu entry"


def test_verify_lists_as_missing_only_the_cards_that_declare_the_label(tmp_path, monkeypatch, capsys):
    """`instab verify --label cpu` without names lists as missing only the notebooks whose card has a cpu
    preset (the others cannot have a cpu entry), not every notebook of the book; `--label paper` lists every
    card with a paper preset; a notebook named without the preset fails with that reason."""
    from instab_lib.book import cli

    monkeypatch.setattr(archive, "repo_root", lambda: tmp_path)
    (tmp_path / "results" / "cpu").mkdir(parents=True)
    with_cpu = sorted(n for n in nbs.toc_notebooks() if "cpu" in nbs.load_card(n)["presets"])
    with_paper = sorted(n for n in nbs.toc_notebooks() if "paper" in nbs.load_card(n)["presets"])
    assert with_cpu and len(with_cpu) < len(nbs.toc_notebooks())  # else this test says nothing
    assert sorted(archive.verify(None, "cpu")[1]) == with_cpu
    assert sorted(archive.verify(None, "paper")[1]) == with_paper
    assert [r["notebook"] for r in archive.status("cpu")] == [n for n in nbs.toc_notebooks() if n in with_cpu]
    cli.main(["verify", "--label", "cpu"])
    out = capsys.readouterr().out
    assert sorted(line.split(":")[0] for line in out.splitlines() if "no archived cpu run" in line) == with_cpu
    without = next(n for n in nbs.toc_notebooks() if n not in with_cpu)
    results, missing = archive.verify([without], "cpu")
    assert missing == [without] and not results[0].ok and "its card has no cpu preset" in results[0].error


# --------------------------------------------------------------------------- dry runs (issue 21 item 5)
def _no_kernel(monkeypatch):
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a kernel was started"))


def test_dry_run_is_refused_in_one_line_without_a_dry_run_block(monkeypatch, capsys):
    """A card without a `dry_run:` block: `instab archive <id> --dry-run` exits 2 with one line on stderr,
    before any kernel starts (also when another named card has a block)."""
    from instab_lib.book import cli

    _no_kernel(monkeypatch)
    assert not nbs.load_card("descent_lemma").get("dry_run")
    for argv in (["descent_lemma"], ["cifar_author", "descent_lemma"]):
        assert cli.main(["archive", *argv, "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "descent_lemma: its card declares no `dry_run:` block" in err


def test_dry_run_overrides_the_preset_and_the_card_checks_the_merge(monkeypatch):
    """The dry run's parameters are the preset updated by the card's block, then --device and --workers; the
    merged parameters pass the card's specs and constraints, and a block they refuse fails in one line naming
    the dry run, before a kernel starts."""
    _no_kernel(monkeypatch)
    card = nbs.load_card("cifar_author")
    block, paper = card["dry_run"], card["presets"]["paper"]
    overrides, notes = archive.dry_run_overrides("cifar_author")
    assert overrides == block and notes == []
    merged = {**nbs.declared_parameters("cifar_author"), **nbs.resolve_parameters("cifar_author", "paper", overrides)}
    # the tiny grid keeps the paper preset's structure: both networks, both families, the paper's clips
    for kept in ("archs", "families", "clips"):
        assert kept not in block and merged[kept] == paper[kept]
    assert len(merged["batch_sizes"]) == len(paper["batch_sizes"]) and merged["device"] == "cpu"
    assert merged["n_train"] <= 100 and merged["epochs"] <= 2
    overrides, _ = archive.dry_run_overrides("cifar_author", device="auto", workers=3)
    assert overrides == {**block, "device": "auto", "workers": 3}

    def with_block(new):
        monkeypatch.setattr(nbs, "load_card", lambda nid, real=nbs.load_card: {**real(nid), "dry_run": new})

    for new, reason in (({**block, "n_train": 5}, "n_train must be"),
                        ({**block, "batch_sizes": [8, 64]}, "a batch size must not exceed n_train"),
                        ({**block, "no_such_parameter": 1}, "not declared"),
                        ([1, 2], "must map parameter names to values")):
        with_block(new)
        with pytest.raises(nbs.NotebookError, match=reason) as exc:
            archive.dry_run_overrides("cifar_author")
        assert "\n" not in str(exc.value)
    with_block({**block, "n_train": 5})
    with pytest.raises(nbs.NotebookError, match="dry run of cifar_author at paper"):
        archive.dry_run("cifar_author", dest=ROOT / "_build" / "never-written")


def test_a_dry_run_entry_is_never_taken_for_an_archived_one(tmp_archive):
    """A dry run's entry (its stamp says `dry_run: true`) copied into results/ is treated as damaged: verify
    fails on it instead of checking tiny numbers as the paper's; a dry run refuses to write under results/."""
    _entry(tmp_archive, "descent_lemma", {}, dry_run=True)
    assert archive.inspect("descent_lemma")[0] is None
    assert archive.inspect("descent_lemma", root=tmp_archive, dry_run=True)[0] is not None
    results, _ = archive.verify(["descent_lemma"])
    assert len(results) == 1 and not results[0].ok and "a dry run's entry" in results[0].error
    with pytest.raises(nbs.NotebookError, match="writes no entry in"):
        archive.dry_run("cifar_author", dest=tmp_archive)


def _tree(path):
    return sorted((str(p.relative_to(path)), p.stat().st_mtime_ns, p.stat().st_size) for p in path.rglob("*"))


@pytest.mark.notebooks
def test_dry_run_of_cifar_author_runs_the_paper_preset_tiny_on_cpu(tmp_path, monkeypatch, capsys):
    """`instab archive cifar_author --preset paper --dry-run` on a CPU: the paper preset updated by the card's
    dry_run block executes (both networks, both batch sizes, both families, worker processes on fresh run
    caches), its entry goes to a temporary folder, passes the checks `instab verify` makes and says it is a dry
    run; nothing under results/ changes."""
    import tempfile

    from instab_lib.book import cli

    before = _tree(ROOT / "results")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert cli.main(["archive", "cifar_author", "--preset", "paper", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "cifar_author: dry run of the paper preset passed" in out and "device cpu" in out
    entry, damage = archive.inspect("cifar_author", root=next(tmp_path.glob("instab-dry-run-cifar_author-*")) / "paper",
                                    dry_run=True)
    assert damage is None and entry.stamp["dry_run"] is True and entry.figures
    assert entry.numbers["architectures"] == ["vgg", "resnet20"]
    assert _tree(ROOT / "results") == before
