"""A cache entry that cannot be read is treated as missing: one warning line naming the file, then
recomputed. Every file kind of the three caches (runs, executed notebooks, the paper archive) is
truncated, emptied and garbled in turn.

Our own writes are atomic, so such damage comes from outside (a broken disk, a partial copy, a
restored CI cache); before this, 7 of 12 such probes on the run cache made every later
``train(...)`` of that configuration crash (shared/NOTES.md).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

from instab_lib.book import archive, claims, cli, provenance
from instab_lib.book import notebooks as nbs
from instab_lib.experiments import fingerprint, sweep
from instab_lib.experiments import train as train_mod
from instab_lib.experiments.cache_files import (CacheDamagedWarning, Damaged, file_digest, read_sealed,
                                                warn_damaged, write_sealed)
from instab_lib.experiments.train import TrainConfig, train
from test_archive import tiny_png

pytestmark = pytest.mark.usefixtures("one_thread")


def _garble(data: bytes) -> bytes:
    """The middle third of the bytes flipped (XOR 0x5A): same length, different content."""
    a, b = len(data) // 3, max(len(data) // 3 + 1, 2 * len(data) // 3)
    return data[:a] + bytes(x ^ 0x5A for x in data[a:b]) + data[b:]


DAMAGES = {"truncated": lambda data: data[: len(data) // 2], "emptied": lambda data: b"", "garbled": _garble}


def damage(path: Path, how: str) -> None:
    before = path.read_bytes()
    path.write_bytes(DAMAGES[how](before))
    assert path.read_bytes() != before


def one_line_naming(record: list[warnings.WarningMessage], path: Path) -> str:
    """The one :class:`CacheDamagedWarning` recorded: a single line naming ``path``."""
    lines = [str(w.message) for w in record if issubclass(w.category, CacheDamagedWarning)]
    assert len(lines) == 1, lines
    assert "\n" not in lines[0] and str(path) in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def no_damage_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheDamagedWarning)
        yield


# --------------------------------------------------------------------------- the helpers
def test_sealed_files_refuse_every_damage(tmp_path):
    f = tmp_path / "x.bin"
    write_sealed(f, b"payload " * 100)
    assert read_sealed(f) == b"payload " * 100
    for how in DAMAGES:
        write_sealed(f, b"payload " * 100)
        damage(f, how)
        with pytest.raises(Damaged, match=str(f)):
            read_sealed(f)


def test_torch_load_reads_a_garbled_tensor_without_complaint(tmp_path):
    """Why the run cache keeps digests: a parser does not see every damage."""
    f = tmp_path / "t.pt"
    x = torch.arange(64, dtype=torch.float64)
    torch.save(x, f)
    data = bytearray(f.read_bytes())
    at = bytes(data).find(x.numpy().tobytes()[8:16])
    data[at:at + 8] = bytes(8)
    f.write_bytes(bytes(data))
    assert not torch.equal(torch.load(f), x)  # read back, silently wrong


# --------------------------------------------------------------------------- the run cache
@pytest.fixture
def cfg(fake_fmnist) -> TrainConfig:
    return TrainConfig(data_dir=fake_fmnist, n_train=60, n_test=30, model_kwargs={"depth": 1, "width": 6},
                       lr=0.2, epochs=4, eval_every=2, k_top=2, k_bottom=0, target_train_acc=None,
                       snapshot_epochs=(2,), checkpoint_every=1, checkpoint_seconds=0, seed=5)


@pytest.fixture
def trainings(monkeypatch) -> list[int]:
    """One entry per run actually trained (not read back)."""
    count: list[int] = []
    real = train_mod._Driver

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, *a, **k):
            count.append(1)
            super().__init__(*a, **k)

    monkeypatch.setattr(train_mod, "_Driver", Counting)
    return count


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.drop(columns=["eig_time_s"]), b.drop(columns=["eig_time_s"]), check_exact=True)


@pytest.mark.parametrize("how", list(DAMAGES))
@pytest.mark.parametrize("name", ["result.json", "table.npz", "snapshots/epoch_2.pt"])
def test_a_damaged_run_is_trained_again(cfg, tmp_path, trainings, no_damage_warning, name, how):
    first = train(cfg, tmp_path, progress=False)
    theta = first.snapshot(2)["theta"]
    f = first.path / name
    damage(f, how)
    with pytest.warns(CacheDamagedWarning) as record:
        again = train(cfg, tmp_path, progress=False)
        snap = again.snapshot(2)
    one_line_naming(record, f)
    assert len(trainings) == 2  # trained once more
    _same(first.table, again.table)
    assert torch.equal(snap["theta"], theta)
    third = train(cfg, tmp_path, progress=False)  # healed: read back, no warning, no training
    assert torch.equal(third.snapshot(2)["theta"], theta) and len(trainings) == 2


@pytest.mark.parametrize("how", list(DAMAGES))
def test_a_damaged_csv_is_rewritten_from_the_table(cfg, tmp_path, trainings, how):
    first = train(cfg, tmp_path, progress=False)
    f = first.path / "table.csv"
    original = f.read_bytes()
    damage(f, how)
    with pytest.warns(CacheDamagedWarning) as record:
        again = train(cfg, tmp_path, progress=False)
    assert "rewriting it from table.npz" in one_line_naming(record, f)
    assert len(trainings) == 1 and f.read_bytes() == original  # not retrained: the table was whole
    _same(first.table, again.table)


class Killed(Exception):
    pass


def _kill_at_3(epoch: int, row: dict) -> None:
    if epoch == 3:
        raise Killed


@pytest.mark.parametrize("how", list(DAMAGES))
def test_a_damaged_checkpoint_is_discarded_and_the_run_trained_from_its_start(cfg, tmp_path, how):
    full = train(cfg, tmp_path / "whole", progress=False)
    with pytest.raises(Killed):
        train(cfg, tmp_path / "killed", progress=False, callback=_kill_at_3)
    ck = tmp_path / "killed" / full.key / "checkpoint.pt"
    damage(ck, how)
    seen: list[int] = []
    with pytest.warns(CacheDamagedWarning) as record:
        resumed = train(cfg, tmp_path / "killed", progress=False, callback=lambda e, r: seen.append(e))
    assert "from its start" in one_line_naming(record, ck)
    assert seen == [0, 1, 2, 3, 4] and not ck.exists()
    _same(full.table, resumed.table)


def test_a_whole_checkpoint_is_still_resumed(cfg, tmp_path, no_damage_warning):
    with pytest.raises(Killed):
        train(cfg, tmp_path, progress=False, callback=_kill_at_3)
    seen: list[int] = []
    train(cfg, tmp_path, progress=False, callback=lambda e, r: seen.append(e))
    assert seen == [4]  # resumed from the epoch-3 checkpoint (written before the callback that stopped it)


def test_a_sweep_trains_a_damaged_run_again(cfg, tmp_path, trainings):
    cfgs = [cfg, cfg.replace(lr=0.1)]
    first = sweep.run_many(cfgs, tmp_path, executor="serial")
    f = first[1].path / "table.npz"
    damage(f, "garbled")
    with pytest.warns(CacheDamagedWarning) as record:
        again = sweep.run_many(cfgs, tmp_path, executor="serial")
    one_line_naming(record, f)
    assert len(trainings) == 3
    for a, b in zip(first, again):
        _same(a.table, b.table)


# --------------------------------------------------------------------------- the execution cache
NID = "descent_lemma"


@pytest.fixture
def kernel(tmp_path, monkeypatch) -> list[str]:
    """papermill replaced by a kernel that writes a small executed notebook and its numbers (and
    can report run-cache damage the way a real page would); returns one entry per execution."""
    import nbformat
    import papermill

    runs: list[str] = []

    def execute_notebook(nb, out, **kwargs):
        runs.append(out)
        if os.environ.get("FAKE_RUN_CACHE_DAMAGE"):
            warn_damaged(Damaged("/runs/abc/table.npz", "BadZipFile: File is not a zip file"), "training the run again")
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), out)
        Path(os.environ[claims.NUMBERS_ENV]).write_text(json.dumps({"x": 1.0, "n": 3}))

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    monkeypatch.setattr(nbs, "build_dir", lambda: tmp_path / "_build")
    return runs


@pytest.mark.parametrize("how", list(DAMAGES))
@pytest.mark.parametrize("kind", ["notebook", "numbers", "stamp"])
def test_a_damaged_execution_is_executed_again(kernel, kind, how):
    first = nbs.execute(NID, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheDamagedWarning)
        assert nbs.execute(NID, progress=False).skipped and len(kernel) == 1
    stamp = nbs.output_paths(NID)[2]
    assert json.loads(stamp.read_text())["files"] == {"notebook": file_digest(first.notebook_path),
                                                      "numbers": file_digest(first.numbers_path)}
    f = {"notebook": first.notebook_path, "numbers": first.numbers_path, "stamp": stamp}[kind]
    damage(f, how)
    with pytest.warns(CacheDamagedWarning) as record:
        again = nbs.execute(NID, progress=False)
    assert "executing the notebook again" in one_line_naming(record, f)
    assert not again.skipped and len(kernel) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheDamagedWarning)
        assert nbs.execute(NID, progress=False).skipped and len(kernel) == 2  # healed


def test_damaged_numbers_fail_the_claims_instead_of_crashing_verify(kernel):
    record = nbs.execute(NID, progress=False)
    damage(record.numbers_path, "truncated")
    with pytest.warns(CacheDamagedWarning) as warned:
        results = nbs.verify([NID])
    one_line_naming(warned, record.numbers_path)
    assert results and not any(r.ok for r in results)


def test_run_cache_damage_inside_the_kernel_is_printed_by_the_runner_not_left_on_the_page(kernel, monkeypatch,
                                                                                            capsys):
    monkeypatch.setenv("FAKE_RUN_CACHE_DAMAGE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheDamagedWarning)
        record = nbs.execute(NID, progress=False)
    err = capsys.readouterr().err.splitlines()
    assert [ln for ln in err if "damaged" in ln] == [
        f"instab: warning: {NID}: damaged cache file /runs/abc/table.npz (BadZipFile: File is not a zip file): "
        "training the run again"]
    assert "damaged" not in record.notebook_path.read_text()
    assert not list(record.notebook_path.parent.glob(".*.log"))


# --------------------------------------------------------------------------- the archive
@pytest.fixture
def entry(tmp_path, monkeypatch) -> Path:
    """An archived entry of NID as :func:`archive.create` writes it (its stamp holds the numbers' digest)."""
    monkeypatch.setattr(archive, "repo_root", lambda: tmp_path)
    d = tmp_path / "results" / "paper" / NID
    d.mkdir(parents=True)
    (d / "numbers.json").write_text(json.dumps({"x": 1.0}))
    stamp = {"notebook": NID, "commit": "abcdef0123456789", "finished": "2026-12-01T10:00:00", "seconds": 1.0,
             "library_fingerprint": fingerprint.library_fingerprint(), "source_digest": provenance.source_digest(NID),
             "files": {"numbers": file_digest(d / "numbers.json")}}
    (d / "stamp.json").write_text(json.dumps(stamp))
    (d / "fig-01.png").write_bytes(tiny_png())
    return d


@pytest.mark.parametrize("how", list(DAMAGES))
@pytest.mark.parametrize("name", ["stamp.json", "numbers.json", "fig-01.png"])
def test_a_damaged_archive_entry_is_missing_and_named_by_verify(entry, capsys, name, how):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheDamagedWarning)
        assert archive.load(NID) is not None
    f = entry / name
    damage(f, how)
    with pytest.warns(CacheDamagedWarning) as record:
        assert archive.load(NID) is None
    assert f"instab archive {NID} --preset paper" in one_line_naming(record, f)
    with pytest.warns(CacheDamagedWarning):
        row = next(r for r in archive.status() if r["notebook"] == NID)
    assert row["entry"] is None and row["reason"].startswith(f"damaged archive entry: {name}")
    results, missing = archive.verify()
    bad = [r for r in results if r.notebook == NID]
    assert missing.count(NID) == 0 and len(bad) == 1 and not bad[0].ok and name in bad[0].error
    capsys.readouterr()
    assert cli.main(["verify", "--label", "paper", NID]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len([ln for ln in err if str(f) in ln]) == 1
