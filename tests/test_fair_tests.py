"""Ground-truth tests of the issue-20 statistics (instab_lib.experiments.fair_tests): closed forms, exact
breakpoints, known coverage."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from instab_lib.experiments import fair_tests as ft, stats


# --------------------------------------------------------------------------- helpers
def _table(epochs, lr, sharp=None, loss=None, acc=None, every=1):
    e = np.asarray(epochs)
    t = pd.DataFrame({"epoch": e, "lr": np.broadcast_to(lr, e.shape).astype(float),
                      "train_loss": np.asarray(loss if loss is not None else np.ones(e.size), float),
                      "train_acc": np.asarray(acc if acc is not None else np.zeros(e.size), float)})
    s = np.asarray(sharp, float).copy()
    s[e % every != 0] = np.nan
    t["sharpness"] = s
    return t


# --------------------------------------------------------------------------- eventual maximum
def test_eventual_maximum_peak_and_target():
    ep = np.arange(0, 1001)
    lr = np.where(ep < 100, 0.1, 0.01)
    s = np.where(ep < 100, 20.0, 20 + 100 * np.exp(-((ep - 600) / 150.0) ** 2))  # peak 120 at epoch 600
    acc = np.where(ep >= 900, 1.0, 0.9)
    r = ft.eventual_maximum(_table(ep, lr, s, acc=acc, every=10), after_epoch=100, target_acc=0.999, span=10)
    assert r.s_max == pytest.approx(120.0) and r.epoch_max == 600
    assert r.epoch_target == 900 and r.converged and r.reason == "target"
    assert r.eta_t == pytest.approx(0.01 * 900) and r.eta_t_max == pytest.approx(0.01 * 500)


def test_eventual_maximum_peaked_or_open():
    ep = np.arange(0, 2001)
    s = np.minimum(ep, 500).astype(float)  # rises to epoch 500, then flat at its maximum
    s[ep > 500] = 500 - (ep[ep > 500] - 500) * 0.01
    t = _table(ep, 0.01, s, every=10)
    r = ft.eventual_maximum(t, 0, target_acc=0.999, span=10)  # 15 units of η·t after the peak ≥ 10
    assert r.epoch_max == 500 and r.reason == "peaked" and r.converged
    r2 = ft.eventual_maximum(t, 0, target_acc=0.999, span=20)
    assert r2.reason == "open" and not r2.converged
    rising = _table(ep, 0.01, ep.astype(float), every=10)
    assert ft.eventual_maximum(rising, 0, span=1).reason == "open"  # the maximum is the last spectrum
    with pytest.raises(ValueError):
        ft.eventual_maximum(t, 3000)


# --------------------------------------------------------------------------- matched loss
def test_sharpness_at_loss_interpolates():
    ep = np.arange(0, 101)
    loss = 1.0 / (1 + ep)  # ≤ 0.04 first at epoch 24
    s = 2.0 * ep  # linear: interpolation between spectra every 10 epochs is exact
    t = _table(ep, 0.01, s, loss=loss, every=10)
    assert ft.sharpness_at_loss(t, 0.04) == pytest.approx(48.0)
    assert ft.sharpness_at_loss(t, 0.04, after_epoch=50) == pytest.approx(102.0)  # first epoch after 50
    assert math.isnan(ft.sharpness_at_loss(t, 1e-6))


def test_common_loss_levels():
    ep = np.arange(0, 101)
    a = _table(ep, 0.01, ep * 1.0, loss=1.0 / (1 + ep))
    b = _table(ep, 0.01, ep * 1.0, loss=0.5 / (1 + ep))
    lv = ft.common_loss_levels([a, b], [0, 10], n=3, margin=1.0)
    assert lv[0] == pytest.approx(0.5 / 11) and lv[-1] == pytest.approx(1.0 / 101) and len(lv) == 3
    assert ft.common_loss_levels([a, b], [0, 100], margin=1.0) == []  # b starts below a's end: no overlap
    assert ft.common_loss_levels([a], [100], margin=0.5) == []


def test_matched_loss_ratio_compares_at_equal_loss_not_at_equal_time():
    """Two runs on the same loss curve, one reduced later (it starts lower): at equal loss the later one is
    half as sharp, whatever the epochs; its ratio is 0.5, the identical run's is 1, disjoint ranges NaN."""
    ep = np.arange(0, 401)
    loss = 1.0 / (1 + ep)
    early = _table(ep, 0.01, 10.0 + ep, loss=loss, every=10)
    # late: the same loss at each epoch, half the sharpness at every loss level
    late = _table(ep, 0.01, 0.5 * (10.0 + ep), loss=loss, every=10)
    assert ft.matched_loss_ratio(early, 0, late, 100) == pytest.approx(0.5, rel=1e-9)
    assert ft.matched_loss_ratio(early, 0, early, 100) == pytest.approx(1.0, rel=1e-9)
    # the null is rejected in both directions: a run sharper at equal loss reads above 1
    sharper = _table(ep, 0.01, 1.5 * (10.0 + ep), loss=loss, every=10)
    assert ft.matched_loss_ratio(early, 0, sharper, 100) == pytest.approx(1.5, rel=1e-9)
    stop = _table(ep[:50], 0.01, 10.0 + ep[:50], loss=loss[:50], every=10)
    assert math.isnan(ft.matched_loss_ratio(stop, 0, late, 100))  # early ends above where late starts
    assert ft.matched_loss_ratios(stop, 0, late, 100) == []
    per_level = ft.matched_loss_ratios(early, 0, late, 100, n=4)
    assert ft.geometric_mean_ratio(per_level) == pytest.approx(ft.matched_loss_ratio(early, 0, late, 100, n=4), rel=1e-12)
    assert ft.geometric_mean_ratio([(1.0, 2.0), (0.5, 8.0)]) == pytest.approx(4.0, rel=1e-12)
    assert math.isnan(ft.geometric_mean_ratio([])) and math.isnan(ft.geometric_mean_ratio([(1.0, -1.0)]))
    assert [L for L, _ in per_level] == sorted((L for L, _ in per_level), reverse=True)  # highest level first
    assert [r for _, r in per_level] == pytest.approx([0.5] * 4, rel=1e-9)


