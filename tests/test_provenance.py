"""Run and execution keys follow the code that can change a number, and nothing else."""

import shutil

import pytest

from instab_lib import notebooks as nbs
from instab_lib import provenance, seeding, train


@pytest.fixture
def lib_copy(tmp_path, monkeypatch):
    """A copy of the library under tmp, imported by the fingerprint functions in place of the real one."""
    src = provenance._package_dir()
    dst = tmp_path / "instab_lib"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "_package_dir", lambda: dst)
    return dst


def _edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_docstrings_and_comments_keep_the_fingerprints(lib_copy):
    before = (provenance.run_fingerprint(), provenance.library_fingerprint())
    _edit(lib_copy / "curvature" / "__init__.py", '"""Curvature of an empirical risk', '"""Curvature (reworded) of an empirical risk')
    _edit(lib_copy / "train.py", "def train(", "# a new comment\n\n\ndef train(")
    _edit(lib_copy / "optim.py", "\n", "\n# another comment\n")
    assert (provenance.run_fingerprint(), provenance.library_fingerprint()) == before


def test_a_change_that_can_alter_numbers_changes_the_run_fingerprint(lib_copy):
    before = provenance.run_fingerprint()
    _edit(lib_copy / "curvature" / "results.py", "def _generator(seed: int)", "def _generator(seed: int, _unused: int = 1)")
    assert provenance.run_fingerprint() != before


def test_analysis_modules_do_not_invalidate_training_runs(lib_copy):
    """slices is not imported by a training run: editing it re-executes pages, not runs."""
    assert "slices" not in provenance.import_closure(["train", "sweep"])
    assert {"curvature", "optim", "models", "data", "seeding"} <= set(provenance.import_closure(["train", "sweep"]))
    run_before, lib_before = provenance.run_fingerprint(), provenance.library_fingerprint()
    _edit(lib_copy / "slices.py", "def unit(v: Tensor)", "def unit(v: Tensor, _changed: int = 0)")
    assert provenance.run_fingerprint() == run_before
    assert provenance.library_fingerprint() != lib_before


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
    _edit(lib_copy / "plotting.py", '"""Plot style', '"""Plot style (docstring only)')
    assert nbs.run_key(nid, params) == key
    _edit(lib_copy / "plotting.py", '"figure.dpi": 110', '"figure.dpi": 111')
    assert nbs.run_key(nid, params) != key


def test_stamp_fields_name_the_machine_and_the_code():
    f = provenance.stamp_fields()
    for k in ("commit", "dirty", "library_fingerprint", "run_fingerprint", "torch", "cpu_capability", "python",
              "threads", "device", "seed_offset", "processor"):
        assert k in f, k
    assert f["cpu_capability"] not in ("", "unknown")


def test_no_notebook_imports_the_book_machinery():
    """The book's modules are left out of the library fingerprint: sound only while no notebook
    (nor a module a notebook can import) imports one of them."""
    import ast

    for nid in nbs.notebook_ids():
        tree = ast.parse((nbs.notebooks_dir() / f"{nid}.py").read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("instab_lib"):
                names.update([node.module.split(".")[1]] if "." in node.module else [a.name for a in node.names])
            elif isinstance(node, ast.Import):
                names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("instab_lib."))
        assert not names & provenance.BOOK_MODULES, (nid, names & provenance.BOOK_MODULES)
    kernel_side = [m for m in provenance.library_modules() if m not in provenance.BOOK_MODULES]
    reachable = set(provenance.import_closure(kernel_side))
    assert not reachable & provenance.BOOK_MODULES, reachable & provenance.BOOK_MODULES


def test_editing_the_book_machinery_keeps_the_library_fingerprint(lib_copy):
    before = provenance.library_fingerprint()
    _edit(lib_copy / "pages.py", "def scoreboard(", "_X = 1\n\n\ndef scoreboard(")
    assert provenance.library_fingerprint() == before


def test_a_change_inside_a_subpackage_changes_the_fingerprints(lib_copy):
    """curvature is a package: a change in one of its files must reach the run key."""
    assert "curvature" in provenance.library_modules()
    before = (provenance.run_fingerprint(), provenance.library_fingerprint())
    _edit(lib_copy / "curvature" / "tracking.py", "\n", "\n_CHANGED = 1\n")
    after = (provenance.run_fingerprint(), provenance.library_fingerprint())
    assert after[0] != before[0] and after[1] != before[1]
