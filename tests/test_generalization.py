"""Rank correlations, ρ measures and run summaries of instab_lib.experiments.generalization (exact small cases)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from instab_lib.experiments import generalization as gen
from instab_lib.experiments.train import RunResult, TrainConfig


# --------------------------------------------------------------------------- ranks
def test_rankdata_ties_get_average_rank():
    np.testing.assert_array_equal(gen.rankdata([10, 20, 20, 5]), [2.0, 3.5, 3.5, 1.0])
    np.testing.assert_array_equal(gen.rankdata([3, 3, 3]), [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(gen.rankdata([]), [])


def test_spearman_exact_values():
    assert gen.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert gen.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # monotone but non-linear: still 1
    assert gen.spearman([1, 2, 3, 4, 5], [1, 8, 27, 64, 125]) == 1.0
    # 1 − 6Σd²/(n(n²−1)) with ranks (1,2,3,4,5) vs (2,1,4,3,5): Σd² = 4 → 1 − 24/120 = 0.8
    assert gen.spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8, abs=1e-12)


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, 12).astype(float)
    y = rng.integers(0, 5, 12).astype(float)
    assert gen.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_spearman_undefined_cases_are_nan():
    assert math.isnan(gen.spearman([1, 2], [1, 2]))  # fewer than 3 pairs
    assert math.isnan(gen.spearman([1, 2, 3], [5, 5, 5]))  # constant side: no sign
    assert math.isnan(gen.spearman([1, 2, float("nan"), 4], [1, 2, 3, float("nan")]))  # 2 finite pairs left
    assert gen.spearman([1, 2, 3, float("nan")], [3, 2, 1, 0]) == -1.0  # NaN pair skipped
    with pytest.raises(ValueError):
        gen.spearman([1, 2, 3], [1, 2])


# --------------------------------------------------------------------------- ρ
def _table(cos_prev, subspace_ref, acc=(0.5, 0.9, 1.0)):
    n = len(cos_prev)
    return pd.DataFrame({"epoch": np.arange(n) * 10, "step": np.arange(n) * 10, "train_acc": list(acc)[:n],
                         "test_acc": list(acc)[:n], "train_loss": np.linspace(2, 0.1, n),
                         "sharpness": np.linspace(2, 20, n), "cos_prev_1": cos_prev, "subspace_ref": subspace_ref})


def test_rho_measures_exact():
    t = _table([np.nan, 0.9, 0.5], [1.0, 0.8, 0.25])
    assert gen.rho_rotation(t) == pytest.approx(0.3)  # mean(0.1, 0.5)
    assert gen.rho_subspace(t) == 0.25
    # rows without a spectrum are ignored
    t2 = pd.concat([t, pd.DataFrame({"epoch": [25], "sharpness": [np.nan], "cos_prev_1": [np.nan],
                                     "subspace_ref": [np.nan]})]).sort_values("epoch")
    assert gen.rho_rotation(t2) == pytest.approx(0.3)
    one = _table([np.nan], [1.0])
    assert math.isnan(gen.rho_rotation(one)) and math.isnan(gen.rho_subspace(one))
    assert math.isnan(gen.rho_rotation(pd.DataFrame({"epoch": [0]})))


# --------------------------------------------------------------------------- summaries
def _run(lr, seed, status, train_acc, test_acc, max_s=20.0, diverged_step=None):
    cfg = TrainConfig(lr=lr, seed=seed, epochs=20, eval_every=10)
    t = _table([np.nan, 0.9, 0.5], [1.0, 0.8, 0.25], acc=(0.1, 0.5, train_acc))
    t["test_acc"] = [0.1, 0.4, test_acc]
    t["sharpness"] = [1.0, max_s, max_s / 2]
    return RunResult(config=cfg, key=f"{lr}-{seed}", status=status, table=t, diverged_step=diverged_step,
                     data_source="test")


def test_summary_outcomes_and_stability():
    runs = [_run(0.01, 0, "early_stopped", 0.999, 0.70, max_s=50),
            _run(0.01, 1, "finished", 0.95, 0.72, max_s=60),
            _run(0.1, 0, "early_stopped", 0.999, 0.80),
            _run(0.1, 1, "early_stopped", 0.999, 0.82),
            _run(1.0, 0, "diverged", 0.1, 0.1, diverged_step=7),
            _run(1.0, 1, "finished", 0.1, 0.1)]
    df = gen.summarize_runs(runs)
    assert list(df["outcome"]) == ["target", "capped", "target", "target", "diverged", "collapsed"]
    assert df.loc[4, "diverged_step"] == 7
    assert math.isnan(df.loc[4, "final_sharpness"]) and df.loc[0, "final_sharpness"] == 25.0
    assert df.loc[0, "eta_max_s"] == pytest.approx(0.5)
    assert df.loc[0, "rho_rot"] == pytest.approx(0.3) and df.loc[0, "rho_sub"] == 0.25
    lim = gen.stability_of_runs(df)
    # 0.01·60 = 0.6 stable; 0.1·20 = 2 unstable → bracket [0.01, 0.1]
    assert lim.largest_stable == 0.01 and lim.smallest_unstable == 0.1


def test_summary_rejects_failed_runs_and_bad_status():
    bad = RunResult(config=TrainConfig(lr=0.1), key="x", status="failed", table=pd.DataFrame(), error="boom")
    with pytest.raises(RuntimeError, match="boom"):
        gen.summarize_runs([bad])
    with pytest.raises(ValueError):
        gen.outcome("weird", 0.9, 0.2)
    assert gen.outcome("finished", float("nan"), 0.2) == "collapsed"


# --------------------------------------------------------------------------- the Goldilocks grid
def test_describe_runs_counts_trained():
    df = pd.DataFrame({"data_source": ["copy B", "copy A", "copy A"], "outcome": ["target", "diverged", "capped"]})
    assert gen.describe_runs(df) == ("Data: **copy A; copy B**; 3 runs, of which 2 did not diverge or collapse and 1 "
                                     "reached the train-accuracy target.")


# --------------------------------------------------------------------------- same parity, controls, Goldilocks
def test_rho_parity_is_the_late_half_median():
    t = pd.DataFrame({"epoch": [0, 10, 20, 30, 40], "sharpness": [1.0] * 5,
                      "cos_par_1": [np.nan, 0.2, 0.9, 0.8, 0.6]})
    assert gen.rho_parity(t) == pytest.approx(0.2)  # epochs ≥ 20: 1 − (0.9, 0.8, 0.6) → median 0.2
    assert gen.rho_parity(t, start_frac=0.0) == pytest.approx(0.3)  # median of 0.8, 0.1, 0.2, 0.4
    assert math.isnan(gen.rho_parity(t.assign(cos_par_1=np.nan)))
    # more evaluations of the same late behaviour leave it unchanged
    dense = pd.DataFrame({"epoch": range(0, 41, 2), "sharpness": 1.0, "cos_par_1": [np.nan] + [0.8] * 20})
    sparse = dense.iloc[::5]
    assert gen.rho_parity(dense) == pytest.approx(gen.rho_parity(sparse)) == pytest.approx(0.2)


def test_partial_spearman_removes_a_common_cause():
    rng = np.random.default_rng(0)
    z = rng.normal(size=400)
    x, y = z + 0.3 * rng.normal(size=400), z + 0.3 * rng.normal(size=400)
    assert gen.spearman(x, y) > 0.8 and abs(gen.partial_spearman(x, y, z)) < 0.15
    # the formula on rank correlations (closed form)
    r = {k: stats.spearmanr(*v).statistic for k, v in {"xy": (x, y), "xz": (x, z), "yz": (y, z)}.items()}
    ref = (r["xy"] - r["xz"] * r["yz"]) / math.sqrt((1 - r["xz"] ** 2) * (1 - r["yz"] ** 2))
    assert gen.partial_spearman(x, y, z) == pytest.approx(ref)
    assert math.isnan(gen.partial_spearman([1, 2, 3], [3, 2, 1], [1, 2, 3]))


def test_spearman_within_groups():
    # across groups x and y rise together, within each group they run opposite
    x = [1, 2, 3, 11, 12, 13]
    y = [3, 2, 1, 13, 12, 11]
    g = ["a", "a", "a", "b", "b", "b"]
    assert gen.spearman(x, y) > 0 and gen.spearman_within(x, y, g) == pytest.approx(-1.0)
    assert math.isnan(gen.spearman_within([1, 2], [1, 2], ["a", "b"]))


def test_best_gain_and_phase_transition_fit():
    acc = pd.DataFrame({0.001: [0.70, 0.72], 0.01: [0.74, 0.76], 0.1: [0.80, 0.78], 1.0: [np.nan, 0.5]},
                       index=[0, 1])
    assert gen.best_gain(acc, [0.001, 0.01], [0.1, 1.0], [0, 1]) == pytest.approx(0.79 - 0.75)
    assert gen.best_gain(acc, [0.001, 0.01], [0.1, 1.0], [1, 1]) == pytest.approx(0.78 - 0.76)
    assert gen.comparable(acc, [0.1, 1.0], "above") == [0.1]  # η = 1 lost a seed
    assert gen.comparable(acc, [0.001, 1.0], "below") == [0.001, 1.0]  # half the seeds suffice below
    with pytest.raises(ValueError):
        gen.comparable(acc, [0.1], "left")
    # a jump of 0.05 at x0 = 0 on a smooth curve is found and preferred; without it, it is not
    x = np.tile(np.linspace(-3, 3, 13), 4)
    s = np.repeat(np.arange(4), 13)
    noise = np.random.default_rng(1).normal(scale=0.003, size=x.size)
    smooth = 0.7 + 0.01 * x - 0.004 * x ** 2 + 0.01 * s + noise
    fit = gen.phase_transition_fit(x, smooth + 0.05 * (x > 0), s, 0.0)
    assert fit["jump"] == pytest.approx(0.05, abs=0.005) and fit["delta_bic_jump"] > 10
    fit0 = gen.phase_transition_fit(x, smooth, s, 0.0)
    assert abs(fit0["jump"]) < 0.005 and fit0["delta_bic_jump"] < 6  # no strong evidence for a jump that is not there
    # flat below the limit, rising above it: the kink model wins and finds the slope
    kinked = 0.7 + 0.02 * np.maximum(x, 0) + 0.01 * s + noise
    fitk = gen.phase_transition_fit(x, kinked, s, 0.0)
    assert fitk["slope_above"] == pytest.approx(0.02, abs=0.003) and fitk["delta_bic_kink"] > 10
    assert gen.seed_slope(x[x < 0], kinked[x < 0], s[x < 0]) == pytest.approx(0.0, abs=0.002)
    assert gen.seed_slope(x, 0.3 * x + s, s) == pytest.approx(0.3)
    assert math.isnan(gen.phase_transition_fit(x, smooth, s, 10.0)["jump"])  # nothing above the limit


# --------------------------------------------------------------------------- the author's drift
def test_cumulative_drift_replays_the_run_and_is_one_minus_dk_cos(fake_fmnist, tmp_path, one_thread):
    """cumulative_drift's replayed θ at the early epoch is the run's own (a run that saved that epoch
    gives the same subspace from its snapshot), and the drift is 1 − dk_cos of the two top-k
    eigenspaces; 0 when the early epoch's subspace is compared with itself, NaN before the early
    epoch, and a minibatch run is refused in one line."""
    import torch

    from instab_lib import curvature
    from instab_lib.experiments.loop import init_run
    from instab_lib.experiments.seeding import shifted
    from instab_lib.experiments.train import train
    from instab_lib.rotation import subspace_similarity

    cfg = TrainConfig(data_dir=fake_fmnist, n_train=100, n_test=50, model_kwargs={"depth": 2, "width": 8}, lr=0.2,
                      epochs=12, eval_every=0, k_top=0, target_train_acc=None, snapshot_epochs=(3,),
                      snapshot_final=True, dtype="float64", seed=2)
    res = train(cfg, tmp_path, progress=False)

    def top_at(theta):
        run, _ = init_run(cfg)
        with torch.no_grad():
            for p, q in zip(run.params, curvature.unflatten_like(theta, run.params)):
                p.copy_(q)
        op = curvature.HessianOperator(run.model, run.loss_fn, run.hessian)
        return curvature.lanczos(op, 2, "LA", tol=1e-10, seed=shifted(cfg.seed)).eigenvectors

    expected = 1.0 - subspace_similarity(top_at(res.snapshot(3)["theta"]), top_at(res.snapshot(res.epochs_run)["theta"]))
    assert gen.cumulative_drift(res, early_epoch=3, k=2, tol=1e-10) == pytest.approx(expected, abs=1e-9)
    assert 0.0 < expected < 1.0
    assert math.isnan(gen.cumulative_drift(res, early_epoch=res.epochs_run, k=2))
    with pytest.raises(ValueError, match="full-batch"):
        gen.cumulative_drift(RunResult(config=cfg.replace(batch_size=10), key="k", status="finished",
                                   table=pd.DataFrame()), k=2)