# --------------------------------------------------------------------------- breakpoint
def test_piecewise_linear_recovers_exact_breakpoint():
    x = np.log(np.array([0.002, 0.003, 0.005, 0.0075, 0.01, 0.013, 0.017, 0.025, 0.05, 0.1]))
    xb = math.log(0.0123)
    seeds = np.repeat(np.arange(3), x.size)
    xs = np.tile(x, 3)
    y = 0.77 + 0.01 * seeds + 0.0005 * xs + 0.011 * np.maximum(xs - xb, 0)
    fit = ft.piecewise_linear_fit(xs, y, seeds)
    assert fit.breakpoint == pytest.approx(xb, abs=1e-6)
    assert fit.slope_below == pytest.approx(0.0005, abs=1e-9) and fit.slope_above == pytest.approx(0.0115, abs=1e-9)
    assert fit.rss < 1e-20 and fit.delta_bic > 100


def test_piecewise_linear_no_break_prefers_line():
    rng = np.random.default_rng(0)
    x = np.tile(np.linspace(0, 1, 12), 5)
    g = np.repeat(np.arange(5), 12)
    y = 2 * x + rng.normal(0, 0.05, x.size) + g
    assert ft.piecewise_linear_fit(x, y, g).delta_bic < 2


def test_breakpoint_interval_covers_truth():
    rng = np.random.default_rng(1)
    x = np.linspace(-5, -1, 9)
    xb = -3.3
    xs, ys, gs = [], [], []
    for s in range(10):
        xs.append(x)
        ys.append(rng.normal(0, 0.3) + 0.0 * x + 1.0 * np.maximum(x - xb, 0) + rng.normal(0, 0.05, x.size))
        gs.append(np.full(x.size, s))
    e = ft.breakpoint_estimate(np.concatenate(xs), np.concatenate(ys), np.concatenate(gs), n_boot=200, n_grid=100)
    assert e.lo <= xb <= e.hi and e.hi - e.lo < 1.0 and e.n == 10


def _kinked(xb: float, n_seeds: int = 10, seed: int = 1):
    rng = np.random.default_rng(seed)
    x = np.linspace(-5, -1, 9)
    xs, ys, gs = [], [], []
    for s in range(n_seeds):
        xs.append(x)
        ys.append(rng.normal(0, 0.3) + 1.0 * np.maximum(x - xb, 0) + rng.normal(0, 0.05, x.size))
        gs.append(np.full(x.size, s))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(gs)


