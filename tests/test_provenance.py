"""Run and execution keys follow the code that can change a number, and nothing else: the library and the
experiments layer count, the book machinery does not (instab_lib.experiments.fingerprint)."""

import shutil

import pytest

from instab_lib.book import notebooks as nbs
from instab_lib.experiments import fingerprint, seeding, train


@pytest.fixture
def lib_copy(tmp_path, monkeypatch):
    """A copy of the library under tmp, imported by the fingerprint functions in place of the real one."""
    src = fingerprint._package_dir()
    dst = tmp_path / "instab_lib"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(fingerprint, "_package_dir", lambda: dst)
    return dst


def _edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_docstrings_and_comments_keep_the_fingerprints(lib_copy):
    before = (fingerprint.run_fingerprint(), fingerprint.library_fingerprint())
    _edit(lib_copy / "curvature" / "__init__.py", '"""Curvature of an empirical risk', '"""Curvature (reworded) of an empirical risk')
    _edit(lib_copy / "experiments" / "train.py", "def train(", "# a new comment\n\n\ndef train(")
    _edit(lib_copy / "optim.py", "\n", "\n# another comment\n")
    assert (fingerprint.run_fingerprint(), fingerprint.library_fingerprint()) == before


def test_a_change_that_can_alter_numbers_changes_the_run_fingerprint(lib_copy):
    before = fingerprint.run_fingerprint()
    _edit(lib_copy / "curvature" / "results.py", "def _generator(seed: int)", "def _generator(seed: int, _unused: int = 1)")
    assert fingerprint.run_fingerprint() != before


def test_analysis_modules_do_not_invalidate_training_runs(lib_copy):
    """landscape is not imported by a training run: editing it re-executes pages, not runs."""
    closure = set(fingerprint.import_closure(["experiments.train", "experiments.sweep"]))
    assert "experiments.landscape" not in closure
    assert {"curvature", "optim", "experiments", "experiments.models", "experiments.data",
            "experiments.seeding"} <= closure
    assert not any(fingerprint.in_book(m) for m in closure)
    run_before, lib_before = fingerprint.run_fingerprint(), fingerprint.library_fingerprint()
    _edit(lib_copy / "experiments" / "landscape.py", "def unit(v: Tensor)", "def unit(v: Tensor, _changed: int = 0)")
    assert fingerprint.run_fingerprint() == run_before
    assert fingerprint.library_fingerprint() != lib_before


def test_run_key_follows_code_and_seed_offset(lib_copy, monkeypatch):
    cfg = train.TrainConfig(n_train=100, n_test=0, epochs=2, eval_every=0)
    key = train.config_key(cfg)
    assert train.config_key(cfg) == key
    monkeypatch.setenv(seeding.SEED_OFFSET_ENV, "1000")
    assert train.config_key(cfg) != key
    monkeypatch.delenv(seeding.SEED_OFFSET_ENV)
    _edit(lib_copy / "optim.py", "\n", "\n# comment only\n")
    assert train.config_key(cfg) == key
    _edit(lib_copy / "optim.py", "def make_schedule(", "_X = 1\n\n\ndef make_schedule(")
    assert train.config_key(cfg) != key


def test_execution_key_follows_the_library_code(lib_copy):
    nid = nbs.notebook_ids()[0]
    params = nbs.resolve_parameters(nid)
    key = nbs.run_key(nid, params)
    _edit(lib_copy / "experiments" / "plotting.py", '"""Figures made', '"""Figures (docstring only) made')
    assert nbs.run_key(nid, params) == key
    _edit(lib_copy / "experiments" / "plotting.py", "FIG_DPI = 100", "FIG_DPI = 101")
    assert nbs.run_key(nid, params) != key


def test_stamp_fields_name_the_machine_and_the_code():
    f = fingerprint.stamp_fields()
    for k in ("commit", "dirty", "library_fingerprint", "run_fingerprint", "torch", "cpu_capability", "python",
              "threads", "device", "seed_offset", "processor"):
        assert k in f, k
    assert f["cpu_capability"] not in ("", "unknown")


def test_notebooks_import_from_the_book_only_the_recorder():
    """The book machinery is left out of the library fingerprint: sound only while a notebook's
    computation runs none of it. A notebook imports from ``instab_lib.book`` only ``claims`` (its
    ``Recorder`` writes the numbers; claims are checked outside the kernel), and the library and
    experiments never import the book (the layering test, tests/test_structure.py)."""
    import ast

    for nid in nbs.notebook_ids():
        tree = ast.parse((nbs.notebooks_dir() / f"{nid}.py").read_text())
        book = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[:2] == ["instab_lib", "book"]:
                book.update([node.module] if node.module.count(".") > 1 else [f"{node.module}.{a.name}" for a in node.names])
            elif isinstance(node, ast.Import):
                book.update(a.name for a in node.names if a.name.split(".")[:2] == ["instab_lib", "book"])
        assert book <= {"instab_lib.book.claims"}, (nid, book)
    kernel_side = [m for m in fingerprint.library_modules() if not fingerprint.in_book(m)]
    assert not any(fingerprint.in_book(m) for m in fingerprint.import_closure(kernel_side))


def test_the_fingerprint_units_follow_the_layers():
    mods = set(fingerprint.library_modules())
    assert {"__init__", "curvature", "rotation", "optim", "experiments", "experiments.train", "experiments.shared_runs",
            "book", "book.claims", "book.cli"} <= mods
    assert not {"curvature.krylov", "experiments.__init__", "train"} & mods
    assert fingerprint.in_book("book.claims") and fingerprint.in_book("book") and not fingerprint.in_book("optim")
    assert "experiments" in fingerprint.import_closure(["experiments.config"])  # its package (repo_root) runs first


def test_editing_the_book_machinery_keeps_the_library_fingerprint(lib_copy):
    before = fingerprint.library_fingerprint()
    _edit(lib_copy / "book" / "pages.py", "def scoreboard(", "_X = 1\n\n\ndef scoreboard(")
    assert fingerprint.library_fingerprint() == before


def test_a_change_inside_a_subpackage_changes_the_fingerprints(lib_copy):
    """curvature is a package: a change in one of its files must reach the run key."""
    assert "curvature" in fingerprint.library_modules()
    before = (fingerprint.run_fingerprint(), fingerprint.library_fingerprint())
    _edit(lib_copy / "curvature" / "tracking.py", "\n", "\n_CHANGED = 1\n")
    after = (fingerprint.run_fingerprint(), fingerprint.library_fingerprint())
    assert after[0] != before[0] and after[1] != before[1]


def test_the_dry_run_block_is_left_out_of_the_card_digest():
    """A card's dry_run block (and its comment lines) changes no preset's numbers: the run key and the archive's
    source digest hash the card without it; every other card hashes as its whole text."""
    import yaml

    from instab_lib.book import notebooks as nbs
    from instab_lib.book import provenance

    for path in sorted(nbs.notebooks_dir().glob("*.yaml")):
        text, hashed = path.read_bytes(), provenance.card_bytes(path.stem)
        if b"\ndry_run:" not in text:
            assert hashed == text
            continue
        assert b"dry_run" not in hashed and len(hashed) < len(text)
        full, kept = yaml.safe_load(text), yaml.safe_load(hashed)
        assert "dry_run" in full and kept == {k: v for k, v in full.items() if k != "dry_run"}
