"""nbs.execute_many: several notebooks at a time (the book build), longest first where a previous
execution is on record, every notebook attempted even after a failure, bad input refused before
anything runs. (That side-by-side execution leaves every page's numbers as they are is checked by
the book build itself: CI's pages are executed this way and their claims pinned in expectations.yml.)"""

from pathlib import Path

import pytest

from instab_lib.book import notebooks as nbs


def _record(nid: str) -> nbs.RunRecord:
    return nbs.RunRecord(nid, "default", Path(f"{nid}.ipynb"), Path(f"{nid}.numbers.json"), False, 1.0)


def test_longest_first_then_the_given_order_and_every_failure_attempted(monkeypatch, capsys):
    ids = ["descent_lemma", "dln_rotations", "goldilocks", "flatness_theory"]
    seconds = {"goldilocks": 800.0, "dln_rotations": 11.0}
    monkeypatch.setattr(nbs, "_last_seconds", lambda nid, label: seconds.get(nid))
    ran: list[str] = []

    def fake_execute(nid, preset="default", progress=None, **kw):
        ran.append(nid)
        if nid in ("descent_lemma", "flatness_theory"):
            raise nbs.NotebookError(f"{nid}: ValueError: broken")
        return _record(nid)

    monkeypatch.setattr(nbs, "execute", fake_execute)
    with pytest.raises(nbs.NotebookError, match=r"^descent_lemma: ValueError: broken \(1 more failed: flatness_theory\)"):
        nbs.execute_many(ids, jobs=1)
    assert ran == ["goldilocks", "dln_rotations", "descent_lemma", "flatness_theory"]
    out = capsys.readouterr().out
    assert "goldilocks: executed in 1.0 s" in out and "flatness_theory: FAILED" in out


def test_records_come_back_in_the_given_order(monkeypatch):
    monkeypatch.setattr(nbs, "_last_seconds", lambda nid, label: {"dln_rotations": 5.0}.get(nid))
    monkeypatch.setattr(nbs, "execute", lambda nid, preset="default", progress=None, **kw: _record(nid))
    out = nbs.execute_many(["descent_lemma", "dln_rotations"], jobs=1)
    assert list(out) == ["descent_lemma", "dln_rotations"]


@pytest.mark.parametrize("ids, preset, reason", [
    (["descent_lemma", "no_such_page"], "default", "no_such_page"),
    (["descent_lemma"], "no_such_preset", "no preset 'no_such_preset'"),
])
def test_bad_input_refused_before_any_notebook_runs(monkeypatch, ids, preset, reason):
    monkeypatch.setattr(nbs, "execute", lambda *a, **k: pytest.fail("a notebook was executed"))
    with pytest.raises(nbs.NotebookError, match=reason):
        nbs.execute_many(ids, preset=preset, jobs=2)


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5"])
def test_a_bad_jobs_setting_is_one_line(monkeypatch, raw):
    monkeypatch.setenv(nbs.JOBS_ENV, raw)
    with pytest.raises(nbs.NotebookError, match=f"^{nbs.JOBS_ENV}='{raw}': expected a positive integer"):
        nbs.default_jobs()


def test_jobs_default_and_setting(monkeypatch):
    monkeypatch.delenv(nbs.JOBS_ENV, raising=False)
    assert 1 <= nbs.default_jobs() <= nbs.DEFAULT_JOBS
    monkeypatch.setenv(nbs.JOBS_ENV, "3")
    assert nbs.default_jobs() == 3


def test_notebooks_reading_the_same_shared_runs_do_not_run_side_by_side():
    from instab_lib.book import schedule

    assert schedule.shared_experiments("goldilocks") == {"fmnist_goldilocks"}
    assert schedule.shared_experiments("descent_lemma") == frozenset()
    ids = ["goldilocks", "rotation_predicts_generalization", "sgd_flattening", "phases_of_training",
           "spectral_density", "cifar_generalization"]
    keys = {n: schedule.shared_run_keys(n, nbs.resolve_parameters(n, "default")) for n in ids}
    # the SGD experiment's full-batch runs are the Goldilocks grid's: a conflict found through the runs
    assert keys["sgd_flattening"] & keys["goldilocks"] and keys["rotation_predicts_generalization"] >= keys["goldilocks"]
    pending = ["rotation_predicts_generalization", "sgd_flattening", "spectral_density", "cifar_generalization"]
    assert schedule.next_notebook(pending, ["goldilocks"], keys) == "spectral_density"
    assert schedule.next_notebook(pending, ["phases_of_training"], keys) == "rotation_predicts_generalization"
    assert schedule.next_notebook(pending[:2], ["goldilocks"], keys) is None  # wait: both read the grid
    assert schedule.next_notebook(pending[:2], [], keys) == "rotation_predicts_generalization"
    assert schedule.next_notebook([], ["goldilocks"], keys) is None
    # once the runs both read are cached, the two may run side by side: the rotation page reads the grid and (for ρ
    # across batch sizes) the SGD experiment's runs, so the grid alone being done is not enough
    assert schedule.next_notebook(pending[1:2], ["rotation_predicts_generalization"], keys) is None
    assert schedule.shared_experiments("rotation_predicts_generalization") >= {"fmnist_goldilocks", "fmnist_sgd"}
    assert schedule.next_notebook(pending[1:2], ["rotation_predicts_generalization"], keys,
                                  done=keys["goldilocks"]) is None
    assert schedule.next_notebook(pending[1:2], ["rotation_predicts_generalization"], keys,
                                  done=keys["goldilocks"] | keys["sgd_flattening"]) == "sgd_flattening"