def test_breakpoint_over_limit_is_paired_and_rejects_a_break_away_from_the_limit():
    """A break at the limit gives a ratio interval around 1; a break a factor e^0.7 ≈ 2 above the
    limit gives an interval that excludes 1 (the claim's null); the limit's own spread over seeds
    widens the interval, since both are recomputed in every resample."""
    x, y, g = _kinked(-3.3)
    at = ft.breakpoint_over_limit(x, y, g, {s: math.exp(-3.3) for s in range(10)}, n_boot=200, n_grid=100)
    assert at.lo < 1 < at.hi and at.hi / at.lo < 1.6 and at.log and at.n == 10
    away = ft.breakpoint_over_limit(x, y, g, {s: math.exp(-4.0) for s in range(10)}, n_boot=200, n_grid=100)
    assert away.lo > 1.5 and away.est == pytest.approx(math.exp(0.7), rel=0.15)
    rng = np.random.default_rng(3)
    spread = ft.breakpoint_over_limit(x, y, g, {s: math.exp(-3.3 + rng.normal(0, 0.4)) for s in range(10)},
                                      n_boot=200, n_grid=100)
    assert spread.hi / spread.lo > at.hi / at.lo
    with pytest.raises(ValueError, match="no limit"):
        ft.breakpoint_over_limit(x, y, g, {0: 1.0})


def test_breakpoint_needs_four_abscissae():
    with pytest.raises(ValueError):
        ft.piecewise_linear_fit([1, 2, 3, 1, 2, 3], [0, 1, 2, 0, 1, 2])


# --------------------------------------------------------------------------- interior peak
def test_peak_drop_loso():
    etas = [0.05, 0.1, 0.2, 0.4]
    acc = pd.DataFrame([[0.70, 0.75, 0.80, 0.76]] * 4, columns=etas, index=range(4)) + \
        np.arange(4)[:, None] * 0.01
    d = ft.peak_drop_loso(acc, top=0.4)
    assert np.allclose(d.to_numpy(), 0.04)  # best 0.2 chosen on the others, minus 0.4
    mono = pd.DataFrame([[0.70, 0.75, 0.80, 0.85]] * 3, columns=etas)
    assert np.allclose(ft.peak_drop_loso(mono, top=0.4).to_numpy(), 0.0)  # the best is the top: no drop
    with pytest.raises(ValueError):
        ft.peak_drop_loso(acc, top=0.3)


def test_peak_drop_loso_no_winners_curse():
    """Pure noise around a flat accuracy: the leave-one-seed-out drop centres on ≤ 0, while the drop
    with the best η picked on all seeds is positive by construction."""
    rng = np.random.default_rng(3)
    acc = pd.DataFrame(0.8 + rng.normal(0, 0.01, (40, 6)), columns=[0.1, 0.14, 0.2, 0.28, 0.4, 0.57])
    loso = ft.peak_drop_loso(acc, top=0.57).mean()
    naive = acc.mean().max() - acc[0.57].mean()
    assert naive > 0 and loso < naive / 2


# --------------------------------------------------------------------------- pooled fractions
def test_cluster_fraction_design_effect():
    # perfectly clustered: each seed all True or all False -> n_eff = number of seeds
    flags = [True] * 10 + [False] * 10 + [True] * 10 + [True] * 10
    cl = np.repeat(np.arange(4), 10)
    e = ft.cluster_fraction(flags, cl, n_boot=4000)
    w_units, w_seeds = stats.fraction(30, 40), stats.fraction(3, 4)
    assert e.est == pytest.approx(0.75)
    assert (e.hi - e.lo) > 1.5 * (w_units.hi - w_units.lo)  # wider than treating 40 spikes as independent
    assert (e.hi - e.lo) == pytest.approx(w_seeds.hi - w_seeds.lo, rel=0.35)  # about the 4-seed interval
    # independent units within clusters: close to the plain Wilson interval
    rng = np.random.default_rng(0)
    f2 = rng.random(400) < 0.7
    e2 = ft.cluster_fraction(f2, np.repeat(np.arange(20), 20), n_boot=4000)
    w2 = stats.fraction(int(f2.sum()), 400)
    assert (e2.hi - e2.lo) == pytest.approx(w2.hi - w2.lo, rel=0.3)


