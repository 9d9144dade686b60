"""Clipped-Ada's measurements and analyses: the per-step binding trace (``hooks.ClipTrace``), the validation
split (``TrainConfig.n_val``), spike-conditioned binding fractions, threshold ratios, the critical clip and the
pre-registered choice of the clip (``clipping``), and the shared runs of its setting (``shared_runs``)."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from instab_lib import optim, thresholds
from instab_lib.experiments import clipping, data, shared_runs, train
from instab_lib.experiments.hooks import ClipTrace, RowContext


def _row(ctx_hook, epoch):
    row = {"epoch": epoch}
    ctx_hook.on_row(RowContext(None, None, epoch, row, [], torch.zeros(1)))
    return row


def test_clip_trace_counts_binding_coordinates_per_step_exactly():
    # RMS-UB on fixed gradients: after step t the root is |g| (bias-corrected EMA of a constant g²)
    g = torch.tensor([0.01, 0.05, 0.2, 3.0], dtype=torch.float64)
    opt = optim.clipped_ada(1e-3, 0.1, beta1=0.0)
    params = [torch.zeros(4, dtype=torch.float64)]
    state = opt.init(params)
    hook = ClipTrace([0.04, 0.1, 1.0])
    run = SimpleNamespace(optimizer=opt)
    for _ in range(3):
        params, state = opt.update([g], state, params)
        hook.on_step(run, SimpleNamespace(opt_state=state))
    row = _row(hook, 1)
    assert row["clip_mean"] == pytest.approx(0.5)  # 0.2 and 3.0 exceed c = 0.1
    assert row["clip_max"] == pytest.approx(0.5)
    assert row["bind_0.04"] == pytest.approx(0.75)
    assert row["bind_0.1"] == pytest.approx(0.5)
    assert row["bind_1"] == pytest.approx(0.25)
    # the epoch resets: a row without steps is NaN, not the last epoch's value
    row2 = _row(hook, 2)
    assert math.isnan(row2["clip_mean"]) and math.isnan(row2["bind_1"])


def test_clip_trace_mean_and_max_differ_over_a_burst():
    opt = optim.clipped_ada(1e-3, 1.0, beta1=0.0, beta2=0.0)  # β₂ = 0: the root is |g| of the step
    params = [torch.zeros(2, dtype=torch.float64)]
    state = opt.init(params)
    hook = ClipTrace()
    run = SimpleNamespace(optimizer=opt)
    for g in ([0.1, 0.1], [5.0, 5.0], [0.1, 0.1], [0.1, 0.1]):
        params, state = opt.update([torch.tensor(g, dtype=torch.float64)], state, params)
        hook.on_step(run, SimpleNamespace(opt_state=state))
    row = _row(hook, 1)
    assert row["clip_max"] == 1.0 and row["clip_mean"] == pytest.approx(0.25)


def test_clip_trace_is_zero_for_the_unclipped_base_and_rejects_bad_clips():
    opt = optim.rmsprop(1e-3)
    params = [torch.zeros(3)]
    state = opt.init(params)
    params, state = opt.update([torch.ones(3)], state, params)
    hook = ClipTrace([0.5, 2.0])
    hook.on_step(SimpleNamespace(optimizer=opt), SimpleNamespace(opt_state=state))
    row = _row(hook, 1)
    assert row["clip_mean"] == 0.0 and row["bind_0.5"] == 1.0 and row["bind_2"] == 0.0
    with pytest.raises(ValueError, match="positive"):
        ClipTrace([0.1, 0.0])


def test_trace_and_validation_split_in_a_real_cached_run(tmp_path):
    cfg = shared_runs.fmnist_base(optimizer="rms_ub", optimizer_kwargs={"c": 0.05}, lr=5e-3, batch_size=50,
                                  n_train=200, n_test=100, epochs=3, eval_every=0, precond_every=1, test_every=2,
                                  target_train_acc=None, n_val=500, clip_candidates=(0.05, 10.0))
    res = train.train(cfg, tmp_path, progress=False, num_threads=1)
    t = res.table
    assert len(t) == 4 and math.isnan(t["clip_mean"].iloc[0])
    # the would-bind column of the run's own clip is the run's own binding fraction
    np.testing.assert_allclose(t["clip_mean"].iloc[1:], t["bind_0.05"].iloc[1:])
    assert (t["bind_10"].iloc[1:] == 0).all() and (t["clip_max"].iloc[1:] >= t["clip_mean"].iloc[1:]).all()
    assert t["val_acc"].notna().tolist() == [True, False, True, True]  # with the test metrics: 0, 2 and the last
    # the validation metrics are the model's on the last 500 training images, read back from the cache
    back = train.train(cfg, tmp_path, progress=False)
    pd.testing.assert_frame_equal(back.table, t)
    ds = data.load_dataset("fashion-mnist", n_train=200, n_val=500, n_test=0)
    assert ds.X_val.shape == (500, 1, 28, 28)
    assert 0.0 <= t["val_acc"].iloc[-1] <= 1.0 and t["val_loss"].iloc[-1] > 0


def test_measurements_do_not_change_the_trajectory(tmp_path):
    """The trace and the validation split only read: the training losses are bit for bit those of a bare run,
    and a run without them has neither column (every other table is unchanged)."""
    cfg = shared_runs.fmnist_base(optimizer="adam_ub", optimizer_kwargs={"c": 0.01}, lr=5e-3, batch_size=40,
                                  n_train=200, n_test=50, epochs=3, eval_every=0, target_train_acc=None)
    bare = train.train(cfg, use_cache=False, progress=False, num_threads=1).table
    full = train.train(cfg.replace(n_val=300, clip_candidates=(0.01, 0.1)), use_cache=False, progress=False,
                       num_threads=1).table
    np.testing.assert_array_equal(bare["train_loss"], full["train_loss"])
    np.testing.assert_array_equal(bare["test_acc"], full["test_acc"])
    assert not {"val_acc", "clip_mean", "bind_0.1"} & set(bare.columns)
    assert {"val_acc", "val_loss", "clip_mean", "clip_max", "bind_0.01", "bind_0.1"} <= set(full.columns)


@pytest.mark.parametrize("changes, match", [
    ({"n_val": -1}, "n_val must be an integer"),
    ({"n_val": 10, "n_train": None}, "n_val > 0 needs n_train"),
    ({"clip_candidates": (0.1, 0.0)}, "clip_candidates entry must be a positive"),
    ({"clip_candidates": (0.1, 0.1)}, "must not repeat"),
    ({"clip_candidates": (0.1,), "optimizer": "gd", "optimizer_kwargs": {}}, "need an adaptive optimiser"),
])
def test_bad_measurement_settings_fail_before_compute(changes, match):
    base = shared_runs.fmnist_base(optimizer="rmsprop", lr=5e-3, batch_size=64)
    with pytest.raises(ValueError, match=match) as e:
        base.replace(**changes)
    assert "\n" not in str(e.value)


def test_validation_split_is_the_last_training_images_disjoint_from_the_first():
    ds = data.load_dataset("fashion-mnist", n_train=1000, n_test=0, n_val=100)
    raw = data.load_raw(data.resolve("fashion-mnist", download=False))
    spec = data.DATASETS["fashion-mnist"]
    ref = data.standardise(raw["x_train"][-100:], spec["mean"], spec["std"])
    assert torch.equal(ds.X_val, ref) and ds.y_val.tolist() == raw["y_train"][-100:].astype(int).tolist()
    d = torch.cdist(ds.X_val.reshape(100, -1), ds.X_train.reshape(1000, -1)).min(dim=1).values
    assert bool((d > 0).all())  # none of them is one of the 1,000 training images
    assert data.load_dataset("fashion-mnist", n_train=10, n_test=0).X_val is None
    with pytest.raises(ValueError, match="overlaps"):
        data.load_dataset("fashion-mnist", n_train=1000, n_test=0, n_val=59_500)
    with pytest.raises(ValueError, match="needs n_train"):
        data.load_dataset("fashion-mnist", n_test=0, n_val=10)


def test_spike_mask_marks_the_epochs_of_each_spike():
    loss = [2.3, 1.0, 0.5, 0.2, 0.1, 0.5, 0.9, 0.15, 0.09, 0.08, 0.6]
    m = clipping.spike_mask(loss, factor=2.0, min_rise=0.1)
    assert m.tolist() == [False] * 5 + [True, True] + [False] * 3 + [True]
    # a jitter that doubles a tiny loss is no spike when min_rise asks for more
    assert not clipping.spike_mask([1.0, 0.01, 0.02, 0.005], factor=2.0, min_rise=0.1).any()
    assert clipping.spike_mask([1.0, 0.01, 0.03, 0.005], factor=2.0, min_rise=0.0).tolist() == [False, False, True,
                                                                                                   False]
    # spikes that start before skip are ignored
    assert not clipping.spike_mask(loss, skip=6)[5:7].any() and clipping.spike_mask(loss, skip=6)[-1]


def test_clip_binding_fraction_inside_and_outside():
    f = [np.nan, 0.0, 0.01, 0.5, 0.7, 0.02]
    m = [False, False, False, True, True, False]
    out = clipping.clip_binding_fraction(f, m)
    assert out["inside"] == pytest.approx(0.6) and out["outside"] == pytest.approx(0.01)
    assert out["n_inside"] == 2 and out["n_outside"] == 3
    out = clipping.clip_binding_fraction(f, [False] * 6, skip=2)
    assert math.isnan(out["inside"]) and out["n_inside"] == 0 and out["outside"] == pytest.approx((0.01 + 1.22) / 4)
    with pytest.raises(ValueError):
        clipping.clip_binding_fraction(f, m[:-1])


def test_base_threshold_ratio_uses_live_evaluations_after_skip():
    t = pd.DataFrame({"epoch": [0, 2, 4, 6, 8, 10], "train_acc": [0.1, 0.5, 0.9, 0.95, 0.1, 0.99],
                      "p_sharpness": [1.0, 50.0, 300.0, 400.0, 9000.0, np.nan],
                      "p_threshold": [400.0] * 6})
    assert clipping.threshold_ratio(t, skip=4) == pytest.approx(np.median([0.75, 1.0]))
    assert math.isnan(clipping.threshold_ratio(t.drop(columns=["p_sharpness"])))


def test_predicted_critical_clip_matches_the_linear_threshold():
    # RMS-UB: c* = ηS/2; Adam-UB: c* = ηS/38
    assert clipping.predicted_critical_clip(5e-3, 100.0) == pytest.approx(0.25)
    assert clipping.predicted_critical_clip(5e-3, 100.0, 0.9) == pytest.approx(5e-3 * 100 / 38)
    # on a quadratic, RMS-UB with a clip that binds is GD at η/c: stable just above c*, unstable just below
    S, eta = 100.0, 5e-3
    c_star = clipping.predicted_critical_clip(eta, S)
    for c, grows in ((1.02 * c_star, False), (0.98 * c_star, True)):
        opt = optim.clipped_ada(eta, c, beta1=0.0, beta2=0.99, eps=0.0)
        w = [torch.tensor([1.0], dtype=torch.float64)]
        st = opt.init(w)
        for _ in range(3000):
            w, st = opt.update([S * w[0]], st, w)
        assert (abs(float(w[0])) > 1.0) == grows
    assert thresholds.stability_threshold(eta) == pytest.approx(S / c_star)
    with pytest.raises(ValueError):
        clipping.predicted_critical_clip(5e-3, 0.0)


def test_choose_clip_follows_the_preregistered_rule():
    val = {0.05: [0.80, 0.81], 0.1: [0.84, 0.85], 0.25: [0.845, 0.845], 1.0: [0.83, 0.83]}
    base = [0.83, 0.83]
    ch = clipping.choose_clip(val, base)
    assert ch.c == 0.25 and ch.val_mean == pytest.approx(0.845) and ch.base_val_mean == pytest.approx(0.83)
    # the binding precondition removes a clip that binds all the time
    ch = clipping.choose_clip(val, base, outside_binding={0.05: 0.01, 0.1: 0.02, 0.25: 0.2, 1.0: 0.0})
    assert ch.c == 0.1 and ch.eligible == (0.05, 0.1, 1.0)
    # runs that mostly fail to train are not eligible; NaN accuracies count as chance
    ch = clipping.choose_clip({0.1: [np.nan, 0.99], 1.0: [0.5, 0.5]}, base, min_trained={0.1: 0.5, 1.0: 0.0})
    assert ch.c == 0.1 and ch.val_mean == pytest.approx((0.1 + 0.99) / 2)
    # ties go to the larger clip; no eligible clip gives None
    assert clipping.choose_clip({0.1: [0.8], 0.25: [0.8]}, base).c == 0.25
    assert clipping.choose_clip(val, base, outside_binding={}).c is None
    with pytest.raises(ValueError):
        clipping.choose_clip({}, base)


def test_clips_that_bind_and_the_identity_of_a_clip_that_never_binds():
    assert clipping.clips_that_bind([0.05, 1.0, 10.0], [0.8, 1.2, 0.9]) == ([0.05, 1.0], [10.0])
    assert clipping.clips_that_bind([1.0], [1.0]) == ([], [1.0])  # √v̂ ≤ c: min(√v̂, c) = √v̂ exactly
    with pytest.raises(ValueError):
        clipping.clips_that_bind([1.0], [np.nan])
    # the identity itself: RMS-UB with c above every root of the RMSProp run reproduces it bit for bit
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(5, generator=g) * 0.1 for _ in range(20)]
    runs = {}
    for name, opt in (("base", optim.rmsprop(1e-2)), ("ub", optim.clipped_ada(1e-2, 10.0, beta1=0.0))):
        p = [torch.zeros(5)]
        st = opt.init(p)
        roots = []
        for gr in grads:
            p, st = opt.update([gr], st, p)
            roots.append(float(opt.unclipped_root(st).max()))
        runs[name] = (p[0], max(roots))
    assert torch.equal(runs["base"][0], runs["ub"][0])
    assert clipping.clips_that_bind([10.0], [runs["base"][1]]) == ([], [10.0])


def _fake_run(optimizer, seed, loss, clip_mean, *, bs=64, c=None, val=0.8, test=0.79, status="early_stopped",
              ratio=(0.9, 0.95), acc=0.999):
    """A RunResult-like object with a hand-made table: losses per epoch, the own clip's binding, two
    preconditioned evaluations (epochs 4 and 6) and λ_max(H) = 10 and 20 there."""
    n = len(loss)
    kw = {"beta2": 0.99} if c is None else {"beta2": 0.99, "c": c}
    cfg = shared_runs.fmnist_base(optimizer=optimizer, optimizer_kwargs=kw, lr=5e-3, batch_size=bs, seed=seed)
    p = np.full(n, np.nan)
    p[4], p[6] = 400 * ratio[0], 400 * ratio[1]
    s = np.full(n, np.nan)
    s[4], s[6] = 10.0, 20.0
    t = pd.DataFrame({"epoch": np.arange(n), "train_loss": loss, "train_acc": np.r_[np.full(n - 1, 0.5), acc],
                      "val_acc": np.r_[np.full(n - 1, np.nan), val], "test_acc": np.r_[np.full(n - 1, np.nan), test],
                      "p_sharpness": p, "p_threshold": np.full(n, 400.0), "sharpness": s,
                      "root_max": np.linspace(0.1, 0.3, n), "clip_mean": clip_mean,
                      "clip_max": np.asarray(clip_mean) * 2, "bind_0.05": clip_mean})
    return SimpleNamespace(config=cfg, table=t, status=status, key=f"{optimizer}{seed}{c}", wall_time_s=1.0, error=None)


LOSS = [2.3, 1.0, 0.5, 0.3, 0.2, 0.1, 0.6, 0.08, 0.05, 0.04]  # one spike at epoch 6 (> 2 × 0.1 and + 0.1 nats)
SMOOTH = [2.3, 1.0, 0.5, 0.3, 0.2, 0.1, 0.09, 0.08, 0.05, 0.04]
BIND = [np.nan, 0.02, 0.01, 0.01, 0.01, 0.01, 0.2, 0.01, 0.01, 0.01]


def test_run_row_reads_spikes_binding_ratio_and_accuracies():
    row = clipping.run_row(_fake_run("rms_ub", 0, LOSS, BIND, c=0.05))
    assert (row["setting"], row["outcome"], row["epochs"]) == ("rms_ub/64/0.99/0.05", "target", 9)
    assert row["spikes"] == 1 and row["spike_epochs"] == 1 and row["spikes_sens"] == 0  # a rise of 0.5 nats: no
    assert row["bind_in"] == pytest.approx(0.2) and row["bind_out"] == pytest.approx((0.02 + 7 * 0.01) / 8)
    assert row["would_0.05_in"] == row["bind_in"] and row["bind_peak"] == pytest.approx(0.4)
    assert row["ratio"] == pytest.approx(0.925) and row["sharpness"] == pytest.approx(15.0)
    assert (row["val_acc"], row["test_acc"], row["root_max"]) == (0.8, 0.79, pytest.approx(0.3))
    assert clipping.count_spikes(LOSS, skip=7) == 0 and clipping.count_spikes(SMOOTH) == 0
    base = clipping.run_row(_fake_run("rmsprop", 0, SMOOTH, [np.nan] + [0.0] * 9))
    assert base["setting"] == "rmsprop/64/0.99" and math.isnan(base["c"]) and base["spikes"] == 0
    dead = clipping.run_row(_fake_run("rmsprop", 1, SMOOTH, BIND, status="stalled", acc=0.1))
    assert dead["outcome"] == "collapsed"


def test_paired_gain_and_the_choice_on_a_table_of_runs():
    runs = []
    for s in range(3):
        runs.append(_fake_run("rmsprop", s, SMOOTH, [np.nan] + [0.0] * 9, val=0.80, test=0.80 + 0.001 * s))
        runs.append(_fake_run("rms_ub", s, LOSS, BIND, c=0.05, val=0.81, test=0.81 + 0.002 * s))
        runs.append(_fake_run("rms_ub", s, SMOOTH, [np.nan] + [0.3] * 9, c=0.01, val=0.9, test=0.9))
    df = clipping.summarize(runs)
    g = clipping.paired_gain(df, "rms_ub", 64, 0.99, 0.05, "test_acc", [0, 1, 2])
    assert g.est == pytest.approx(0.011) and g.n == 3 and g.lo < g.est < g.hi
    sp = clipping.paired_gain(df, "rms_ub", 64, 0.99, 0.05, "spikes", [0, 1, 2], only_target=True)
    assert (sp.est, sp.lo, sp.hi) == (1.0, 1.0, 1.0)  # one spike more in every pair: no spread
    assert clipping.paired_gain(df, "rms_ub", 64, 0.99, 0.05, "test_acc", [0]) is None  # one pair: no interval
    # c = 0.01 has the best validation accuracy but binds on 30 % of the coordinates outside spikes: not eligible
    ch = clipping.choose_clips(df, {"rms_ub/64/0.99": [0.01, 0.05]}, [0, 1, 2])["rms_ub/64/0.99"]
    assert ch.c == 0.05 and ch.eligible == (0.05,) and ch.base_val_mean == pytest.approx(0.80)
    # per setting, over seeds
    med = clipping.per_setting(df, "test_acc")
    assert med["rms_ub/64/0.99/0.05"]["est"] == pytest.approx(0.812) and med["rmsprop/64/0.99"]["n"] == 3
    b = clipping.binding_by_setting(df)
    assert b["rms_ub/64/0.99/0.05"]["inside"]["est"] == pytest.approx(0.2)
    assert b["rms_ub/64/0.99/0.01"]["inside"] is None  # no spike, no epoch inside one
    would = clipping.binding_by_setting(df, "would_0.05")  # where c = 0.05 would bind: the traced column
    assert would["rms_ub/64/0.99/0.05"]["inside"]["est"] == pytest.approx(0.2)
    assert would["rms_ub/64/0.99/0.01"]["outside"]["est"] == pytest.approx(0.3)
    burst = clipping.burst_by_setting(df)
    assert burst["rms_ub/64/0.99/0.05"]["est"] == pytest.approx(0.2 - 0.09 / 8) and burst["rmsprop/64/0.99"] is None
    sp = clipping.spikes_by_setting(df)
    assert sp["rms_ub/64/0.99/0.05"]["runs_with_spike"]["est"] == 1.0 and sp["rmsprop/64/0.99"]["mean_count"] == 0
    assert clipping.outcomes_by_setting(df)["rmsprop/64/0.99"] == {"target": 3, "capped": 0, "collapsed": 0,
                                                                   "diverged": 0}


def test_the_adaptive_setting_and_its_grid():
    c = shared_runs.adaptive_config("rms_ub", 200, 3, beta2=0.9, c=0.02)
    assert (c.lr, c.batch_size, c.epochs, c.precond_every, c.eval_every) == (5e-3, 200, 600, 4, 20)
    assert c.optimizer_kwargs == {"beta2": 0.9, "c": 0.02} and c.n_val == 10_000 and c.n_test == 10_000
    assert c.clip_candidates == (0.02, 0.05, 0.1, 0.25, 1.0, 10.0) and c.target_train_acc == 0.999
    assert shared_runs.adaptive_schedule(32) == (300, 1, 5) and shared_runs.adaptive_schedule(500) == (1500, 10, 50)
    ex = shared_runs.get("fmnist_adaptive", "ci")
    assert {c.optimizer for c in ex.configs()} == {"rmsprop", "adam"}
    g = shared_runs.adaptive_grid("paper")
    assert {0.05, 0.1, 0.25, 1.0} <= set(g["clips"]["rms_ub"]) and {64, 1000} <= set(g["batch_sizes"])
    assert len(g["selection_seeds"]) >= 10 and len(g["confirmation_seeds"]) >= 10


@pytest.mark.parametrize("call, match", [
    (lambda: shared_runs.adaptive_config("lion", 64, 0), "unknown optimizer 'lion'"),
    (lambda: shared_runs.adaptive_config("gd", 64, 0), "runs rmsprop, adam, rms_ub or adam_ub"),
    (lambda: shared_runs.adaptive_config("rms_ub", 64, 0), "needs a clip"),
    (lambda: shared_runs.adaptive_config("rms_ub", 64, 0, c=0.0), "c must be a positive"),
    (lambda: shared_runs.adaptive_config("adam", 64, 0, beta2=1.0), r"beta2 must lie in \[0, 1\)"),
    (lambda: shared_runs.adaptive_config("adam", 2000, 0), "must lie in 1 … 1000"),
    (lambda: shared_runs.adaptive_grid("ci", batch_sizes=(64, 2000)), "integer in 1 … 1000"),
    (lambda: shared_runs.adaptive_grid("ci", beta2=(0.99, 1.2)), r"must lie in \[0, 1\)"),
    (lambda: shared_runs.adaptive_grid("ci", clips={"rms_ub": (0.1, -0.05)}), "must be a positive finite"),
    (lambda: shared_runs.adaptive_grid("ci", clips={"lion_ub": (0.1,)}), "unknown clipped optimiser 'lion_ub'"),
    (lambda: shared_runs.adaptive_grid("ci", quantiles=(1.5,)), r"quantiles must lie in \(0, 1\)"),
    (lambda: shared_runs.adaptive_grid("ci", confirmation_seeds=(0, 9)), "disjoint"),
    (lambda: shared_runs.adaptive_grid("ci", width=3), "no setting"),
    (lambda: shared_runs.adaptive_grid("huge"), "unknown scale"),
])
def test_bad_adaptive_settings_are_one_line_errors_before_compute(call, match):
    with pytest.raises(ValueError, match=match) as e:
        call()
    assert "\n" not in str(e.value)
