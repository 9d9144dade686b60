"""Ensemble statistics against closed forms, and the one switch that shifts every seed."""

import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from instab_lib.experiments import models, seeding, stats


def test_mean_se_is_the_student_t_interval():
    x = [1.0, 2.0, 4.0, 7.0]
    e = stats.mean_se(x)
    se = np.std(x, ddof=1) / 2
    t = sps.t.ppf(0.95, 3)
    assert e.est == pytest.approx(3.5) and e.se == pytest.approx(se)
    assert (e.lo, e.hi) == pytest.approx((3.5 - t * se, 3.5 + t * se))


def test_bootstrap_median_interval_covers_and_is_deterministic():
    x = [0.9, 1.1, 1.3, 1.2, 1.0]
    a, b = stats.bootstrap(x), stats.bootstrap(x)
    assert a == b and a.est == 1.1 and 0.9 <= a.lo <= 1.1 <= a.hi <= 1.3 and a.n == 5
    with pytest.raises(ValueError, match="non-finite"):
        stats.bootstrap([1.0, float("nan")])


def test_bootstrap_coverage_of_the_median_is_near_nominal():
    """Over many normal samples of 15 the 90% percentile interval contains the true median about 90% of the time."""
    rng = np.random.default_rng(0)
    hits = [stats.bootstrap(rng.normal(0, 1, 15), n_boot=400, seed=i).lo <= 0 <=
            stats.bootstrap(rng.normal(0, 1, 15), n_boot=400, seed=i).hi for i in range(200)]
    assert 0.8 <= np.mean(hits) <= 0.98


def test_wilson_interval():
    e = stats.fraction([True] * 9 + [False])
    assert e.est == 0.9 and e.lo == pytest.approx(0.6523, abs=1e-4) and e.hi == pytest.approx(0.9774, abs=1e-4)  # by hand, z = 1.645
    assert stats.fraction(0, 10).lo == 0.0


def test_margin_sign_and_units():
    assert stats.margin(1.3, 1.0, 0.1) == pytest.approx(3.0)
    assert stats.margin(0.7, 1.0, 0.1, "below") == pytest.approx(3.0)
    assert stats.margin(0.7, 1.0, 0.1) == pytest.approx(-3.0)
    assert math.isinf(stats.margin(2.0, 1.0, 0.0)) and math.isnan(stats.margin(2.0, 1.0, float("nan")))


def test_paired_difference():
    d = stats.paired_difference([1.0, 2.0, 3.0], [0.5, 1.0, 2.0])
    assert d.est == pytest.approx((0.5 + 1.0 + 1.0) / 3)


def test_seed_offset_shifts_every_generator(monkeypatch):
    base = (seeding.torch_generator(3).initial_seed(), seeding.numpy_rng(3).integers(1 << 30),
            models.build_model("mlp", seed=3, input_dim=4, width=3, depth=1, n_classes=2)[1].weight.detach().clone())
    monkeypatch.setenv(seeding.SEED_OFFSET_ENV, "1000")
    assert seeding.shifted(3) == 1003 and seeding.torch_generator(3).initial_seed() == 1003
    assert seeding.numpy_rng(3).integers(1 << 30) == np.random.default_rng(1003).integers(1 << 30) != base[1]
    w = models.build_model("mlp", seed=3, input_dim=4, width=3, depth=1, n_classes=2)[1].weight.detach()
    assert not torch.equal(w, base[2])
    assert torch.equal(w, models.build_model("mlp", seed=1003 - 1000, input_dim=4, width=3, depth=1,
                                             n_classes=2)[1].weight.detach())
    monkeypatch.setenv(seeding.SEED_OFFSET_ENV, "-1")
    with pytest.raises(ValueError, match="non-negative"):
        seeding.seed_offset()


def test_bootstrap_groups_resamples_whole_groups():
    data = {0: [1.0, 2.0], 1: [3.0, 4.0], 2: [5.0, 6.0], 3: [7.0, 8.0]}

    def mean_of(keys):
        return float(np.mean([v for k in keys for v in data[k]]))

    e = stats.bootstrap_groups(list(data), mean_of, n_boot=500, seed=1)
    assert e.est == pytest.approx(4.5) and e.lo < 4.5 < e.hi and e.n == 4
    assert e == stats.bootstrap_groups(list(data), mean_of, n_boot=500, seed=1)
    # a resample takes both values of a group or neither: the group means 1.5 … 7.5 bound it
    assert 1.5 <= e.lo and e.hi <= 7.5
    with pytest.raises(ValueError):
        stats.bootstrap_groups([0], mean_of)


def test_binomial_se():
    assert stats.binomial_se(0.8, 10000) == pytest.approx(0.004)
    assert stats.binomial_se(1.0, 5) == 0.0
    with pytest.raises(ValueError):
        stats.binomial_se(1.2, 10)


