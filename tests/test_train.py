"""Training loop: spectra vs. Lanczos, divergence, resume, cache, validation, determinism.

All runs use a small fake Fashion-MNIST (``fake_fmnist`` in conftest.py: IDX files written
to tmp; learnable: each class has its own pixel pattern) so the tests need no installed
data and stay fast.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from instab_lib import curvature
from instab_lib.experiments import train as train_mod
from instab_lib.experiments.models import build_model
from instab_lib.experiments.train import TrainConfig, load_run, period2_oscillation, train

TIMING = ["eig_time_s"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest; the fake data set is conftest's fake_fmnist


@pytest.fixture
def cfg(fake_fmnist) -> TrainConfig:
    return TrainConfig(data_dir=fake_fmnist, n_train=100, n_test=50, model_kwargs={"depth": 2, "width": 8},
                       lr=0.2, epochs=8, eval_every=2, k_top=3, k_bottom=1, target_train_acc=None,
                       checkpoint_every=2, checkpoint_seconds=0, seed=3)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a, b = a.drop(columns=TIMING, errors="ignore"), b.drop(columns=TIMING, errors="ignore")
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_period2_oscillation():
    c, a = torch.tensor([1.0, 2.0]), torch.tensor([0.3, -0.4])
    assert period2_oscillation(c - a, c + a, c - a) == pytest.approx(0.5)  # ‖a‖
    assert period2_oscillation(c, c + a, c + 2 * a) == pytest.approx(0.0, abs=1e-7)  # straight line


def test_run_table_and_spectra_match_lanczos(cfg, tmp_path):
    cfg = cfg.replace(eig_tol=1e-7, snapshot_epochs=(4,), hutchinson_samples=4, dtype="float64")
    r = train(cfg, tmp_path, progress=False)
    assert r.status == "finished" and r.epochs_run == 8 and list(r.table["epoch"]) == list(range(9))
    assert list(r.spectra["epoch"]) == [0, 2, 4, 6, 8]
    assert {"sharpness", "lambda_min", "eig_top_3", "cos_prev_1", "subspace_ref", "osc",
            "hutch_trace"} <= set(r.table.columns)
    assert r.table["osc"].iloc[1:-1].notna().all() and "IDX" in r.data_source
    # the recorder's eigenvalues at epoch 4 equal a fresh Lanczos solve at the same θ
    snap = r.snapshot(4)
    model = build_model("mlp", seed=0, **cfg.resolved_model_kwargs()).double()
    torch.nn.utils.vector_to_parameters(snap["theta"], model.parameters())
    from instab_lib.experiments.data import load_dataset

    ds = load_dataset("fashion-mnist", n_train=100, data_dir=cfg.data_dir)
    op = curvature.HessianOperator(model, torch.nn.functional.cross_entropy, (ds.X_train.double(), ds.y_train))
    ref = curvature.lanczos(op, 3, which="LA", tol=1e-8, seed=11)
    row = r.table.set_index("epoch").loc[4]
    got = torch.tensor([row["eig_top_1"], row["eig_top_2"], row["eig_top_3"]])
    torch.testing.assert_close(got, ref.eigenvalues.double(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(snap["eigenvalues"].double(), ref.eigenvalues.double(), rtol=1e-4, atol=1e-5)
    lo = curvature.lanczos(op, 1, which="SA", tol=1e-8, seed=11).eigenvalues[0].item()
    assert row["lambda_min"] == pytest.approx(lo, rel=1e-3, abs=1e-4)


def test_divergence_is_a_result(cfg):
    r = train(cfg.replace(lr=1e4, eval_every=1), use_cache=False, progress=False)
    assert r.status == "diverged" and r.diverged_step is not None and r.diverged_step <= 3
    assert r.diverged_epoch == r.epochs_run and len(r.table) == r.epochs_run + 1


def test_early_stop_and_sgd_mse_schedule(cfg):
    r = train(cfg.replace(target_train_acc=0.3, lr=0.5, epochs=50, eval_every=0), use_cache=False,
              progress=False)
    assert r.status == "early_stopped" and r.table["train_acc"].iloc[-1] >= 0.3 and r.epochs_run < 50
    s = train(cfg.replace(batch_size=32, loss="mse", optimizer="adam_ub", lr=1e-3,
                          optimizer_kwargs={"c": 0.1}, lr_schedule={"kind": "step", "epochs": [2], "values": [1e-4],
                                                                   "warmup_steps": 2}, epochs=3, eval_every=3),
              use_cache=False, progress=False)
    assert s.status == "finished" and list(s.table["step"]) == [0, 4, 8, 12]
    assert s.table["lr"].tolist() == [5e-4, 1e-3, 1e-4, 1e-4]


class Killed(Exception):
    pass


def test_resume_after_kill_gives_identical_numbers(cfg, tmp_path):
    full = train(cfg, tmp_path / "a", progress=False)

    def kill(epoch, row):
        if epoch == 5:
            raise Killed

    with pytest.raises(Killed):
        train(cfg, tmp_path / "b", progress=False, callback=kill)
    key_dir = tmp_path / "b" / full.key
    assert (key_dir / "checkpoint.pt").is_file() and not (key_dir / "result.json").exists()
    seen = []
    resumed = train(cfg, tmp_path / "b", progress=False, callback=lambda e, r: seen.append(e))
    assert seen == [5, 6, 7, 8]  # resumed from the epoch-4 checkpoint
    _same(full.table, resumed.table)
    assert not (key_dir / "checkpoint.pt").exists()


def test_cache_hit_does_not_train(cfg, tmp_path, monkeypatch):
    first = train(cfg, tmp_path, progress=False)

    def boom(*a, **k):
        raise AssertionError("trained although the run is cached")

    monkeypatch.setattr(train_mod, "_Driver", boom)
    again = train(cfg, tmp_path, progress=False)
    assert again.status == first.status and again.path == first.path
    pd.testing.assert_frame_equal(first.table, again.table, check_exact=True)
    assert load_run(first.path).config == cfg
    # checkpoint_every / checkpoint_seconds / data_dir do not change the key; defaults filled in do not either
    assert train_mod.config_key(cfg.replace(checkpoint_every=7, checkpoint_seconds=5.0)) == first.key
    assert train_mod.config_key(cfg.replace(**{"model_kwargs.activation": "relu"})) == first.key
    assert train_mod.config_key(cfg.replace(lr=0.3)) != first.key


def test_cpu_runs_are_bit_for_bit_reproducible(cfg):
    a = train(cfg.replace(batch_size=25), use_cache=False, progress=False)
    b = train(cfg.replace(batch_size=25), use_cache=False, progress=False)
    _same(a.table, b.table)


@pytest.mark.parametrize("changes, match", [
    ({"dataset": "mnist"}, "unknown dataset"),
    ({"model": "vit"}, "unknown model"),
    ({"optimizer": "lion"}, "unknown optimizer"),
    ({"lr": -0.1}, "learning rate"),
    ({"lr": 0}, "learning rate"),
    ({"optimizer": "adam_ub"}, "needs optimizer_kwargs"),
    ({"optimizer": "adam_ub", "optimizer_kwargs": {"c": -1.0}}, "c must"),
    ({"optimizer_kwargs": {"beta2": 0.9}}, "does not take"),
    ({"k_top": 10**6}, "parameter count"),
    ({"model_kwargs": {"width": 0}}, "width"),
    ({"model_kwargs": {"hidden": 3}}, "does not take"),
    ({"loss": "hinge"}, "unknown loss"),
    ({"batch_size": 1000}, "exceeds n_train"),
    ({"balanced": True, "n_train": 105}, "divisible"),
    ({"reference_epoch": 3}, "evaluation epoch"),
    ({"snapshot_epochs": (99,)}, "outside"),
    ({"hutchinson_samples": 1}, "hutchinson"),
    ({"lr_schedule": {"kind": "cosine"}}, "unknown schedule"),
    ({"device": "tpu"}, "device"),
    ({"epochs": 0}, "epochs"),
    ({"model": "dln"}, "toy"),
])
def test_bad_configs_fail_before_compute(cfg, changes, match, monkeypatch):
    monkeypatch.setattr(train_mod, "_Driver", lambda *a, **k: pytest.fail("computed"))
    with pytest.raises(ValueError, match=match):
        cfg.replace(**changes)


def _train_in_child(args):
    cfg, cache = args
    torch.set_num_threads(1)
    r = train(cfg, cache, progress=False)
    return r.wall_time_s, r.key


def test_two_processes_asking_for_one_run_train_it_once(cfg, tmp_path):
    """A lock per run key: the second process waits and reads the first one's result back."""
    import multiprocessing as mp

    slow = cfg.replace(epochs=8, eval_every=1)
    with mp.get_context("spawn").Pool(2) as pool:
        (wa, ka), (wb, kb) = pool.map(_train_in_child, [(slow, str(tmp_path)), (slow, str(tmp_path))])
    assert ka == kb and wa == wb  # the same result.json: trained once
    assert len(list(tmp_path.glob("*/result.json"))) == 1