def test_cluster_fraction_unanimous_is_conservative():
    e = ft.cluster_fraction([True] * 68, np.repeat(np.arange(5), [10, 14, 15, 13, 16]))
    w5 = stats.fraction(5, 5)
    assert e.est == 1.0 and e.lo == pytest.approx(w5.lo) and math.isfinite(e.se) and e.se > 0


# --------------------------------------------------------------------------- restoration
def test_restoration_minima_parity():
    ep = np.arange(0, 40)
    half = np.full(ep.size, 1.2)
    half[12] = 0.95  # odd offset from the peak at 5: only the 'any' reading sees it
    half[15] = 0.98  # even offset from the peak
    half[31] = 0.9
    t = _table(ep, 0.1, 2 * half / 0.1)
    spikes = [SimpleNamespace(start=3, peak=5), SimpleNamespace(start=20, peak=23)]
    peak = ft.restoration_minima(t, spikes, "peak")
    assert peak["min_eta_s_over_2"].tolist() == pytest.approx([0.98, 0.9])
    assert peak["window_end"].tolist() == [19, 39] and peak["restored"].all()
    anyp = ft.restoration_minima(t, spikes, "any")
    assert anyp["min_eta_s_over_2"].iloc[0] == pytest.approx(0.95) and anyp["epoch_min"].iloc[0] == 12
    both = ft.restoration_minima(t, spikes, "both")
    assert both["min_eta_s_over_2"].tolist() == pytest.approx([0.98, 1.2])  # spike 2: even chain 0.9, odd 1.2
    assert both["restored"].tolist() == [True, False]


# --------------------------------------------------------------------------- sign consistency, SGD
def test_sign_consistency():
    e = {"fb": {"est": 0.3, "lo": 0.1, "hi": 0.5}, "256": {"est": 0.2, "lo": -0.1, "hi": 0.4},
         "64": {"est": float("nan"), "lo": float("nan"), "hi": float("nan")}}
    r = ft.sign_consistency(e)
    assert r == {"n_settings": 2, "n_pos": 2, "n_neg": 0, "n_pos_settled": 1, "n_neg_settled": 0,
                 "consistent": True, "all_settled": False}
    e["16"] = stats.Estimate(-0.4, -0.6, -0.2, 0.1, 10)
    assert not ft.sign_consistency(e)["consistent"]


def test_noise_pairs_and_gap():
    assert ft.noise_scale(0.1, None, 1000) == 0.0 == ft.noise_scale(0.1, 1000, 1000)  # full batch: no noise
    assert ft.noise_scale(0.05, 250, 1000) == pytest.approx(0.05 * 3)
    with pytest.raises(ValueError, match="batch size"):
        ft.noise_scale(0.05, 2000, 1000)
    s = pd.DataFrame({"lr": [0.1, 0.0075, 0.05, 0.0125, 0.02, 0.003],
                      "batch_size": [1000, 1000, 256, 64, 64, 64]})
    s["noise"] = [ft.noise_scale(lr, b, 1000) for lr, b in zip(s["lr"], s["batch_size"])]
    s["side"] = ["unstable", "stable", "unstable", "stable", "mixed", "stable"]
    p = ft.noisier_stable_pairs(s, tol=0.25)
    # full batch against full batch (no noise on either side); B = 256 (g = 0.145) against B = 64 at η = 0.0125
    # (g = 0.183) but not at η = 0.003 (g = 0.044: the unstable side would be the noisier); the mixed row pairs with
    # nothing; and never a noisier unstable side
    assert list(zip(p["stable"], p["unstable"])) == [(1, 0), (3, 0), (3, 2), (5, 0)]
    assert math.isnan(p.iloc[0]["noise_ratio"]) and p.iloc[1]["noise_ratio"] == 0.0
    assert p.iloc[2]["noise_ratio"] == pytest.approx(s.loc[2, "noise"] / s.loc[3, "noise"])
    assert (ft.noisier_stable_pairs(s, tol=0.0)["noise_ratio"].fillna(0) <= 1).all()
    with pytest.raises(ValueError, match="side"):
        ft.noisier_stable_pairs(s.assign(side="calm"))
    assert ft.log_gap_closed(20, 100, 20, 100) == pytest.approx(0.0)
    assert ft.log_gap_closed(20, 100, 50, 50) == pytest.approx(1.0)
    assert ft.log_gap_closed(20, 100, 40, 100) == pytest.approx(1 - math.log(0.4) / math.log(0.2))