def test_bootstrap_ratio_is_symmetric_on_the_log_scale_and_margins_follow():
    from instab_lib.book import claims

    r = stats.bootstrap_ratio([0.5, 1.0, 2.0, 4.0, 8.0])
    assert r.est == pytest.approx(2.0) and r.log and r.lo < 2.0 < r.hi
    inv = stats.bootstrap_ratio([2.0, 1.0, 0.5, 0.25, 0.125])
    assert inv.est == pytest.approx(0.5) and inv.se == pytest.approx(r.se)
    claim = {"id": "c", "kind": "paper", "text": "", "value": "x_", "above": 1.0, "null": 1.0}
    res, = claims.evaluate_claims([claim], {"x_": stats.bootstrap_ratio([3.0, 4.0, 5.0, 6.0, 4.5]).to_dict()})
    e = stats.bootstrap_ratio([3.0, 4.0, 5.0, 6.0, 4.5])
    assert res.passed and res.margin == pytest.approx(math.log(e.est) / e.se)
    with pytest.raises(ValueError):
        stats.bootstrap_ratio([1.0, -1.0])


def test_pooled_share_pools_flags_and_resamples_whole_groups():
    flags = {0: [True, True, False, True], 1: [True, False], 2: [True, True, True], 3: [False]}
    e = stats.pooled_share(flags)
    assert e.est == pytest.approx(7 / 10) and e.n == 4 and e.lo <= 0.7 <= e.hi and e.hi - e.lo > 0
    # a group that is all one way moves the whole cluster: the interval is wider than a pooled Wilson interval
    # would be for flags that vary only within groups
    clustered = stats.pooled_share({g: [g % 2 == 0] * 10 for g in range(6)})
    assert clustered.est == pytest.approx(0.5)
    assert clustered.hi - clustered.lo > stats.fraction([True] * 30 + [False] * 30).hi - stats.fraction([True] * 30 + [False] * 30).lo
    same = stats.pooled_share({0: [True, True], 1: [True]})
    assert same.est == same.lo == same.hi == 1.0
    assert stats.pooled_share({0: [True, False]}) is None and stats.pooled_share({0: [True], 1: []}) is None


def test_pooled_contrast_pools_every_group_and_resamples_whole_groups():
    a = {0: [2.0, 4.0], 1: [3.0], 2: [6.0, 6.0, 6.0]}
    b = {0: [1.0, 1.0], 1: [2.0, 4.0], 2: [2.0], 3: [5.0]}  # group 3 has no `a`: it does not count
    r = stats.pooled_contrast(a, b)
    assert r.est == pytest.approx((27 / 6) / (10 / 5)) and r.n == 3 and r.log
    assert r.lo <= r.est <= r.hi
    assert r.values == pytest.approx((3.0, 1.0, 3.0))  # per-group ratios, shown beside the pooled one
    d = stats.pooled_contrast(a, b, kind="difference")
    assert d.est == pytest.approx(27 / 6 - 2.0) and not d.log and d.values == pytest.approx((2.0, 0.0, 4.0))
    # a group's values move together: the same values split across six groups give a narrower interval
    # than when two groups hold all of each sign
    rng = np.random.default_rng(0)
    mixed = {g: list(rng.normal(0.1, 1, 40)) for g in range(6)}
    split = {g: list(np.full(40, 1.1 if g % 2 else -0.9)) for g in range(6)}
    zero = {g: [0.0] for g in range(6)}
    w_mixed = stats.pooled_contrast(mixed, zero, kind="difference")
    w_split = stats.pooled_contrast(split, zero, kind="difference")
    assert w_split.hi - w_split.lo > w_mixed.hi - w_mixed.lo


def test_pooled_contrast_can_hold_where_a_median_of_five_needs_unanimity():
    # five seeds, the fourth at 0.95 (below the null 1): the median's bootstrap interval reaches down to the
    # smallest value, the pooled ratio's does not
    ratios = [2.0, 2.5, 1.8, 0.95, 2.2]
    med = stats.bootstrap_ratio(ratios)
    assert med.lo == pytest.approx(0.95) and med.lo < 1
    b = {s: list(np.linspace(0.05, 0.15, 30)) for s in range(5)}
    a = {s: [r * v for v in b[s]] for s, r in enumerate(ratios)}
    pooled = stats.pooled_contrast(a, b)
    assert pooled.lo > 1 and pooled.est == pytest.approx(np.mean(ratios))
    # and it does not hold on null data: every seed's ratio spread around 1
    a0 = {s: [r * v for v in b[s]] for s, r in enumerate([1.1, 0.9, 1.05, 0.92, 1.0])}
    null = stats.pooled_contrast(a0, b)
    assert null.lo < 1 < null.hi


def test_pooled_contrast_refuses_what_it_cannot_compare():
    assert stats.pooled_contrast({0: [1.0]}, {0: [1.0]}) is None
    assert stats.pooled_contrast({0: [1.0], 1: [float("nan")]}, {0: [1.0], 1: [1.0]}) is None
    with pytest.raises(ValueError, match="non-negative"):
        stats.pooled_contrast({0: [-1.0], 1: [1.0]}, {0: [1.0], 1: [1.0]})
    with pytest.raises(ValueError, match="kind"):
        stats.pooled_contrast({0: [1.0], 1: [1.0]}, {0: [1.0], 1: [1.0]}, kind="quotient")