def test_same_parity_rotation_compares_with_two_epochs_back(cfg, tmp_path):
    from instab_lib import rotation

    c = cfg.replace(eval_every=1, epochs=6, snapshot_epochs=tuple(range(7)))
    r = train(c, tmp_path, progress=False)
    t = r.table.set_index("epoch")
    assert np.isnan(t.loc[1, "par_lag"]) and (t.loc[2:, "par_lag"] == 2).all()
    for e in (2, 5):
        a, b = r.snapshot(e - 2), r.snapshot(e)
        rep = rotation.eigenvector_similarity(
            _eig(a["eigenvalues"], a["eigenvectors"]), _eig(b["eigenvalues"], b["eigenvectors"]))
        assert t.loc[e, "subspace_par"] == pytest.approx(rep.subspace, abs=1e-12)
        assert t.loc[e, "cos_par_1"] == pytest.approx(float(rep.cosines[0]), abs=1e-12)
    c2 = cfg.replace(eval_every=2, epochs=8)  # even spacing: the previous evaluation already has the same parity
    t2 = train(c2, tmp_path, progress=False).table
    assert (t2["par_lag"].dropna() == 2).all()


def _eig(vals, vecs):
    from instab_lib.curvature import EigResult

    return EigResult(eigenvalues=vals, eigenvectors=vecs, residuals=torch.zeros_like(vals), n_matvec=0,
                     converged=True, which="LA", iterations=0, tol=0.0, scale=float(vals.abs().max()))


def test_sparse_test_metrics_and_late_spectra(cfg):
    r = train(cfg.replace(test_every=3, eval_every=1, eval_start=5, epochs=8), use_cache=False, progress=False)
    t = r.table.set_index("epoch")
    assert t["test_acc"].notna().tolist() == [e % 3 == 0 or e == 8 for e in t.index]
    assert t["sharpness"].notna().tolist() == [e == 0 or e >= 5 for e in t.index]  # epoch 0 = reference_epoch
    full = train(cfg.replace(epochs=8, eval_every=1), use_cache=False, progress=False).table.set_index("epoch")
    assert t.loc[8, "train_loss"] == full.loc[8, "train_loss"] and t.loc[6, "test_acc"] == full.loc[6, "test_acc"]


def test_full_batch_rows_reuse_the_steps_forward_with_identical_numbers(cfg, monkeypatch):
    """A full-batch run of a model without BatchNorm/Dropout takes its row metrics from the
    forward pass the next step uses: the table equals the one with a separate evaluation."""
    from instab_lib.experiments import loop

    c = cfg.replace(eval_every=4, k_bottom=0)
    fast = train(c, use_cache=False, progress=False)
    monkeypatch.setattr(loop, "mode_free", lambda model: False)  # forces the separate evaluation
    slow = train(c, use_cache=False, progress=False)
    _same(fast.table, slow.table)


def test_continuing_a_run_equals_training_on(cfg, tmp_path, monkeypatch):
    """init_from: GD from the final θ of a 5-epoch run, for 3 epochs, retraces epochs 5-8 of one
    8-epoch run (GD keeps no optimiser state)."""
    monkeypatch.setenv("INSTAB_RUNS", str(tmp_path))
    c = cfg.replace(eval_every=0, k_bottom=0, k_top=1)
    whole = train(c, tmp_path, progress=False)
    first = c.replace(epochs=5, snapshot_final=True)
    cont = train(c.replace(epochs=3, init_from=first.to_dict()), tmp_path, progress=False)
    np.testing.assert_array_equal(cont.table["train_loss"].to_numpy(), whole.table["train_loss"].to_numpy()[5:])
    assert cont.config.init_from["epochs"] == 5 and cont.config.init_from["snapshot_final"]
    with pytest.raises(ValueError, match="snapshot_final"):
        c.replace(init_from=c.replace(epochs=5).to_dict())
    with pytest.raises(ValueError, match="same model"):
        c.replace(init_from=first.replace(model_kwargs={"depth": 1, "width": 8}).to_dict())


def test_init_run_starts_from_the_parameters_it_is_given(cfg):
    """The caller, not init_run, produces a continuation's start: init_run copies theta0 in
    (and refuses one of the wrong size); without it the model is the seeded initialisation."""
    from instab_lib.experiments import loop

    fresh, _ = loop.init_run(cfg)
    theta = loop.flat_parameters(fresh)
    run, _ = loop.init_run(cfg, 2 * theta.double())
    torch.testing.assert_close(loop.flat_parameters(run), 2 * theta, rtol=0, atol=0)
    with pytest.raises(ValueError, match="theta0 has 3 parameters"):
        loop.init_run(cfg, torch.zeros(3))


def test_a_dead_network_stalls_instead_of_running_to_the_cap(cfg):
    """A run at chance-level accuracy whose loss does not move ends as 'stalled' after
    stall_epochs epochs (here: a learning rate too small to move anything)."""
    c = cfg.replace(eval_every=0, k_bottom=0, k_top=1, epochs=200, stall_epochs=20, lr=1e-9)
    r = train(c, use_cache=False, progress=False)
    assert r.status == "stalled" and r.epochs_run < 60
    healthy = train(c.replace(lr=0.2, epochs=30), use_cache=False, progress=False)
    assert healthy.status == "finished"
